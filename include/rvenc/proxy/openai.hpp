// The OpenAI side of the local proxy: what it reads from an incoming chat request, how it
// turns decrypted chat.completion.chunk objects into a standard OpenAI event stream, and the
// OpenAI error JSON (with the status codes the official clients map to exception classes).
//
// Design: pure functions and small value types on Boost.JSON only, so every shaping rule is
// tested without sockets; the HTTP handlers (service.hpp) only move bytes through them.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json/object.hpp>

#include "rvenc/common/error.hpp"
#include "rvenc/protocol/chat.hpp"
#include "rvenc/protocol/endpoint.hpp"

namespace rvenc::proxy {

// The end of a successful OpenAI stream.
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";
// Longest model name echoed back in a model_not_found message.
inline constexpr std::size_t kMaxEchoedModelChars = 128;

// What the proxy needs from an incoming OpenAI chat request; the body itself is forwarded as is.
struct IncomingChat {
  std::string model;
  bool stream = false;
  // stream_options.include_usage: a final chunk with empty choices carries the usage.
  bool include_usage = false;
  boost::json::object body;  // the parsed request, forwarded unchanged
};

// invalid_request naming the field when the body is not a JSON object, `model` is missing or
// not a string, `messages` is missing or not an array, or `stream`/`stream_options` are mistyped.
[[nodiscard]] Result<IncomingChat> parse_incoming_chat(std::string_view body);
// The same for another endpoint (docs/endpoints.md): completions need `prompt`, embeddings `input`
// and refuse `stream: true` (OpenAI has no streaming embeddings). Everything else is the
// enclave's to validate (it sees the whole request).
[[nodiscard]] Result<IncomingChat> parse_incoming_request(std::string_view body, protocol::Endpoint endpoint);

// An error as the proxy answers it: status, OpenAI type and code, and the headers that go with
// it (Retry-After and x-ratelimit-* on a 429 from the gateway).
struct ApiError {
  unsigned status = 500;
  std::string message;
  std::string type;
  std::string code;
  std::vector<std::pair<std::string, std::string>> headers;
};

// Maps an rvenc error (from the SDK, the gateway, or the proxy itself) to what the proxy sends:
// the gateway's client errors (400, 401, 403, 404, 413, 429, 503) keep their status; stream and
// transport failures are 502, timeouts 504; unknown_key_id (left after the SDK's own refetch)
// is a gateway-side problem, 502.
[[nodiscard]] ApiError api_error(const Error& error);
// 404 model_not_found (NotFoundError in the official clients).
[[nodiscard]] ApiError model_not_found(std::string_view model);
// {"error":{"message","type","param":null,"code"}}
[[nodiscard]] std::string error_json(const ApiError& error);
// The in-stream form: "data: {"error":{...}}\n\n" (official clients raise on it).
[[nodiscard]] std::string stream_error_event(const ApiError& error);

// Turns decrypted chunks into OpenAI SSE text, honouring stream_options.include_usage: without
// it no chunk carries `usage`; with it every chunk has "usage": null and the usage goes into one
// final chunk with empty choices, sent by finish() before [DONE].
class StreamShaper {
 public:
  // `object`: the chunk object name of the final usage chunk (text_completion for completions).
  explicit StreamShaper(bool include_usage, std::string_view object = "chat.completion.chunk")
      : include_usage_(include_usage), object_(object) {}

  // "data: <chunk>\n\n"; invalid_request when the chunk is not a JSON object.
  [[nodiscard]] Result<std::string> chunk(std::string_view chunk_json);
  [[nodiscard]] std::string chunk(boost::json::object chunk);
  // The usage chunk (when asked for and known) followed by "data: [DONE]\n\n".
  [[nodiscard]] std::string finish() const;

 private:
  bool include_usage_;
  std::string object_;
  boost::json::object last_head_;  // id, created, model, system_fingerprint of the last chunk
  std::optional<protocol::Usage> usage_;
};

// The non-streaming answer from an assembled completion (protocol::CompletionAssembler, as the
// SDK returns it): object "chat.completion" (or `object`: "text_completion") and always a usage
// object with total_tokens (zeros when the engine reported none), as the official clients expect.
[[nodiscard]] std::string completion_json(boost::json::object completion,
                                          std::string_view object = "chat.completion");

}  // namespace rvenc::proxy
