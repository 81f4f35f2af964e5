#include "rvenc/client/response.hpp"

#include <algorithm>
#include <cctype>

#include <boost/json/parse.hpp>

namespace rvenc::client {
namespace {

// Server-provided messages are shown to users; bound what we repeat of them.
constexpr std::size_t kMaxEchoedMessageBytes = 512;

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

bool istarts_with(std::string_view s, std::string_view prefix) noexcept {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

Errc code_for_status(unsigned status) noexcept {
  switch (status) {
    case 400: return Errc::invalid_request;
    case 401: return Errc::invalid_api_key;
    case 403: return Errc::key_revoked;
    case 404: return Errc::not_found;
    case 405: return Errc::method_not_allowed;
    case 413: return Errc::request_too_large;
    case 429: return Errc::rate_limit_exceeded;
    case 502: return Errc::upstream_error;
    case 503: return Errc::overloaded;
    case 504: return Errc::upstream_timeout;
    default: return status >= 400 && status < 500 ? Errc::invalid_request : Errc::internal_error;
  }
}

std::string bounded(std::string_view message) {
  if (message.size() <= kMaxEchoedMessageBytes) return std::string(message);
  return std::string(message.substr(0, kMaxEchoedMessageBytes)) + "...";
}

struct ParsedError {
  std::optional<Errc> code;  // nullopt: missing or not a known code
  std::string message;
};

// {"error": {"message": ..., "code": ...}}; nullopt when `text` is not of that shape.
std::optional<ParsedError> parse_error_json(std::string_view text) {
  boost::system::error_code ec;
  const boost::json::value value = boost::json::parse(text, ec);
  if (ec || !value.is_object()) return std::nullopt;
  const auto* error = value.as_object().if_contains("error");
  if (error == nullptr || !error->is_object()) return std::nullopt;
  ParsedError parsed;
  if (const auto* message = error->as_object().if_contains("message"); message && message->is_string())
    parsed.message = bounded(message->as_string());
  if (const auto* code = error->as_object().if_contains("code"); code && code->is_string()) {
    const std::string_view name = code->as_string();
    const Errc errc = code_from_name(name);
    // code_from_name maps unknown names to internal_error; only a real "internal_error" counts.
    if (errc != Errc::internal_error || name == code_name(Errc::internal_error)) parsed.code = errc;
  }
  return parsed;
}

}  // namespace

std::optional<std::string> ResponseMeta::header(std::string_view name) const {
  for (const auto& [key, value] : headers)
    if (iequals(key, name)) return value;
  return std::nullopt;
}

bool is_passthrough_header(std::string_view name) noexcept {
  return iequals(name, "retry-after") || istarts_with(name, "x-ratelimit-") || iequals(name, "x-request-id");
}

Error error_from_http(unsigned status, std::string_view body) {
  const int http = static_cast<int>(status);
  if (auto parsed = parse_error_json(body)) {
    std::string message = parsed->message.empty() ? "the gateway answered HTTP " + std::to_string(status)
                                                  : std::move(parsed->message);
    return Error{parsed->code.value_or(code_for_status(status)), std::move(message), http};
  }
  return Error{code_for_status(status), "the gateway answered HTTP " + std::to_string(status) + " without an error body",
               http};
}

ResponseDecoder::ResponseDecoder(protocol::Version version, const crypto::SharedSecret& shared_secret,
                                 const crypto::Nonce& request_nonce, std::size_t max_event_bytes)
    : parser_(max_event_bytes), opener_(version, shared_secret, request_nonce), shaped_(max_event_bytes) {}

Status ResponseDecoder::feed(std::string_view bytes, std::vector<Chunk>& out) {
  if (failed_) return std::unexpected(*failed_);
  if (opener_.done()) return {};
  events_.clear();
  auto parsed = parser_.feed(bytes, events_);
  // Events completed before a parse failure still count, in order.
  for (const auto& event : events_) {
    if (opener_.done()) break;
    if (auto handled = handle(event, out); !handled) {
      failed_ = handled.error();
      return std::unexpected(*failed_);
    }
  }
  if (!parsed && !opener_.done()) {
    failed_ = Error{parsed.error().code,
                    "an event of the response stream is larger than max_buffer_size (" +
                        std::to_string(parser_.max_event_bytes()) + " bytes)"};
    return std::unexpected(*failed_);
  }
  return {};
}

Status ResponseDecoder::handle(const protocol::SseEvent& event, std::vector<Chunk>& out) {
  const auto kind = protocol::kind_from_name(event.event);
  if (!kind) return {};  // unknown kinds (e.g. a stray "usage") are ignored

  auto opened = opener_.open(*kind, event.data);
  if (!opened) {
    // The opener reports the gateway's plain error event (v2) as an unauthenticated transport
    // failure; to callers it is the gateway's upstream_error. Everything else is tampered_stream.
    if (opened.error().code == Errc::transport_error) return fail(Errc::upstream_error, opened.error().message);
    return std::unexpected(opened.error());
  }
  ++authenticated_events_;
  if (enclave_error_ && opened->kind != protocol::EventKind::done)
    return fail(Errc::tampered_stream, "an event after the enclave's error event");
  switch (opened->kind) {
    case protocol::EventKind::init:  // version 3's response salt: taken by the opener
      return {};
    case protocol::EventKind::done:
      // The enclave's error counts once the stream's authenticated end confirms it.
      if (enclave_error_) return std::unexpected(*enclave_error_);
      return shaped_.finish();
    case protocol::EventKind::error: {
      const auto parsed = parse_error_json(opened->plaintext.view());
      if (!parsed) return fail(Errc::upstream_error, "the enclave sent an error event that is not an error object");
      enclave_error_ = Error{parsed->code.value_or(Errc::upstream_error),
                             parsed->message.empty() ? "the enclave reported an error" : parsed->message};
      return {};
    }
    case protocol::EventKind::data: return add_chunks(std::move(opened->plaintext), out);
  }
  return {};
}

// A data plaintext: a chunk, a shaped record (whose completed chunks are added) or a filler
// (nothing to show: docs/traffic-shaping.md).
// An unshaped plaintext is the chunk itself and is kept as it is (an embeddings list is hundreds of
// KiB: no copy).
Status ResponseDecoder::add_chunks(crypto::SecureBytes plaintext, std::vector<Chunk>& out) {
  if (shaped_.is_whole_chunk(plaintext.bytes())) return add_chunk(std::move(plaintext), out);
  lines_.clear();
  if (auto fed = shaped_.feed(plaintext.bytes(), lines_); !fed) return fed;
  for (auto& line : lines_) {
    crypto::SecureBytes text(std::vector<std::uint8_t>(line.begin(), line.end()));
    crypto::secure_wipe(line.data(), line.size());
    if (auto added = add_chunk(std::move(text), out); !added) return added;
  }
  return {};
}

Status ResponseDecoder::add_chunk(crypto::SecureBytes text, std::vector<Chunk>& out) {
  boost::system::error_code ec;
  boost::json::value value = boost::json::parse(text.view(), ec);
  if (ec || !value.is_object()) return fail(Errc::upstream_error, "the enclave sent a chunk that is not a JSON object");
  out.push_back(Chunk{std::move(text), std::move(value.as_object())});
  return {};
}

Status ResponseDecoder::finish() const {
  if (failed_) return std::unexpected(*failed_);
  if (!opener_.done())
    return fail(Errc::truncated_stream, "the response stream ended before its authenticated end (done event)");
  return {};
}

}  // namespace rvenc::client
