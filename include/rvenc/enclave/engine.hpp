// Model engines behind the enclave: the built-in demo engine and any OpenAI-compatible server.
// An engine receives a validated chat request and hands each chat.completion.chunk JSON to a
// sink as soon as it is produced; the enclave seals and streams them.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "rvenc/common/error.hpp"
#include "rvenc/http/client.hpp"
#include "rvenc/http/types.hpp"
#include "rvenc/http/url.hpp"
#include "rvenc/protocol/chat.hpp"
#include "rvenc/protocol/responses.hpp"
#include "rvenc/protocol/sse.hpp"

namespace rvenc::enclave {

inline constexpr std::string_view kDefaultDemoModel = "rvenc-demo";

// Takes one chunk JSON; returns false once the receiver is gone (the engine should stop).
using ChunkSink = std::function<http::awaitable<bool>(std::string chunk_json)>;

struct EngineOutcome {
  protocol::Usage usage;       // what was used, also when the generation failed
  std::optional<Error> error;  // set when the generation did not end cleanly
};

class Engine {
 public:
  virtual ~Engine() = default;
  // For startup lines and logs ("built-in demo engine", "upstream http://host:port/v1").
  [[nodiscard]] virtual std::string description() const = 0;
  // Generates the answer to `request` (which outlives the call) into `sink`.
  [[nodiscard]] virtual http::awaitable<EngineOutcome> generate(const protocol::ChatRequest& request,
                                                                ChunkSink sink) = 0;
  // The Responses API (protocol/responses.hpp, docs/responses.md): one Responses event JSON per
  // sink call, from response.created to the terminal event. By default translated: `chat` (the
  // validated request.chat) is generated and its chunks become Responses events; an engine that
  // serves /v1/responses itself overrides it. Ids are random ("resp_" + 32 hex digits).
  [[nodiscard]] virtual http::awaitable<EngineOutcome> respond(const protocol::ResponsesRequest& request,
                                                               const protocol::ChatRequest& chat, ChunkSink sink);
};

// Whitespace-separated words and UTF-8 characters of a text.
struct TextSize {
  std::size_t characters = 0;
  std::size_t words = 0;
};
[[nodiscard]] TextSize measure_text(std::string_view text) noexcept;
// The text of a message's "content" (a string, or the "text" parts of an array).
[[nodiscard]] std::string message_text(const boost::json::value& content);
// Prompt tokens of an engine that reports none (the demo engine, an upstream without usage):
// protocol::estimate_tokens of the decrypted request JSON's size.
[[nodiscard]] std::int64_t estimate_prompt_tokens(const protocol::ChatRequest& request);

// One chat.completion.chunk in the exact shape of PROTOCOL.md section 3.
struct ChunkFields {
  std::string_view id;
  std::int64_t created = 0;
  std::string_view model;
  std::string_view system_fingerprint;
  std::optional<std::string_view> content;
  std::optional<std::string_view> reasoning_content;
  std::optional<std::string_view> finish_reason;
  std::optional<std::string_view> matched_stop;
  std::optional<protocol::Usage> usage;
};
[[nodiscard]] std::string make_chunk(const ChunkFields& fields);

// --- Built-in demo engine --------------------------------------------------------------------

// The canned answer: it describes the user's last message by size only, never by content.
struct DemoReply {
  std::string reasoning;
  std::string content;
};
[[nodiscard]] DemoReply demo_reply(const protocol::ChatRequest& request);

struct DemoEngineOptions {
  std::string model = std::string(kDefaultDemoModel);
  std::chrono::milliseconds token_delay{0};  // pause before each token (async timer)
};

// Streams the reasoning then the content word by word (a word is a token). max_tokens bounds
// all completion tokens (reasoning included) and ends with finish_reason "length"; the first
// stop sequence found in the content cuts it there (finish_reason "stop", matched_stop set).
// The last chunk carries finish_reason and usage.
class DemoEngine final : public Engine {
 public:
  explicit DemoEngine(DemoEngineOptions options = {}) : options_(std::move(options)) {}
  [[nodiscard]] std::string description() const override { return "built-in demo engine"; }
  [[nodiscard]] http::awaitable<EngineOutcome> generate(const protocol::ChatRequest& request, ChunkSink sink) override;

 private:
  DemoEngineOptions options_;
};

// --- Upstream OpenAI-compatible server -----------------------------------------------------

inline constexpr std::chrono::milliseconds kDefaultUpstreamTimeout{60'000};
// How much of an upstream error body is read to explain the failure.
inline constexpr std::size_t kMaxUpstreamErrorBody = 64 * 1024;
inline constexpr std::size_t kMaxUpstreamErrorMessage = 512;

struct UpstreamEngineOptions {
  std::string model;
  http::Url base;  // e.g. http://127.0.0.1:8000/v1; requests go to {base}/chat/completions
  // Connect timeout, and longest silence while waiting for the head or the next bytes.
  std::chrono::milliseconds timeout = kDefaultUpstreamTimeout;
  // The server answers POST {base}/responses itself (--upstream-responses): Responses requests are
  // forwarded (stream: true, store: false) instead of translated to chat completions.
  bool native_responses = false;
};

// POSTs the request (model passed through, stream=true, stream_options.include_usage=true) and
// relays every chunk as it arrives until `data: [DONE]`. An HTTP error status, a stream that
// breaks or ends without [DONE], an error object or a malformed event all end with an error
// (upstream_error, or upstream_timeout), never with a quiet clean end.
class UpstreamEngine final : public Engine {
 public:
  UpstreamEngine(UpstreamEngineOptions options, std::shared_ptr<http::Client> client);
  [[nodiscard]] std::string description() const override;
  [[nodiscard]] http::awaitable<EngineOutcome> generate(const protocol::ChatRequest& request, ChunkSink sink) override;
  // Forwarded to {base}/responses when options.native_responses; translated otherwise. The events
  // are relayed until the terminal one (response.completed/.incomplete/.failed); usage from it.
  [[nodiscard]] http::awaitable<EngineOutcome> respond(const protocol::ResponsesRequest& request,
                                                       const protocol::ChatRequest& chat, ChunkSink sink) override;

 private:
  // Takes one event; true once the stream is complete (its end marker), an error to stop.
  using EventHandler = std::function<http::awaitable<Result<bool>>(protocol::SseEvent& event)>;
  [[nodiscard]] http::awaitable<Result<std::unique_ptr<http::ResponseStream>>> open_stream(
      std::string_view path, const boost::json::object& body);
  [[nodiscard]] static http::awaitable<Status> read_events(http::ResponseStream& stream, const EventHandler& handler,
                                                           std::string_view end_marker);

  UpstreamEngineOptions options_;
  std::shared_ptr<http::Client> client_;
};

// Parses "MODEL=URL" (--upstream). invalid_request naming the problem.
struct UpstreamSpec {
  std::string model;
  http::Url base;
};
[[nodiscard]] Result<UpstreamSpec> parse_upstream_spec(std::string_view spec);

}  // namespace rvenc::enclave
