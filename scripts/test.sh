#!/usr/bin/env bash
# Builds everything (via scripts/setup.sh) and runs every test with CTest.
# RVENC_SANITIZE=1 also builds and runs the suite under ASan+UBSan in build-asan/.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" --timeout 300
if [ "${RVENC_SANITIZE:-0}" = 1 ]; then
  BUILD_DIR=build-asan BUILD_TYPE=Debug CMAKE_EXTRA_ARGS="-DRVENC_SANITIZE=ON -DRVENC_BUILD_BENCH=OFF -DRVENC_BUILD_EXAMPLES=OFF" ./scripts/setup.sh
  ctest --test-dir build-asan --output-on-failure -j"$(nproc)" --timeout 600
fi
