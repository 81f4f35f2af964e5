#!/usr/bin/env bash
# Builds the libFuzzer targets (clang++-14, ASan+UBSan, rvenc_core, the I/O-free mux frame codec and the Redis reply reader) in build-fuzz/ and runs
# each for SECONDS_PER_TARGET (default 60) on a copy of its seed corpus fuzz/corpus/<target>/.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     targets: see RVENC_FUZZ_TARGETS below
# Prints one summary line per target; exits 1 if any target crashed (the reproducer is kept in
# build-fuzz/artifacts/<target>/; rerun with build-fuzz/fuzz/fuzz_<target> <file>).
# Env: RVENC_FUZZ_CXX (default clang++-14), RVENC_FUZZ_BUILD_DIR (default build-fuzz),
#      RVENC_FUZZ_NICE (default 19: the fuzzers yield to everything else on the machine).
set -euo pipefail
cd "$(dirname "$0")/.."

readonly ALL_TARGETS=(sse envelope hex assembler chat_request endpoint_request response_opener attestation shaping responses json_answer mux_frame redis_reply snp_report tdx_quote
  tdx_collateral nvidia_spdm)
SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL_TARGETS[@]}")
if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [ "$SECONDS_PER_TARGET" -lt 1 ]; then
  echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]  (targets: ${ALL_TARGETS[*]})" >&2
  exit 2
fi
for t in "${TARGETS[@]}"; do
  if [ ! -d "fuzz/corpus/$t" ]; then
    echo "unknown fuzz target '$t' (known: ${ALL_TARGETS[*]})" >&2
    exit 2
  fi
done

CXX_FOR_FUZZ="${RVENC_FUZZ_CXX:-clang++-14}"
BUILD_DIR="${RVENC_FUZZ_BUILD_DIR:-build-fuzz}"
NICE="${RVENC_FUZZ_NICE:-19}"
if ! command -v "$CXX_FOR_FUZZ" >/dev/null; then
  echo "fuzz: $CXX_FOR_FUZZ not found (scripts/setup.sh installs clang-14 and libclang-rt-14-dev)" >&2
  exit 2
fi
LAUNCHER=()
command -v ccache >/dev/null && LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)

cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$CXX_FOR_FUZZ" "${LAUNCHER[@]}" \
  -DRVENC_BUILD_FUZZ=ON -DRVENC_DEBUG_INFO=lines -DRVENC_CORE_ONLY=ON -DRVENC_BUILD_TESTS=OFF -DRVENC_BUILD_BENCH=OFF \
  -DRVENC_BUILD_EXAMPLES=OFF >/dev/null
build_targets=()
for t in "${TARGETS[@]}"; do build_targets+=("fuzz_$t"); done
nice -n "$NICE" cmake --build "$BUILD_DIR" -j"$(nproc)" --target "${build_targets[@]}"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
failed=0
summary=()
for t in "${TARGETS[@]}"; do
  work="$BUILD_DIR/corpus-run/$t"
  artifacts="$BUILD_DIR/artifacts/$t"
  log="$BUILD_DIR/logs/$t.log"
  rm -rf "$work" "$artifacts"
  mkdir -p "$work" "$artifacts" "$(dirname "$log")"
  cp fuzz/corpus/"$t"/* "$work"/
  echo "fuzz: $t for ${SECONDS_PER_TARGET}s (log $log)"
  status=0
  # -timeout: one input running that long is a hang; -rss_limit_mb: a memory blow-up is a finding.
  nice -n "$NICE" "$BUILD_DIR/fuzz/fuzz_$t" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$work" >"$log" 2>&1 || status=$?
  # A target that crashes at once prints no statistics: these greps may find nothing.
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1 || true)
  cov=$(grep -oE '(DONE|pulse|NEW|REDUCE|INITED) +cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 |
    sed -E 's/.*cov: ([0-9]+) ft: ([0-9]+)/cov \1 ft \2/' || true)
  crashes=$(find "$artifacts" -type f | wc -l)
  result=ok
  if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    result=CRASH
    failed=1
    grep -E 'ERROR|runtime error|invariant failed|Test unit written' "$log" | head -5 >&2 || true
  fi
  summary+=("$(printf 'fuzz %-16s %-5s runs %-9s %-18s corpus %s crashes %s' "$t" "$result" "${runs:-?}" \
    "${cov:-cov ?}" "$(find "$work" -type f | wc -l)" "$crashes")")
done
printf '%s\n' "${summary[@]}"
exit "$failed"
