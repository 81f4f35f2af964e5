// The TDX quote parser (header, TD report body, signature data, certification data type 6 → 5)
// and the verifier behind it on arbitrary bytes: never crashes; an accepted quote's spans lie
// inside the input and its signed bytes are header ‖ body; a fuzzed quote never verifies (the
// collateral is spr-e4-v4's, whose TCB Info no quote of that platform meets).
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz_check.hpp"
#include "rvenc/attestation/tdx.hpp"

namespace {

namespace att = rvenc::attestation;

bool inside(std::span<const std::uint8_t> part, std::span<const std::uint8_t> whole) {
  return part.empty() || (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

const att::Collateral& collateral() {
  static const att::Collateral c = [] {
    auto loaded = att::Collateral::load_dir(RVENC_ATTESTATION_FIXTURES_DIR "/tdx/spr-e4-v4");
    return loaded ? std::move(*loaded) : att::Collateral{};
  }();
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  const auto quote = att::tdx::parse_quote(bytes);
  if (!quote) {
    RVENC_FUZZ_CHECK(quote.error().check == att::Check::malformed);
    return 0;
  }
  const std::size_t body = quote->body_type == 3 ? att::tdx::kTdReport15Size : att::tdx::kTdReport10Size;
  RVENC_FUZZ_CHECK(quote->signed_bytes.size() == att::tdx::kHeaderSize + (quote->version == 5 ? 6 : 0) + body);
  RVENC_FUZZ_CHECK(inside(quote->qe_report_bytes, bytes) && inside(quote->qe_auth_data, bytes) &&
                   inside(quote->pck_chain, bytes) && !quote->pck_chain.empty());
  RVENC_FUZZ_CHECK(quote->qe_report_bytes.size() == att::tdx::kQeReportSize);
  const att::Policy policy;
  const auto anchors = att::pinned_roots(att::Provider::tdx);
  const auto verified = att::verify_tdx({bytes, collateral(), anchors, policy, 1688169600, std::nullopt});
  RVENC_FUZZ_CHECK(!verified.has_value() && verified.error().message.starts_with(att::check_name(verified.error().check)));
  return 0;
}
