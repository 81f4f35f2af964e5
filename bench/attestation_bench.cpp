// Offline attestation verification cost (issue 21: ≤ 5 ms per document with its collateral
// loaded), on the real fixtures under the pinned vendor roots:
// - SEV-SNP: the Milan report of sev-snp/milan-virtee (chain VCEK → ASK → ARK, the P-384
//   signature, TCB, policy), which passes;
// - TDX: the spr-e4-v4 quote at 2023-07-01 (every signature, the PCK chain with both CRLs, TCB
//   Info and QE Identity chains, signatures and windows, then the TCB level, where this set stops
//   at `tcb_status`; the checks after it are comparisons), and its parts.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string_view>

#include "rvenc/attestation/sev_snp.hpp"
#include "rvenc/attestation/tdx.hpp"
#include "rvenc/attestation/verifier.hpp"

namespace {

using namespace rvenc::attestation;

// One fixture set, loaded once: the evidence and the collateral a client keeps beside it.
struct FixtureSet {
  Collateral collateral;
  Bytes evidence;
  TrustAnchors anchors;
  Policy policy;
};

FixtureSet load_set(std::string_view dir, std::string_view evidence_file, Provider provider) {
  FixtureSet out;
  auto files = Collateral::load_dir(std::string(RVENC_ATTESTATION_FIXTURES_DIR) + "/" + std::string(dir));
  if (!files || files->find(evidence_file) == nullptr) std::abort();
  out.collateral = std::move(*files);
  out.evidence = *out.collateral.find(evidence_file);
  out.anchors = pinned_roots(provider);
  return out;
}

const FixtureSet& milan() {
  static const FixtureSet set = load_set("sev-snp/milan-virtee", "report.bin", Provider::sev_snp);
  return set;
}

constexpr std::int64_t kSprAt = 1688169600;  // 2023-07-01, inside spr-e4-v4's collateral windows

const FixtureSet& spr() {
  static const FixtureSet set = load_set("tdx/spr-e4-v4", "quote.dat", Provider::tdx);
  return set;
}

void BM_VerifySevSnp(benchmark::State& state) {
  const auto& set = milan();
  const VerifyInput input{.evidence = set.evidence, .collateral = set.collateral, .anchors = set.anchors,
                          .policy = set.policy, .at = 1717200000};
  for (auto _ : state) {
    auto verified = verify_sev_snp(input);
    if (!verified) state.SkipWithError(verified.error().message.c_str());
    benchmark::DoNotOptimize(verified);
  }
}
BENCHMARK(BM_VerifySevSnp)->Unit(benchmark::kMicrosecond);

void BM_ParseSnpReport(benchmark::State& state) {
  const auto& set = milan();
  for (auto _ : state) benchmark::DoNotOptimize(parse_snp_report(set.evidence));
}
BENCHMARK(BM_ParseSnpReport)->Unit(benchmark::kMicrosecond);

void BM_VerifyTdx(benchmark::State& state) {
  const auto& set = spr();
  const VerifyInput input{.evidence = set.evidence, .collateral = set.collateral, .anchors = set.anchors,
                          .policy = set.policy, .at = kSprAt};
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
    auto checked = tdx::check_quote(set.evidence, set.anchors, kSprAt);
    if (!checked) state.SkipWithError(checked.error().message.c_str());
    benchmark::DoNotOptimize(checked);
  }
}
BENCHMARK(BM_CheckTdxQuote)->Unit(benchmark::kMicrosecond);

void BM_ParseTdxQuote(benchmark::State& state) {
  const auto& set = spr();
  for (auto _ : state) benchmark::DoNotOptimize(tdx::parse_quote(set.evidence));
}
BENCHMARK(BM_ParseTdxQuote)->Unit(benchmark::kMicrosecond);

void BM_ParseTcbInfo(benchmark::State& state) {
  const auto& set = spr();
  for (auto _ : state) benchmark::DoNotOptimize(tdx::parse_tcb_info(*set.collateral.find("tcbinfo.json")));
}
BENCHMARK(BM_ParseTcbInfo)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
