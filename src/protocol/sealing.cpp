#include "rvenc/protocol/sealing.hpp"

#include <stdexcept>

#include <boost/json/parse.hpp>

#include "rvenc/common/hex.hpp"

namespace rvenc::protocol {

namespace {

constexpr std::string_view kInfoRequest = "rvenc/2 request";
constexpr std::string_view kInfoResponse = "rvenc/2 response";
constexpr std::string_view kInfoResponseNonce = "rvenc/2 response nonce";
constexpr std::string_view kV3InfoRequest = "rvenc/3 request";
constexpr std::string_view kV3InfoResponseSecret = "rvenc/3 response secret";
constexpr std::string_view kV3InfoResponse = "rvenc/3 response";
constexpr std::string_view kV3InfoResponseNonce = "rvenc/3 response nonce";

std::string_view ad_prefix(Version version) { return version == Version::v3 ? "rvenc/3|" : "rvenc/2|"; }
constexpr std::string_view kDone = "[DONE]";
// Longest gateway error message quoted back from an unauthenticated error event.
constexpr std::size_t kMaxQuotedErrorMessage = 200;

crypto::Nonce event_nonce(const std::array<std::uint8_t, kResponsePrefixBytes>& prefix, std::uint64_t index) {
  crypto::Nonce nonce{};
  std::copy(prefix.begin(), prefix.end(), nonce.begin());
  for (std::size_t i = 0; i < 8; ++i) {
    nonce[kResponsePrefixBytes + i] = static_cast<std::uint8_t>(index >> (56 - 8 * i));
  }
  return nonce;
}

std::string event_ad(Version version, EventKind kind) {
  std::string ad(ad_prefix(version));
  ad += kind_name(kind);
  return ad;
}

std::string gateway_error_message(std::string_view payload) {
  boost::system::error_code ec;
  auto value = boost::json::parse(boost::json::string_view(payload.data(), payload.size()), ec);
  if (!ec && value.is_object()) {
    if (const auto* err = value.get_object().if_contains("error"); err != nullptr && err->is_object()) {
      if (const auto* msg = err->get_object().if_contains("message"); msg != nullptr && msg->is_string()) {
        std::string text(msg->get_string().data(), msg->get_string().size());
        if (text.size() > kMaxQuotedErrorMessage) text.resize(kMaxQuotedErrorMessage);
        return text;
      }
    }
  }
  return "no message";
}

}  // namespace

V2Keys derive_v2_keys(const crypto::SharedSecret& shared_secret, const crypto::Nonce& nonce) {
  const auto prk = crypto::hkdf_extract(nonce, shared_secret.span());
  V2Keys keys;
  crypto::hkdf_expand(prk, kInfoRequest, keys.request_key.span());
  crypto::hkdf_expand(prk, kInfoResponse, keys.response_key.span());
  crypto::hkdf_expand(prk, kInfoResponseNonce, keys.response_prefix);
  return keys;
}

V3Keys derive_v3_keys(const crypto::SharedSecret& shared_secret, const crypto::Nonce& nonce) {
  const auto prk = crypto::hkdf_extract(nonce, shared_secret.span());
  V3Keys keys;
  crypto::hkdf_expand(prk, kV3InfoRequest, keys.request_key.span());
  crypto::hkdf_expand(prk, kV3InfoResponseSecret, keys.response_secret.span());
  return keys;
}

namespace {
// The request needs only the first of the version's keys.
crypto::AeadKey derive_request_key(Version version, const crypto::SharedSecret& shared_secret,
                                   const crypto::Nonce& nonce) {
  const auto prk = crypto::hkdf_extract(nonce, shared_secret.span());
  crypto::AeadKey key;
  crypto::hkdf_expand(prk, version == Version::v3 ? kV3InfoRequest : kInfoRequest, key.span());
  return key;
}

crypto::Secret<32> derive_response_secret(const crypto::SharedSecret& shared_secret, const crypto::Nonce& nonce) {
  const auto prk = crypto::hkdf_extract(nonce, shared_secret.span());
  crypto::Secret<32> secret;
  crypto::hkdf_expand(prk, kV3InfoResponseSecret, secret.span());
  return secret;
}
}  // namespace

std::string request_ad(Version version, const crypto::KeyId& key_id, std::int64_t timestamp) {
  std::string ad(ad_prefix(version));
  ad += to_hex(key_id);
  ad += '|';
  ad += std::to_string(timestamp);
  return ad;
}

RequestEnvelope seal_request(const SealInput& input, std::string_view plaintext) {
  if (input.shared_secret == nullptr || input.cipher_text == nullptr) {
    throw std::invalid_argument("seal_request needs shared_secret and cipher_text");
  }
  RequestEnvelope env;
  env.version = input.version;
  env.cipher_text = *input.cipher_text;
  env.nonce = input.nonce;
  if (input.version == Version::v1) {
    env.encrypted_inference = crypto::aead_seal(input.shared_secret->span(), input.nonce, {}, crypto::as_bytes(plaintext));
    return env;
  }
  env.key_id = input.key_id;
  env.timestamp = input.timestamp;
  const auto key = derive_request_key(input.version, *input.shared_secret, input.nonce);
  const crypto::SecureBytes padded(crypto::pad(crypto::as_bytes(plaintext)));
  env.encrypted_inference = crypto::aead_seal(
      key.span(), input.nonce, crypto::as_bytes(request_ad(env.version, env.key_id, env.timestamp)), padded.bytes());
  return env;
}

Result<crypto::SecureBytes> open_request(const RequestEnvelope& envelope, const crypto::SharedSecret& shared_secret,
                                         crypto::Secret<32>* response_secret) {
  if (envelope.version == Version::v1) {
    auto opened = crypto::aead_open(shared_secret.span(), envelope.nonce, {}, envelope.encrypted_inference);
    if (!opened) return fail(Errc::decryption_failed, "the request does not authenticate");
    return opened;
  }
  crypto::AeadKey key;
  if (envelope.version == Version::v3 && response_secret != nullptr) {
    auto keys = derive_v3_keys(shared_secret, envelope.nonce);
    key = keys.request_key;
    *response_secret = keys.response_secret;
  } else {
    key = derive_request_key(envelope.version, shared_secret, envelope.nonce);
  }
  auto opened = crypto::aead_open(key.span(), envelope.nonce,
                                  crypto::as_bytes(request_ad(envelope.version, envelope.key_id, envelope.timestamp)),
                                  envelope.encrypted_inference);
  if (!opened) return fail(Errc::decryption_failed, "the request does not authenticate (keyId, timestamp or data changed)");
  auto size = crypto::unpadded_size(opened->bytes());
  if (!size) return fail(Errc::decryption_failed, "the request padding is not valid");
  opened->truncate(*size);
  return opened;
}

std::string_view kind_name(EventKind kind) noexcept {
  switch (kind) {
    case EventKind::init:
      return kInitEventKind;
    case EventKind::data:
      return "data";
    case EventKind::error:
      return "error";
    case EventKind::done:
      return "done";
  }
  return "data";
}

std::optional<EventKind> kind_from_name(std::string_view name) noexcept {
  if (name == kInitEventKind) return EventKind::init;
  if (name == "data") return EventKind::data;
  if (name == "error") return EventKind::error;
  if (name == "done") return EventKind::done;
  return std::nullopt;
}

ResponseKeys ResponseKeys::derive(Version version, const crypto::SharedSecret& shared_secret,
                                  const crypto::Nonce& request_nonce) {
  if (version == Version::v3) throw std::invalid_argument("version 3 response keys need the response salt");
  ResponseKeys out;
  if (version == Version::v1) {
    out.key = shared_secret;
    out.v1_nonce = request_nonce;
  } else {
    auto keys = derive_v2_keys(shared_secret, request_nonce);
    out.key = keys.response_key;
    out.prefix = keys.response_prefix;
  }
  return out;
}

ResponseKeys ResponseKeys::derive_v3(const crypto::Secret<32>& response_secret, const ResponseSalt& salt) {
  const auto rprk = crypto::hkdf_extract(salt, response_secret.span());
  ResponseKeys out;
  crypto::hkdf_expand(rprk, kV3InfoResponse, out.key.span());
  crypto::hkdf_expand(rprk, kV3InfoResponseNonce, out.prefix);
  return out;
}

// --- ResponseSealer ----------------------------------------------------------------------------

ResponseSealer::ResponseSealer(Version version, const crypto::SharedSecret& shared_secret,
                               const crypto::Nonce& request_nonce)
    : version_(version) {
  if (version == Version::v3) {
    salt_ = crypto::random_array<kResponseSaltBytes>();
    keys_ = ResponseKeys::derive_v3(derive_response_secret(shared_secret, request_nonce), salt_);
  } else {
    keys_ = ResponseKeys::derive(version, shared_secret, request_nonce);
  }
}

ResponseSealer::ResponseSealer(const crypto::SharedSecret& shared_secret, const crypto::Nonce& request_nonce,
                               const ResponseSalt& salt)
    : version_(Version::v3),
      salt_(salt),
      keys_(ResponseKeys::derive_v3(derive_response_secret(shared_secret, request_nonce), salt)) {}

ResponseSealer ResponseSealer::for_v3(const crypto::Secret<32>& response_secret) {
  const auto salt = crypto::random_array<kResponseSaltBytes>();
  return ResponseSealer(Version::v3, salt, ResponseKeys::derive_v3(response_secret, salt));
}

std::string ResponseSealer::init_event() const {
  if (version_ != Version::v3) return {};
  std::string out = "event: ";
  out += kInitEventKind;
  out += "\ndata: ";
  out += to_hex(salt_);
  out += "\n\n";
  return out;
}

std::optional<std::vector<std::uint8_t>> ResponseSealer::seal_bytes(EventKind kind, std::string_view plaintext) {
  if (kind == EventKind::init) throw std::invalid_argument("init is not a sealed event: use init_event()");
  if (version_ == Version::v1) {
    // Version 1 ends the stream with a plain marker; everything else reuses the request nonce.
    if (kind == EventKind::done) return std::nullopt;
    return crypto::aead_seal(keys_.key.span(), keys_.v1_nonce, {}, crypto::as_bytes(plaintext));
  }
  const crypto::SecureBytes padded(crypto::pad(crypto::as_bytes(plaintext)));
  const auto nonce = event_nonce(keys_.prefix, index_++);
  return crypto::aead_seal(keys_.key.span(), nonce, crypto::as_bytes(event_ad(version_, kind)), padded.bytes());
}

std::string ResponseSealer::seal_payload(EventKind kind, std::string_view plaintext) {
  const auto sealed = seal_bytes(kind, plaintext);
  return sealed ? to_public_hex(*sealed) : std::string(kDone);
}

// The event written in place: a sealed answer's record is hundreds of KiB of hex.
std::string ResponseSealer::seal_event(EventKind kind, std::string_view plaintext) {
  const auto sealed = seal_bytes(kind, plaintext);
  const std::string_view name = kind_name(kind);
  std::string out;
  // 16: "event: ", "\ndata: " and "\n\n".
  out.reserve(name.size() + 16 + (sealed ? sealed->size() * 2 : kDone.size()));
  out += "event: ";
  out += name;
  out += "\ndata: ";
  if (sealed)
    append_public_hex(out, *sealed);
  else
    out += kDone;
  out += "\n\n";
  return out;
}

// --- ResponseOpener ----------------------------------------------------------------------------

ResponseOpener::ResponseOpener(Version version, const crypto::SharedSecret& shared_secret,
                               const crypto::Nonce& request_nonce)
    : version_(version) {
  if (version == Version::v3) {
    response_secret_ = derive_response_secret(shared_secret, request_nonce);
  } else {
    keys_ = ResponseKeys::derive(version, shared_secret, request_nonce);
    have_keys_ = true;
  }
}

std::unexpected<Error> ResponseOpener::failure(Errc code, std::string message) {
  failed_ = true;
  return fail(code, std::move(message));
}

Result<ResponseOpener::Opened> ResponseOpener::open_init(std::string_view payload) {
  // Versions 1 and 2 know no init: an unknown kind there, ignored.
  if (version_ != Version::v3) return Opened{EventKind::init, {}};
  if (have_keys_) {
    return failure(Errc::tampered_stream, index_ == 0 ? "a second init event" : "an init event after an encrypted event");
  }
  ResponseSalt salt{};
  if (payload.size() != 2 * kResponseSaltBytes || !from_public_hex_into(payload, salt, "responseSalt"))
    return failure(Errc::tampered_stream, "the init event does not carry a 32-byte response salt");
  keys_ = ResponseKeys::derive_v3(response_secret_, salt);
  response_secret_.wipe();
  have_keys_ = true;
  return Opened{EventKind::init, {}};
}

Result<ResponseOpener::Opened> ResponseOpener::open(EventKind kind, std::string_view payload) {
  if (failed_) return fail(Errc::tampered_stream, "the stream already failed");
  if (done_) return failure(Errc::tampered_stream, "event after the end of the stream");
  if (kind == EventKind::init) return open_init(payload);
  // Built only on failure: the success path stays allocation-light.
  const auto where = [&] { return "event " + std::to_string(index_) + " (" + std::string(kind_name(kind)) + ")"; };

  if (version_ == Version::v1) {
    if (kind == EventKind::done) {
      if (payload != kDone) {
        failed_ = true;
        return fail(Errc::tampered_stream, "the done event of a version 1 stream is not [DONE]");
      }
      done_ = true;
      return Opened{kind, crypto::SecureBytes(std::vector<std::uint8_t>(kDone.begin(), kDone.end()))};
    }
    // Version 1 lets the server send an error in clear JSON.
    if (kind == EventKind::error && payload.starts_with('{')) {
      ++index_;
      return Opened{kind, crypto::SecureBytes(std::vector<std::uint8_t>(payload.begin(), payload.end()))};
    }
    auto bytes = from_public_hex(payload, "event payload");
    auto opened = bytes ? crypto::aead_open(keys_.key.span(), keys_.v1_nonce, {}, *bytes) : std::unexpected(bytes.error());
    if (!opened) {
      failed_ = true;
      return fail(Errc::tampered_stream, where() + " does not decrypt");
    }
    ++index_;
    return Opened{kind, std::move(*opened)};
  }

  // Versions 2 and 3: the gateway's own (unencrypted) error when the enclave connection broke.
  if (kind == EventKind::error && payload.starts_with('{')) {
    failed_ = true;
    return fail(Errc::transport_error, "unauthenticated error event from the gateway: " + gateway_error_message(payload));
  }
  if (!have_keys_) return failure(Errc::tampered_stream, "an encrypted event before the stream's init event");
  auto bytes = from_public_hex(payload, "event payload");
  const auto nonce = event_nonce(keys_.prefix, index_);
  auto opened = bytes ? crypto::aead_open(keys_.key.span(), nonce, crypto::as_bytes(event_ad(version_, kind)), *bytes)
                      : std::unexpected(bytes.error());
  std::optional<std::size_t> size;
  if (opened) {
    if (auto unpadded = crypto::unpadded_size(opened->bytes())) size = *unpadded;
  }
  if (!size) {
    failed_ = true;
    return fail(Errc::tampered_stream, where() + " does not authenticate (changed, reordered, replayed or dropped events)");
  }
  opened->truncate(*size);
  if (kind == EventKind::done) {
    if (opened->view() != kDone) {
      failed_ = true;
      return fail(Errc::tampered_stream, "the done event does not carry [DONE]");
    }
    done_ = true;
  }
  ++index_;
  return Opened{kind, std::move(*opened)};
}

}  // namespace rvenc::protocol
