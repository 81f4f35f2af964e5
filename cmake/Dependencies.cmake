# Every third-party dependency in one place; all come from Debian packages, libsodium
# possibly from the local prefix that scripts/setup.sh builds.
find_package(PkgConfig REQUIRED)
if(EXISTS "${RVENC_SODIUM_PREFIX}/lib/pkgconfig/libsodium.pc")
  set(ENV{PKG_CONFIG_PATH} "${RVENC_SODIUM_PREFIX}/lib/pkgconfig:$ENV{PKG_CONFIG_PATH}")
endif()
# X-Wing (crypto_kem_xwing_*) arrived in libsodium 1.0.21.
pkg_check_modules(SODIUM REQUIRED IMPORTED_TARGET GLOBAL libsodium>=1.0.21)

find_package(Boost 1.81 REQUIRED CONFIG COMPONENTS json url system)
find_package(Threads REQUIRED)
find_package(OpenSSL 3 REQUIRED)  # TLS on every hop (Debian libssl-dev), through Asio's ssl::stream
find_package(LibXml2 REQUIRED)  # NVIDIA RIMs (SWID XML) in rvenc_attestation (Debian libxml2-dev)
# Their XMLDSig signatures (C14N 1.1, ECDSA-SHA384) with the OpenSSL backend (Debian libxmlsec1-dev).
pkg_check_modules(XMLSEC REQUIRED IMPORTED_TARGET xmlsec1-openssl>=1.2.30)
find_package(SQLite3 REQUIRED)
# The PostgreSQL store of rvenc_store (Debian libpq-dev).
pkg_check_modules(LIBPQ REQUIRED IMPORTED_TARGET GLOBAL libpq)
find_package(spdlog REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
if(RVENC_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(RVENC_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()
# Redis wire format (formatting commands, parsing replies) for the gateway (Debian: libhiredis-dev).
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET GLOBAL hiredis)
# Line editing and history of the interactive `rvenc chat` (Debian: libedit-dev).
pkg_check_modules(LIBEDIT REQUIRED IMPORTED_TARGET GLOBAL libedit)
