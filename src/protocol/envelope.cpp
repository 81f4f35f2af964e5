#include "rvenc/protocol/envelope.hpp"

#include <algorithm>
#include <array>

#include <boost/json/object.hpp>

#include "json_strict.hpp"
#include "rvenc/common/hex.hpp"

namespace rvenc::protocol {

namespace {

constexpr std::array<std::string_view, 3> kV1Fields{"encryptedInference", "cipherText", "nonce"};
constexpr std::array<std::string_view, 6> kV2Fields{"version",    "keyId",      "timestamp",
                                                    "encryptedInference", "cipherText", "nonce"};
constexpr std::string_view kV1Layout = "a v1 envelope has exactly encryptedInference, cipherText, nonce";
constexpr std::string_view kV2Layout =
    "a v2 envelope has exactly version, keyId, timestamp, encryptedInference, cipherText, nonce";
// Longest body worth parsing: the hex of the largest encryptedInference plus the other fields.
constexpr std::size_t kMaxEnvelopeBytes = 2 * kMaxEncryptedInferenceBytes + 16 * 1024;

Result<std::string_view> string_field(const boost::json::object& obj, std::string_view name) {
  const auto* value = obj.if_contains(name);
  if (value == nullptr) return fail(Errc::invalid_request, "missing field \"" + std::string(name) + "\"");
  if (!value->is_string()) return fail(Errc::invalid_request, "field \"" + std::string(name) + "\" must be a string");
  const auto& s = value->get_string();
  return std::string_view(s.data(), s.size());
}

template <std::size_t N>
Status hex_field(const boost::json::object& obj, std::string_view name, std::array<std::uint8_t, N>& out) {
  auto text = string_field(obj, name);
  if (!text) return std::unexpected(text.error());
  return from_public_hex_into(*text, out, name);
}

Status check_fields(const boost::json::object& obj, std::span<const std::string_view> fields, std::string_view layout) {
  for (auto name : fields) {
    if (!obj.contains(name)) return fail(Errc::invalid_request, "missing field \"" + std::string(name) + "\"");
  }
  if (obj.size() != fields.size()) {
    return fail(Errc::invalid_request, "unexpected field in request body (" + std::string(layout) + ")");
  }
  return {};
}

}  // namespace

Result<RequestEnvelope> parse_envelope(std::string_view body) {
  if (body.size() > kMaxEnvelopeBytes) return fail(Errc::request_too_large, "request body is too large");
  auto parsed = detail::parse_json_strict(body, "request body", Errc::invalid_request);
  if (!parsed) return std::unexpected(parsed.error());
  if (!parsed->is_object()) return fail(Errc::invalid_request, "request body must be a JSON object");
  const auto& obj = parsed->get_object();

  RequestEnvelope env;
  if (const auto* version = obj.if_contains("version")) {
    if (!version->is_number()) return fail(Errc::invalid_request, "field \"version\" must be the integer 2");
    if (!version->is_int64() || version->get_int64() != 2) {
      return fail(Errc::unsupported_version, "unsupported envelope version (this endpoint speaks version 2)");
    }
    env.version = Version::v2;
    if (auto ok = check_fields(obj, kV2Fields, kV2Layout); !ok) return std::unexpected(ok.error());
    if (auto ok = hex_field(obj, "keyId", env.key_id); !ok) return std::unexpected(ok.error());
    const auto& ts = obj.at("timestamp");
    if (ts.is_int64() && ts.get_int64() >= 0) {
      env.timestamp = ts.get_int64();
    } else {
      return fail(Errc::invalid_request, "field \"timestamp\" must be a non-negative integer");
    }
  } else {
    env.version = Version::v1;
    if (auto ok = check_fields(obj, kV1Fields, kV1Layout); !ok) return std::unexpected(ok.error());
  }

  auto inference = string_field(obj, "encryptedInference");
  if (!inference) return std::unexpected(inference.error());
  auto bytes = from_public_hex(*inference, "encryptedInference");
  if (!bytes) return std::unexpected(bytes.error());
  if (bytes->size() < crypto::kAeadTagBytes) {
    return fail(Errc::invalid_request, "field \"encryptedInference\" is shorter than an authentication tag");
  }
  if (bytes->size() > kMaxEncryptedInferenceBytes) {
    return fail(Errc::request_too_large, "field \"encryptedInference\" is too large");
  }
  env.encrypted_inference = std::move(*bytes);
  if (auto ok = hex_field(obj, "cipherText", env.cipher_text); !ok) return std::unexpected(ok.error());
  if (auto ok = hex_field(obj, "nonce", env.nonce); !ok) return std::unexpected(ok.error());
  return env;
}

std::string serialize_envelope(const RequestEnvelope& envelope) {
  std::string out;
  out.reserve(envelope.encrypted_inference.size() * 2 + crypto::kXWingCipherTextBytes * 2 + 200);
  out += '{';
  if (envelope.version == Version::v2) {
    out += "\"version\":2,\"keyId\":\"";
    out += to_hex(envelope.key_id);
    out += "\",\"timestamp\":";
    out += std::to_string(envelope.timestamp);
    out += ',';
  }
  out += "\"encryptedInference\":\"";
  out += to_hex(envelope.encrypted_inference);
  out += "\",\"cipherText\":\"";
  out += to_hex(envelope.cipher_text);
  out += "\",\"nonce\":\"";
  out += to_hex(envelope.nonce);
  out += "\"}";
  return out;
}

}  // namespace rvenc::protocol
