// protocol::parse_envelope on arbitrary bodies: never crashes, errors carry a protocol code,
// every accepted envelope round-trips (parse -> serialize -> parse gives the same fields and the
// same serialisation), and the gateway's check_envelope accepts and refuses exactly alike.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "rvenc/protocol/envelope.hpp"

namespace {

bool same(const rvenc::protocol::RequestEnvelope& a, const rvenc::protocol::RequestEnvelope& b) {
  if (a.version != b.version || a.encrypted_inference != b.encrypted_inference || a.cipher_text != b.cipher_text ||
      a.nonce != b.nonce) {
    return false;
  }
  // keyId and timestamp exist only in version 2.
  return a.version == rvenc::protocol::Version::v1 || (a.key_id == b.key_id && a.timestamp == b.timestamp);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto parsed = rvenc::protocol::parse_envelope(body);
  auto checked = rvenc::protocol::check_envelope(body);
  RVENC_FUZZ_CHECK(parsed.has_value() == checked.has_value());
  if (!parsed) {
    RVENC_FUZZ_CHECK(checked.error().code == parsed.error().code);
    RVENC_FUZZ_CHECK(checked.error().message == parsed.error().message);
    const auto code = parsed.error().code;
    RVENC_FUZZ_CHECK(code == rvenc::Errc::invalid_request || code == rvenc::Errc::unsupported_version);
    RVENC_FUZZ_CHECK(!parsed.error().message.empty());
    return 0;
  }
  RVENC_FUZZ_CHECK(checked->version == parsed->version);
  RVENC_FUZZ_CHECK(checked->encrypted_inference_bytes == parsed->encrypted_inference.size());
  RVENC_FUZZ_CHECK(parsed->version == rvenc::protocol::Version::v1 ||
                   (checked->key_id == parsed->key_id && checked->timestamp == parsed->timestamp));
  const std::string serialized = rvenc::protocol::serialize_envelope(*parsed);
  auto again = rvenc::protocol::parse_envelope(serialized);
  RVENC_FUZZ_CHECK(again.has_value());
  RVENC_FUZZ_CHECK(same(*parsed, *again));
  RVENC_FUZZ_CHECK(rvenc::protocol::serialize_envelope(*again) == serialized);
  return 0;
}
