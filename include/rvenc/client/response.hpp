// What the client makes of the gateway's answer: the HTTP facts callers pass on (status,
// Retry-After, x-ratelimit-*), OpenAI error bodies turned into rvenc::Error, and the decoder of
// the encrypted event stream (PROTOCOL.md section 3).
//
// Design: ResponseDecoder is pure logic (bytes in, authenticated chunks out) so every stream rule
// (order, authentication, truncation, size limits, plain gateway errors) is testable without
// sockets; the Client only moves bytes from the connection into it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json/object.hpp>

#include "rvenc/common/error.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "rvenc/protocol/envelope.hpp"
#include "rvenc/protocol/sealing.hpp"
#include "rvenc/protocol/shaping.hpp"
#include "rvenc/protocol/sse.hpp"

namespace rvenc::client {

// The HTTP head of the gateway's answer, reduced to what a caller may need to pass on.
struct ResponseMeta {
  unsigned status = 0;
  // Retry-After, x-ratelimit-*, x-request-id, in the order received (names lower-cased).
  std::vector<std::pair<std::string, std::string>> headers;

  // The value of header `name` (case-insensitive), if present.
  [[nodiscard]] std::optional<std::string> header(std::string_view name) const;
};

// True for the response headers ResponseMeta keeps (case-insensitive).
[[nodiscard]] bool is_passthrough_header(std::string_view name) noexcept;

// An OpenAI error body {"error":{"message","type","code"}} as an rvenc::Error with `status`.
// Unknown or missing codes are derived from the status; a body that is not an error JSON gives a
// message naming the status only (the body is never echoed).
[[nodiscard]] Error error_from_http(unsigned status, std::string_view body);

// One decrypted chat.completion.chunk.
struct Chunk {
  crypto::SecureBytes plaintext;  // the JSON text as the enclave sent it
  boost::json::object object;     // the same, parsed

  [[nodiscard]] std::string_view json() const noexcept { return plaintext.view(); }
};

// Decodes one response's event stream, in order. Errors, all final:
//   event_too_large   an event exceeds max_event_bytes;
//   tampered_stream   an event does not authenticate or is out of order;
//   upstream_error    the gateway's plain error event (unauthenticated: the enclave link broke);
//   <enclave code>    the enclave's encrypted error event (authenticated code and message),
//                     reported at the authenticated done that must follow it;
//   truncated_stream  finish() before an authenticated done (also after an error event).
// Shaped streams (docs/traffic-shaping.md): fillers are dropped and chunks split across records
// joined; a malformed record, or a done that leaves a chunk unfinished, is tampered_stream.
// Events of unknown kinds (and comments) are ignored; everything after done is ignored.
class ResponseDecoder {
 public:
  ResponseDecoder(protocol::Version version, const crypto::SharedSecret& shared_secret,
                  const crypto::Nonce& request_nonce, std::size_t max_event_bytes = protocol::kDefaultMaxEventBytes);

  // Appends the chunks completed by `bytes` to `out`; on error `out` still holds the chunks that
  // came before the bad event.
  [[nodiscard]] Status feed(std::string_view bytes, std::vector<Chunk>& out);
  // The body ended: ok only after an authenticated done.
  [[nodiscard]] Status finish() const;
  [[nodiscard]] bool done() const noexcept { return opener_.done(); }
  // Authenticated events accepted so far: what advances the stream (comments, events of unknown
  // kinds and plain gateway events do not), so the client's request_timeout only counts these.
  [[nodiscard]] std::uint64_t authenticated_events() const noexcept { return authenticated_events_; }

 private:
  [[nodiscard]] Status handle(const protocol::SseEvent& event, std::vector<Chunk>& out);
  [[nodiscard]] Status add_chunks(crypto::SecureBytes plaintext, std::vector<Chunk>& out);
  [[nodiscard]] Status add_chunk(crypto::SecureBytes text, std::vector<Chunk>& out);

  protocol::SseParser parser_;
  protocol::ResponseOpener opener_;
  protocol::ShapedReader shaped_;  // drops fillers, joins chunks split across shaped records
  std::vector<std::string> lines_;
  std::vector<protocol::SseEvent> events_;
  std::optional<Error> enclave_error_;  // an authenticated error event, awaiting done
  std::optional<Error> failed_;
  std::uint64_t authenticated_events_ = 0;
};

}  // namespace rvenc::client
