// SEV-SNP verification cost (issue 21: ≤ 5 ms per report with its collateral loaded): the whole
// verify_sev_snp on the real Milan report under the pinned ARKs (certificate parsing, the RSA-PSS
// chain, the P-384 report signature, every policy check), and its parts.
#include <benchmark/benchmark.h>

#include <cstdlib>

#include "rvenc/attestation/sev_snp.hpp"
#include "rvenc/attestation/verifier.hpp"

namespace {

using namespace rvenc::attestation;

// The fixture set, loaded once: the collateral a client keeps beside the evidence.
struct Milan {
  Collateral collateral;
  Bytes report;
  TrustAnchors anchors = pinned_roots(Provider::sev_snp);
  Policy policy;
};

const Milan& milan() {
  static const Milan set = [] {
    Milan out;
    auto files = Collateral::load_dir(RVENC_ATTESTATION_FIXTURES_DIR "/sev-snp/milan-virtee");
    if (!files) std::abort();
    out.collateral = std::move(*files);
    out.report = *out.collateral.find("report.bin");
    return out;
  }();
  return set;
}

void BM_VerifySevSnp(benchmark::State& state) {
  const auto& set = milan();
  const VerifyInput input{.evidence = set.report, .collateral = set.collateral, .anchors = set.anchors,
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
  for (auto _ : state) benchmark::DoNotOptimize(parse_snp_report(set.report));
}
BENCHMARK(BM_ParseSnpReport)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
