// NVIDIA GPU evidence: parse_spdm_measurements and verify_nvidia_gpu on arbitrary bytes with the
// real H100 sample chain, and parse_rim / parse_gpu_evidence_json on the same bytes
// (fuzz/corpus/nvidia_spdm seeds: the real report, its chain, a RIM, the PPCIe JSON). Each input is
//  - SPDM evidence: it verifies under the pinned NVIDIA root only if its signed bytes and signature
//    are those of the real report (no forgery); any failure names its check;
//  - the GPU's certificate chain beside the real report: it ends in a named check;
//  - a RIM (parsed, and its XMLDSig verified) and an evidence JSON: a value or a named check, never
//    a crash, hang or leak.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "rvenc/attestation/nvidia.hpp"
#include "rvenc/common/hex.hpp"

namespace {

using namespace rvenc::attestation;

constexpr std::int64_t kIn2024 = 1717200000;

struct Fixed {
  Bytes evidence;
  Bytes chain;
  TrustAnchors anchors = nvidia_device_roots();
  TrustAnchors rim_anchors = nvidia_rim_roots();
};

const Fixed& fixed() {
  static const Fixed set = [] {
    Fixed out;
    auto files = Collateral::load_dir(RVENC_ATTESTATION_FIXTURES_DIR "/nvidia/hopper-sample");
    if (!files || files->find("attestation_report.hex") == nullptr || files->find("cert_chain.pem") == nullptr)
      std::abort();
    std::string hex(files->find("attestation_report.hex")->begin(), files->find("attestation_report.hex")->end());
    while (!hex.empty() && (hex.back() == '\n' || hex.back() == '\r')) hex.pop_back();
    auto evidence = rvenc::from_hex(hex, "attestation_report.hex");
    if (!evidence) std::abort();
    out.evidence = std::move(*evidence);
    out.chain = *files->find("cert_chain.pem");
    return out;
  }();
  return set;
}

void check_named(const Outcome<GpuVerified>& outcome) {
  if (outcome) return;
  RVENC_FUZZ_CHECK(outcome.error().message.starts_with(std::string(check_name(outcome.error().check)) + ": "));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> input(data, size);
  const auto& set = fixed();

  const auto spdm = parse_spdm_measurements(input);
  if (spdm) {
    RVENC_FUZZ_CHECK(spdm->signed_bytes + kSpdmSignatureBytes == size && !spdm->blocks.empty());
  } else {
    RVENC_FUZZ_CHECK(spdm.error().check == Check::malformed);
  }
  const auto verified =
      verify_nvidia_gpu({.evidence = input, .cert_chain_pem = set.chain, .anchors = set.anchors, .at = kIn2024});
  check_named(verified);
  if (verified) RVENC_FUZZ_CHECK(std::ranges::equal(input, set.evidence));

  check_named(
      verify_nvidia_gpu({.evidence = set.evidence, .cert_chain_pem = input, .anchors = set.anchors, .at = kIn2024}));

  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (const auto rim = parse_rim(text); !rim) RVENC_FUZZ_CHECK(rim.error().check == Check::malformed);
  if (const auto rim = verify_rim({.xml = text, .anchors = set.rim_anchors, .at = kIn2024}); !rim)
    RVENC_FUZZ_CHECK(rim.error().message.starts_with(std::string(check_name(rim.error().check)) + ": "));
  if (const auto gpus = parse_gpu_evidence_json(text); !gpus) RVENC_FUZZ_CHECK(gpus.error().check == Check::malformed);
  return 0;
}
