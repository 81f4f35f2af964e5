// protocol::parse_attestation and verify_attestation on arbitrary documents (the client reads
// them from the network before it trusts anything): never crashes; an accepted document
// round-trips through serialize_attestation; verification of a fuzzed document fails with
// attestation_failed (nothing here is signed by the platform key). Also base64 round trips.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "rvenc/protocol/attestation.hpp"

namespace {

using rvenc::protocol::AttestationDocument;

bool same(const AttestationDocument& a, const AttestationDocument& b) {
  return a.key_id == b.key_id && a.kem == b.kem && a.public_key == b.public_key && a.not_after == b.not_after &&
         a.provider == b.provider && a.binding == b.binding && a.report_data == b.report_data && a.evidence == b.evidence &&
         a.measurement == b.measurement;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  if (auto doc = rvenc::protocol::parse_attestation(text)) {
    const std::string serialized = rvenc::protocol::serialize_attestation(*doc);
    auto again = rvenc::protocol::parse_attestation(serialized);
    RVENC_FUZZ_CHECK(again.has_value() && same(*doc, *again));

    rvenc::protocol::AttestationPolicy policy;
    policy.allowed_providers = {"simulated", "sev-snp", "tdx"};
    policy.simulated_platform_key = rvenc::crypto::Ed25519PublicKey{};  // an all-zero key signs nothing
    const auto verified = rvenc::protocol::verify_attestation(*doc, rvenc::protocol::Challenge{}, policy);
    RVENC_FUZZ_CHECK(!verified && verified.error().code == rvenc::Errc::attestation_failed);
  } else {
    RVENC_FUZZ_CHECK(doc.error().code == rvenc::Errc::invalid_request);
  }

  if (auto decoded = rvenc::protocol::base64_decode(text, "evidence")) {
    const auto back = rvenc::protocol::base64_decode(rvenc::protocol::base64_encode(*decoded), "evidence");
    RVENC_FUZZ_CHECK(back.has_value() && *back == *decoded);
  }
  const std::string encoded = rvenc::protocol::base64_encode(std::span<const std::uint8_t>(data, size));
  const auto decoded = rvenc::protocol::base64_decode(encoded, "evidence");
  RVENC_FUZZ_CHECK(decoded.has_value() && std::equal(decoded->begin(), decoded->end(), data, data + size));
  return 0;
}
