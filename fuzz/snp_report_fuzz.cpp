// AMD SEV-SNP: parse_snp_report and verify_sev_snp on arbitrary bytes, with the real Milan
// collateral (fuzz/corpus/snp_report seeds: the real reports and certificates). Each input is
//  - a report: it parses only at 1184 bytes of version 2/3/5; it verifies under the pinned ARKs
//    only if its signed bytes are those of the real report (no forgery);
//  - unless it has a report's size, also vcek.der, ask_ark.pem and crl.der beside the real report:
//    whatever it is, verification ends in a named check, never a crash, hang or leak.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "fuzz_check.hpp"
#include "rvenc/attestation/sev_snp.hpp"
#include "rvenc/attestation/verifier.hpp"

namespace {

using namespace rvenc::attestation;

constexpr std::int64_t kIn2024 = 1717200000;

struct Fixed {
  Collateral collateral;
  Bytes report;
  TrustAnchors anchors = pinned_roots(Provider::sev_snp);
  Policy policy;
};

const Fixed& fixed() {
  static const Fixed set = [] {
    Fixed out;
    auto files = Collateral::load_dir(RVENC_ATTESTATION_FIXTURES_DIR "/sev-snp/milan-virtee");
    if (!files || files->find("report.bin") == nullptr) std::abort();
    out.report = *files->find("report.bin");
    files->files.erase("report.bin");
    out.collateral = std::move(*files);
    return out;
  }();
  return set;
}

Outcome<Verified> verify_with(std::span<const std::uint8_t> report, const Collateral& collateral) {
  const auto& set = fixed();
  return verify_sev_snp({.evidence = report, .collateral = collateral, .anchors = set.anchors, .policy = set.policy,
                         .at = kIn2024});
}

void check_named(const Outcome<Verified>& outcome) {
  if (outcome) return;
  const std::string prefix = std::string(check_name(outcome.error().check)) + ": ";
  RVENC_FUZZ_CHECK(outcome.error().message.starts_with(prefix));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> input(data, size);
  const auto& set = fixed();

  const auto report = parse_snp_report(input);
  if (report) {
    RVENC_FUZZ_CHECK(size == kSnpReportBytes);
    RVENC_FUZZ_CHECK(report->version == 2 || report->version == 3 || report->version == 5);
  } else {
    RVENC_FUZZ_CHECK(report.error().check == Check::malformed);
  }
  const auto verified = verify_with(input, set.collateral);
  check_named(verified);
  if (verified) {  // only the real report's signed bytes (and r, s) can verify
    RVENC_FUZZ_CHECK(std::equal(input.begin(), input.begin() + 0x2E8 + kSnpSignatureScalarBytes, set.report.begin()));
  }
  if (size == kSnpReportBytes) return 0;

  for (const char* name : {"vcek.der", "ask_ark.pem", "crl.der"}) {
    Collateral collateral = set.collateral;
    collateral.files[name] = Bytes(input.begin(), input.end());
    check_named(verify_with(set.report, collateral));
  }
  return 0;
}
