// Sealing and opening of requests (PROTOCOL.md section 2) and response events (section 3)
// for versions 1 and 2.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "rvenc/common/error.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "rvenc/protocol/envelope.hpp"

namespace rvenc::protocol {

inline constexpr std::size_t kResponsePrefixBytes = 16;

struct V2Keys {
  crypto::AeadKey request_key;
  crypto::AeadKey response_key;
  std::array<std::uint8_t, kResponsePrefixBytes> response_prefix{};
};

// prk = HKDF-Extract(nonce, sharedSecret); the three HKDF-Expand outputs of section 2.
[[nodiscard]] V2Keys derive_v2_keys(const crypto::SharedSecret& shared_secret, const crypto::Nonce& nonce);
// "rvenc/2|" ‖ hex(keyId) ‖ "|" ‖ decimal(timestamp)
[[nodiscard]] std::string request_ad(const crypto::KeyId& key_id, std::int64_t timestamp);

// Client side: encrypts `plaintext` (the chat request JSON) into an envelope.
struct SealInput {
  Version version = Version::v2;
  const crypto::SharedSecret* shared_secret = nullptr;
  const crypto::XWingCipherText* cipher_text = nullptr;
  crypto::KeyId key_id{};
  crypto::Nonce nonce{};
  std::int64_t timestamp = 0;
};
[[nodiscard]] RequestEnvelope seal_request(const SealInput& input, std::string_view plaintext);

// Enclave side: decryption_failed if it does not authenticate (or v2 padding is bad).
[[nodiscard]] Result<crypto::SecureBytes> open_request(const RequestEnvelope& envelope,
                                                       const crypto::SharedSecret& shared_secret);

enum class EventKind { data, error, done };
[[nodiscard]] std::string_view kind_name(EventKind kind) noexcept;
[[nodiscard]] std::optional<EventKind> kind_from_name(std::string_view name) noexcept;

// What both ends of a response stream need: v2 the response key and nonce prefix; v1 the
// request's (sharedSecret, nonce) pair.
struct ResponseKeys {
  crypto::AeadKey key;
  crypto::Nonce v1_nonce{};
  std::array<std::uint8_t, kResponsePrefixBytes> prefix{};

  [[nodiscard]] static ResponseKeys derive(Version version, const crypto::SharedSecret& shared_secret,
                                           const crypto::Nonce& request_nonce);
};

// Seals response events in order. v2: counter nonces from 0, AD "rvenc/2|kind", padded.
// v1: the request's (sharedSecret, nonce), empty AD, done as the plain "[DONE]".
class ResponseSealer {
 public:
  ResponseSealer(Version version, const crypto::SharedSecret& shared_secret, const crypto::Nonce& request_nonce);

  // The hex payload of the next event of `kind` (advances the counter).
  [[nodiscard]] std::string seal_payload(EventKind kind, std::string_view plaintext);
  // The full SSE text "event: <kind>\ndata: <payload>\n\n".
  [[nodiscard]] std::string seal_event(EventKind kind, std::string_view plaintext);
  [[nodiscard]] std::uint64_t next_index() const noexcept { return index_; }

 private:
  Version version_;
  ResponseKeys keys_;
  std::uint64_t index_ = 0;
};

// Opens response events in order. Any event that fails to decrypt or is out of order gives
// tampered_stream, as does any event after done or a done that is not "[DONE]"; after an error
// the opener stays failed. v2: an `error` event whose payload is plain JSON ('{') is the
// gateway's unauthenticated error: transport_error quoting its message. v1: such a plain
// error is returned as its plaintext (v1 allows it).
class ResponseOpener {
 public:
  ResponseOpener(Version version, const crypto::SharedSecret& shared_secret, const crypto::Nonce& request_nonce);

  struct Opened {
    EventKind kind;
    crypto::SecureBytes plaintext;
  };
  // `kind_name` is the SSE event name, `payload` its data. Unknown kinds must be skipped by the
  // caller before calling this.
  [[nodiscard]] Result<Opened> open(EventKind kind, std::string_view payload);
  [[nodiscard]] std::uint64_t next_index() const noexcept { return index_; }
  [[nodiscard]] bool done() const noexcept { return done_; }

 private:
  Version version_;
  ResponseKeys keys_;
  std::uint64_t index_ = 0;
  bool done_ = false;
  bool failed_ = false;
};

}  // namespace rvenc::protocol
