// Sealing and opening of requests (PROTOCOL.md section 2) and response events (section 3)
// for versions 1, 2 and 3.
//
// Design: one sealer and one opener per response stream hold the stream's keys and event counter;
// the version decides where the keys come from. Versions 1 and 2 derive them from the request
// alone; version 3 mixes in a salt the enclave draws for every response (its plain `init` event),
// so a request answered twice (a replay the replay cache could not see) never reuses a keystream.
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
inline constexpr std::size_t kResponseSaltBytes = 32;
using ResponseSalt = std::array<std::uint8_t, kResponseSaltBytes>;
using ResponsePrefix = std::array<std::uint8_t, kResponsePrefixBytes>;
// The plain SSE event that starts a version 3 stream (not counted, not encrypted).
inline constexpr std::string_view kInitEventKind = "init";

struct V2Keys {
  crypto::AeadKey request_key;
  crypto::AeadKey response_key;
  std::array<std::uint8_t, kResponsePrefixBytes> response_prefix{};
};

// prk = HKDF-Extract(nonce, sharedSecret); the three HKDF-Expand outputs of section 2.
[[nodiscard]] V2Keys derive_v2_keys(const crypto::SharedSecret& shared_secret, const crypto::Nonce& nonce);
// Version 3 from the request: requestKey and responseSecret (the input of each response's keys).
struct V3Keys {
  crypto::AeadKey request_key;
  crypto::Secret<32> response_secret;
};
[[nodiscard]] V3Keys derive_v3_keys(const crypto::SharedSecret& shared_secret, const crypto::Nonce& nonce);
// "rvenc/<version>|" ‖ hex(keyId) ‖ "|" ‖ decimal(timestamp) (versions 2 and 3)
[[nodiscard]] std::string request_ad(Version version, const crypto::KeyId& key_id, std::int64_t timestamp);

// Client side: encrypts `plaintext` (the chat request JSON) into an envelope.
struct SealInput {
  Version version = Version::v3;
  const crypto::SharedSecret* shared_secret = nullptr;
  const crypto::XWingCipherText* cipher_text = nullptr;
  crypto::KeyId key_id{};
  crypto::Nonce nonce{};
  std::int64_t timestamp = 0;
};
[[nodiscard]] RequestEnvelope seal_request(const SealInput& input, std::string_view plaintext);

// Enclave side: decryption_failed if it does not authenticate (or v2 padding is bad). Version 3:
// `response_secret`, when given, receives the responseSecret derived from the same HKDF-Extract,
// for ResponseSealer::for_v3 (one extract per request on the enclave, not two).
[[nodiscard]] Result<crypto::SecureBytes> open_request(const RequestEnvelope& envelope,
                                                       const crypto::SharedSecret& shared_secret,
                                                       crypto::Secret<32>* response_secret = nullptr);

// `init` is version 3's plain first event (the response salt); the others are sealed.
enum class EventKind { init, data, error, done };
[[nodiscard]] std::string_view kind_name(EventKind kind) noexcept;
[[nodiscard]] std::optional<EventKind> kind_from_name(std::string_view name) noexcept;

// What both ends of a response stream need: v2/v3 the response key and nonce prefix; v1 the
// request's (sharedSecret, nonce) pair.
struct ResponseKeys {
  crypto::AeadKey key;
  crypto::Nonce v1_nonce{};
  ResponsePrefix prefix{};

  // Versions 1 and 2 (from the request alone).
  [[nodiscard]] static ResponseKeys derive(Version version, const crypto::SharedSecret& shared_secret,
                                           const crypto::Nonce& request_nonce);
  // Version 3: rprk = HKDF-Extract(responseSalt, responseSecret), then responseKey and prefix.
  [[nodiscard]] static ResponseKeys derive_v3(const crypto::Secret<32>& response_secret, const ResponseSalt& salt);
};

// Seals response events in order. v2/v3: counter nonces from 0, AD "rvenc/<v>|kind", padded.
// v1: the request's (sharedSecret, nonce), empty AD, done as the plain "[DONE]".
class ResponseSealer {
 public:
  // Version 3 draws a fresh response salt from the system's CSPRNG.
  ResponseSealer(Version version, const crypto::SharedSecret& shared_secret, const crypto::Nonce& request_nonce);
  // Version 3 with a given salt (test vectors).
  ResponseSealer(const crypto::SharedSecret& shared_secret, const crypto::Nonce& request_nonce, const ResponseSalt& salt);
  // Version 3 from the responseSecret open_request gave; draws a fresh salt.
  [[nodiscard]] static ResponseSealer for_v3(const crypto::Secret<32>& response_secret);

  // Version 3: "event: init\ndata: <hex salt>\n\n", to send before any sealed event; empty for
  // versions 1 and 2.
  [[nodiscard]] std::string init_event() const;
  [[nodiscard]] const ResponseSalt& salt() const noexcept { return salt_; }

  // The hex payload of the next event of `kind` (data, error or done; advances the counter).
  [[nodiscard]] std::string seal_payload(EventKind kind, std::string_view plaintext);
  // The full SSE text "event: <kind>\ndata: <payload>\n\n".
  [[nodiscard]] std::string seal_event(EventKind kind, std::string_view plaintext);
  [[nodiscard]] std::uint64_t next_index() const noexcept { return index_; }

 private:
  ResponseSealer(Version version, const ResponseSalt& salt, ResponseKeys keys)
      : version_(version), salt_(salt), keys_(std::move(keys)) {}
  // The next event's ciphertext (advances the counter); nullopt for version 1's plain done marker.
  [[nodiscard]] std::optional<std::vector<std::uint8_t>> seal_bytes(EventKind kind, std::string_view plaintext);

  Version version_;
  ResponseSalt salt_{};
  ResponseKeys keys_;
  std::uint64_t index_ = 0;
};

// Opens response events in order. Any event that fails to decrypt or is out of order gives
// tampered_stream, as does any event after done or a done that is not "[DONE]"; after an error
// the opener stays failed. v2: an `error` event whose payload is plain JSON ('{') is the
// gateway's unauthenticated error: transport_error quoting its message. v1: such a plain
// error is returned as its plaintext (v1 allows it).
// v3: the stream must start with exactly one `init` carrying 32 bytes of hex salt (uppercase
// accepted); an encrypted event before it, a second init, an init after an encrypted event or a
// salt of another size is tampered_stream. Versions 1 and 2 ignore `init` (an unknown kind there).
// An opened `init` carries an empty plaintext: nothing to deliver.
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
  [[nodiscard]] Result<Opened> open_init(std::string_view payload);
  [[nodiscard]] std::unexpected<Error> failure(Errc code, std::string message);

  Version version_;
  ResponseKeys keys_;
  crypto::Secret<32> response_secret_;  // v3, until init
  bool have_keys_ = false;              // v3: after init; v1/v2: always
  std::uint64_t index_ = 0;
  bool done_ = false;
  bool failed_ = false;
};

}  // namespace rvenc::protocol
