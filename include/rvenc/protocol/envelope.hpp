// The request envelope of POST /rvenc/chat/completions (PROTOCOL.md section 2): strict parsing
// (exactly the fields of the version, exact lengths, valid hex) and serialisation.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "rvenc/common/error.hpp"
#include "rvenc/crypto/crypto.hpp"

namespace rvenc::protocol {

enum class Version : int { v1 = 1, v2 = 2, v3 = 3 };

// Versions 2 and 3 share the request envelope (keyId, timestamp, replay window); they differ in
// the HKDF labels and in version 3's enclave-chosen response salt (PROTOCOL.md sections 2-3).
[[nodiscard]] constexpr bool has_key_id(Version version) noexcept { return version != Version::v1; }

// Upper bound on the decoded encryptedInference; the gateway's --max-body is the real limit.
inline constexpr std::size_t kMaxEncryptedInferenceBytes = 64u * 1024 * 1024;
// The gateway's largest request body in bytes, published on /rvenc/models and /rvenc/attestation
// so a client can refuse a request that cannot fit before sending it (in the user's terms).
inline constexpr std::string_view kMaxBodyHeader = "X-Rvenc-Max-Body";

struct RequestEnvelope {
  Version version = Version::v3;
  crypto::KeyId key_id{};        // v2/v3 only
  std::int64_t timestamp = 0;    // v2/v3 only, seconds since the epoch
  std::vector<std::uint8_t> encrypted_inference;
  crypto::XWingCipherText cipher_text{};
  crypto::Nonce nonce{};
};

// invalid_request (bad JSON, duplicate keys, missing/extra/mistyped fields, bad hex, wrong
// lengths, encryptedInference shorter than a tag, negative timestamp), unsupported_version (a
// "version" that is a number other than the integers 2 and 3; a body without "version" is v1 and must
// have exactly its 3 fields) or request_too_large. Messages name the field, never echo its value.
[[nodiscard]] Result<RequestEnvelope> parse_envelope(std::string_view body);

// What the gateway needs to route and account a request: the same checks, with the same errors,
// as parse_envelope, but the hex of encryptedInference, cipherText and nonce is only validated.
struct EnvelopeSummary {
  Version version = Version::v3;
  crypto::KeyId key_id{};      // v2/v3 only
  std::int64_t timestamp = 0;  // v2/v3 only
  std::size_t encrypted_inference_bytes = 0;
};
[[nodiscard]] Result<EnvelopeSummary> check_envelope(std::string_view body);

// Fields in PROTOCOL.md order: v1 {encryptedInference, cipherText, nonce};
// v2/v3 {version, keyId, timestamp, encryptedInference, cipherText, nonce}.
[[nodiscard]] std::string serialize_envelope(const RequestEnvelope& envelope);

}  // namespace rvenc::protocol
