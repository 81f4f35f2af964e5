# The operators' package: `cpack -G DEB` in the build directory makes rvenc_VERSION_ARCH.deb with
# the rvenc binary, the systemd units rvenc-{gateway,enclave,proxy}.service, their /etc/rvenc/*.env
# (conffiles) and the maintainer scripts of packaging/debian (the rvenc system user, the gateway
# token). Only the "server" component goes in: the SDK (headers, static libraries) does not.
# docs/packaging.md describes it; tests/packaging checks it.
# `cpack` and `make install` install what is built and build nothing first (their default is the whole
# tree, every test and benchmark): build the rvenc target before packaging.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)
set(RVENC_PACKAGING_DIR ${PROJECT_SOURCE_DIR}/packaging)
install(FILES ${RVENC_PACKAGING_DIR}/systemd/rvenc-gateway.service ${RVENC_PACKAGING_DIR}/systemd/rvenc-enclave.service
              ${RVENC_PACKAGING_DIR}/systemd/rvenc-proxy.service
        DESTINATION lib/systemd/system COMPONENT server)
install(FILES ${RVENC_PACKAGING_DIR}/etc/gateway.env ${RVENC_PACKAGING_DIR}/etc/enclave.env
              ${RVENC_PACKAGING_DIR}/etc/proxy.env
        DESTINATION /etc/rvenc PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ COMPONENT server)
install(FILES ${PROJECT_SOURCE_DIR}/docs/packaging.md DESTINATION share/doc/rvenc COMPONENT server)

set(CPACK_PACKAGE_NAME rvenc)
set(CPACK_PACKAGE_VENDOR rvenc)
set(CPACK_PACKAGE_CONTACT "rvenc maintainers <rvenc@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "End-to-end encrypted LLM chat completions: gateway, enclave and proxy services")
set(CPACK_PACKAGE_DESCRIPTION "rvenc encrypts chat completions from the client to an attested enclave; the
gateway authenticates and rate-limits but cannot read prompts or replies. This package holds the
rvenc binary and hardened systemd units for the gateway, the enclave and the local proxy.")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL server)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Shared libraries from dpkg-shlibdeps (dpkg-dev); adduser for the postinst.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "redis-server")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${RVENC_PACKAGING_DIR}/debian/postinst ${RVENC_PACKAGING_DIR}/debian/prerm
    ${RVENC_PACKAGING_DIR}/debian/postrm ${RVENC_PACKAGING_DIR}/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
