#!/usr/bin/env bash
# Builds everything (via scripts/setup.sh) and runs every test with CTest, then:
# - the ASan+UBSan suite in build-asan/ (Debug): RVENC_SANITIZE=1 builds and runs all of it,
#   RVENC_SANITIZE=subset only the in-process tests of core, http, enclave, gateway and the SDK (what CI
#   runs by default when CI=true: the full sanitizer build alone is ~10 CPU-minutes), 0 skips it.
# - every libFuzzer target for RVENC_FUZZ_SECONDS each (default 10; 0 skips) via scripts/fuzz.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# How long each phase took, printed at the end (CI has a time budget: keep the whole run short).
timings=()
phase_start=$SECONDS
phase_done() { timings+=("$(printf '%-14s %4d s' "$1" $((SECONDS - phase_start)))"); phase_start=$SECONDS; }
print_timings() { printf 'test.sh: %s\n' "${timings[@]}" "$(printf '%-14s %4d s' total "$SECONDS")"; }
trap print_timings EXIT

# CI builds with line tables only (-g1): the same code, stack traces with lines, far less to compile
# and link than full debug information.
debug_info=full
[ "${CI:-}" = true ] && debug_info=lines
CMAKE_EXTRA_ARGS="${CMAKE_EXTRA_ARGS:-} -DRVENC_DEBUG_INFO=$debug_info" ./scripts/setup.sh
phase_done "setup+build"
# Path-independent ccache entries for the sanitizer build too (as setup.sh does for build/).
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true
ctest --test-dir build --output-on-failure -j"$(nproc)" --timeout 300
phase_done "ctest"

default_sanitize=0
[ "${CI:-}" = true ] && default_sanitize=subset
sanitize="${RVENC_SANITIZE:-$default_sanitize}"
# The subset: libraries and in-process tests only; the tests that start rvenc processes need the
# whole CLI built with sanitizers. The SDK's tests are in for its cross-thread key sharing; the
# proxy's suite needs little that these lack.
readonly ASAN_SUBSET_TARGETS=(rvenc_core_tests rvenc_core_vector_tests rvenc_attestation_tests rvenc_http_tests rvenc_enclave_tests rvenc_gateway_tests
                              rvenc_client_tests)
readonly ASAN_SUBSET_TESTS='^(vector|core|attestation|http|enclave|gateway|client)[.]'
readonly ASAN_SUBSET_EXCLUDE='EnclaveProcess|GatewayIntegration|^gateway[.]Up[.]|^gateway[.]redis[.]'
asan_ctest() {
  # detect_leaks: a leak fails the test; abort_on_error makes the failure impossible to miss.
  ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}" \
  UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
    ctest --test-dir build-asan --output-on-failure -j"$(nproc)" --timeout 600 "$@"
}
case "$sanitize" in
  0) ;;
  1)
    BUILD_DIR=build-asan BUILD_TYPE=Debug CMAKE_EXTRA_ARGS="-DRVENC_SANITIZE=ON -DRVENC_BUILD_BENCH=OFF -DRVENC_BUILD_EXAMPLES=OFF" ./scripts/setup.sh
    asan_ctest
    ;;
  subset)
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DRVENC_SODIUM_PREFIX="$PWD/.deps/libsodium" \
      -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DRVENC_SANITIZE=ON -DRVENC_BUILD_BENCH=OFF -DRVENC_BUILD_EXAMPLES=OFF -DRVENC_DEBUG_INFO=lines >/dev/null
    cmake --build build-asan -j"$(nproc)" --target "${ASAN_SUBSET_TARGETS[@]}"
    asan_ctest -R "$ASAN_SUBSET_TESTS" -E "$ASAN_SUBSET_EXCLUDE"
    ;;
  *) echo "test.sh: RVENC_SANITIZE must be 0, 1 or subset" >&2; exit 2 ;;
esac
[ "$sanitize" = 0 ] || phase_done "sanitizers"

# A smoke run per target in CI (5 s each: every target builds, starts from its corpus and finds
# nothing quickly); 10 s locally; `./scripts/fuzz.sh 600` for a real run.
default_fuzz_seconds=10
[ "${CI:-}" = true ] && default_fuzz_seconds=5
fuzz_seconds="${RVENC_FUZZ_SECONDS:-$default_fuzz_seconds}"
if [ "$fuzz_seconds" -gt 0 ]; then
  ./scripts/fuzz.sh "$fuzz_seconds"
  phase_done "fuzz"
fi
