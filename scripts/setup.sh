#!/usr/bin/env bash
# Takes a fresh Debian 12 machine to a built rvenc: Debian packages, libsodium >= 1.0.21
# (built from a newer Debian suite's source package when the system's is too old),
# npm test dependencies, then the CMake build in ./build. Re-running it is fast and changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEPS="$ROOT/.deps"
SODIUM_PREFIX="$DEPS/libsodium"
SODIUM_MIN=1.0.21
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo}

log() { printf '\033[1msetup:\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

PACKAGES=(
  g++ cmake make pkg-config ccache dpkg-dev
  libboost1.81-dev libboost-json1.81-dev libboost-system1.81-dev libboost-url1.81-dev
  libssl-dev libxml2-dev libxmlsec1-dev libsqlite3-dev sqlite3 libpq-dev postgresql-15 libcli11-dev libspdlog-dev libfmt-dev libedit-dev
  libhiredis-dev iproute2 systemd
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-14 libclang-rt-14-dev
  redis-server nginx-light curl gnuplot-nox
  nodejs chromium binaryen
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The packaged nginx starts a system service on install; the benchmarks run their own.
if command -v systemctl >/dev/null 2>&1; then as_root systemctl disable --now nginx redis-server postgresql >/dev/null 2>&1 || true; fi

version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

system_sodium=$(pkg-config --modversion libsodium 2>/dev/null || echo 0)
if version_ge "$system_sodium" "$SODIUM_MIN"; then
  log "using system libsodium $system_sodium"
elif [ -f "$SODIUM_PREFIX/lib/pkgconfig/libsodium.pc" ] && \
     version_ge "$(PKG_CONFIG_PATH="$SODIUM_PREFIX/lib/pkgconfig" pkg-config --modversion libsodium)" "$SODIUM_MIN"; then
  log "using libsodium $(PKG_CONFIG_PATH="$SODIUM_PREFIX/lib/pkgconfig" pkg-config --modversion libsodium) from $SODIUM_PREFIX"
else
  log "system libsodium $system_sodium < $SODIUM_MIN: building the Debian source package of a newer suite"
  # A private apt configuration with deb-src lines for newer suites, on the machine's own
  # configured Debian mirror, so apt verifies the source package against the signed Release.
  APT_DIR="$DEPS/apt"
  mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/sources.list.d" "$DEPS/src"
  mirror=$( (grep -rhE '^[[:space:]]*(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null || true) \
           | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ')
  mirror=${mirror:-http://deb.debian.org/debian}
  cat > "$APT_DIR/sources.list.d/rvenc-src.sources" <<SRC
Types: deb-src
URIs: ${mirror%/}
Suites: forky sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  APT_OPTS=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$APT_DIR/sources.list.d"
            -o "Dir::State::Lists=$APT_DIR/lists" -o "Debug::NoLocking=1")
  apt-get "${APT_OPTS[@]}" update -qq
  rm -rf "$DEPS/src"/*
  (cd "$DEPS/src" && apt-get "${APT_OPTS[@]}" source --download-only libsodium 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
  dsc=$(ls "$DEPS/src"/libsodium_*.dsc | sort -V | tail -n1)
  [ -f "$dsc" ] || { echo "setup: could not fetch the libsodium source package" >&2; exit 1; }
  (cd "$DEPS/src" && dpkg-source -x "$dsc" libsodium >/dev/null)
  (cd "$DEPS/src/libsodium" && ./configure --prefix="$SODIUM_PREFIX" --disable-dependency-tracking \
      --enable-shared=no --with-pic >/dev/null && make -j"$(nproc)" >/dev/null && make install >/dev/null)
  log "built libsodium $(PKG_CONFIG_PATH="$SODIUM_PREFIX/lib/pkgconfig" pkg-config --modversion libsodium) into $SODIUM_PREFIX"
fi

# Outside tests drive the proxy with the official `openai` npm package, pinned in tests/node.
if [ -f tests/node/package.json ] && command -v npm >/dev/null 2>&1; then
  if [ ! -d tests/node/node_modules/openai ] || [ tests/node/package-lock.json -nt tests/node/node_modules/.package-lock.json ]; then
    log "installing npm test dependencies"
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
fi

# The TypeScript SDK and the browser chat page (sdk/js): npm packages (package-lock.json:
# libsodium (libsodium-wrappers for the tests), pkijs + asn1js for SEV-SNP and TDX verification, esbuild, typescript, puppeteer-core),
# then tsc + esbuild into sdk/js/dist (the proxy serves dist/chat at /chat: chat.js, libsodium.wasm,
# hardware.js; binaryen's wasm-opt drops the libsodium functions the SDK never calls from
# libsodium.wasm). The browser tests use Debian's chromium above.
if [ -f sdk/js/package.json ] && command -v npm >/dev/null 2>&1; then
  if [ ! -d sdk/js/node_modules/libsodium-wrappers ] || [ sdk/js/package-lock.json -nt sdk/js/node_modules/.package-lock.json ]; then
    log "installing the TypeScript SDK's npm packages"
    (cd sdk/js && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  log "building the TypeScript SDK and the chat page (sdk/js/dist)"
  (cd sdk/js && npm run --silent build >/dev/null)
fi

# scikit-learn for `rvenc bench traffic` only (not for the tests): RVENC_SETUP_SKLEARN=1.
if [ "${RVENC_SETUP_SKLEARN:-0}" = 1 ]; then bash scripts/setup_sklearn.sh; fi

# Path-independent ccache entries: a second clone (CI) reuses what an earlier build compiled.
export CCACHE_BASEDIR="$ROOT" CCACHE_NOHASHDIR=true
log "building ($BUILD_TYPE) in $BUILD_DIR"
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" -DRVENC_SODIUM_PREFIX="$SODIUM_PREFIX" \
  -DCMAKE_CXX_COMPILER_LAUNCHER=ccache ${CMAKE_EXTRA_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
log "ready: $BUILD_DIR/rvenc"
