// TDX verification cost (issue 21: ≤ 5 ms per quote with its collateral loaded), on the real
// spr-e4-v4 quote and collateral at 2023-07-01 under the pinned Intel root: verify_tdx runs every
// signature, the PCK chain with both CRLs, TCB Info and QE Identity (chains, signatures, windows)
// and the TCB level, where this set stops (`tcb_status`: no level matches; the QE identity and
// policy checks left after it are comparisons). Also its parts.
#include <benchmark/benchmark.h>

#include <cstdlib>

#include "rvenc/attestation/tdx.hpp"
#include "rvenc/attestation/verifier.hpp"

namespace {

using namespace rvenc::attestation;

constexpr std::int64_t kAt = 1688169600;

struct SprE4 {
  Collateral collateral;
  Bytes quote;
  TrustAnchors anchors = pinned_roots(Provider::tdx);
  Policy policy;
};

const SprE4& spr() {
  static const SprE4 set = [] {
    SprE4 out;
    auto files = Collateral::load_dir(RVENC_ATTESTATION_FIXTURES_DIR "/tdx/spr-e4-v4");
    if (!files) std::abort();
    out.collateral = std::move(*files);
    out.quote = *out.collateral.find("quote.dat");
    return out;
  }();
  return set;
}

void BM_VerifyTdx(benchmark::State& state) {
  const auto& set = spr();
  const VerifyInput input{.evidence = set.quote, .collateral = set.collateral, .anchors = set.anchors,
                          .policy = set.policy, .at = kAt};
  for (auto _ : state) {
    auto verified = verify_tdx(input);
    if (verified || verified.error().check != Check::tcb_status)
      state.SkipWithError("spr-e4-v4 did not stop at tcb_status");
    benchmark::DoNotOptimize(verified);
  }
}
BENCHMARK(BM_VerifyTdx)->Unit(benchmark::kMicrosecond);

void BM_CheckTdxQuote(benchmark::State& state) {  // the part without collateral
  const auto& set = spr();
  for (auto _ : state) {
    auto checked = tdx::check_quote(set.quote, set.anchors, kAt);
    if (!checked) state.SkipWithError(checked.error().message.c_str());
    benchmark::DoNotOptimize(checked);
  }
}
BENCHMARK(BM_CheckTdxQuote)->Unit(benchmark::kMicrosecond);

void BM_ParseTdxQuote(benchmark::State& state) {
  const auto& set = spr();
  for (auto _ : state) benchmark::DoNotOptimize(tdx::parse_quote(set.quote));
}
BENCHMARK(BM_ParseTdxQuote)->Unit(benchmark::kMicrosecond);

void BM_ParseTcbInfo(benchmark::State& state) {
  const auto& set = spr();
  for (auto _ : state) benchmark::DoNotOptimize(tdx::parse_tcb_info(*set.collateral.find("tcbinfo.json")));
}
BENCHMARK(BM_ParseTcbInfo)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
