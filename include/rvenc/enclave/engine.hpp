// Model engines behind the enclave: the built-in demo engine and any OpenAI-compatible server.
// An engine receives a validated chat request and hands each chat.completion.chunk JSON to a
// sink as soon as it is produced; the enclave seals and streams them. Requests of the other
// endpoints (docs/endpoints.md) go to serve(): legacy completions stream text_completion chunks,
// embeddings hand the one `list` object to the sink (in records when large: json_answer.hpp);
// Responses requests go to respond() (docs/responses.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rvenc/common/error.hpp"
#include "rvenc/http/client.hpp"
#include "rvenc/http/types.hpp"
#include "rvenc/http/url.hpp"
#include "rvenc/protocol/chat.hpp"
#include "rvenc/protocol/endpoint.hpp"
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

// How a request of an endpoint reaches an OpenAI-compatible server: the path below the server's
// base URL ("/embeddings"), and whether it answers with an event stream of chunks (each relayed as
// one data event) or with one JSON object (relayed as the one data event).
struct UpstreamCall {
  std::string_view path;
  bool event_stream = true;
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
  // A request of another endpoint (request.endpoint), answered into `sink`: the upstream engine
  // POSTs it to `call.path`; the demo engine answers completions and embeddings itself. The
  // default answers invalid_inference: the engine does not serve the endpoint.
  [[nodiscard]] virtual http::awaitable<EngineOutcome> serve(const protocol::ChatRequest& request, UpstreamCall call,
                                                             ChunkSink sink);
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

// Recorded answers the demo engine can replay token by token with their timing (rvenc bench
// traffic): a request whose last user message is "replay:N" gets answer N.
struct ReplayAnswer {
  std::vector<std::string> tokens;
  std::vector<std::chrono::milliseconds> delays;  // the pause before each token (the first: time to first token)
};
using ReplayAnswers = std::vector<ReplayAnswer>;
inline constexpr std::string_view kReplayPrefix = "replay:";
inline constexpr std::chrono::milliseconds kMaxReplayDelay{10'000};
// Reads a JSON-lines file, one {"tokens": [strings], "delaysMs": [integers 0..10000]} per line
// (other members ignored; as many delays as tokens). invalid_request naming the line.
[[nodiscard]] Result<std::shared_ptr<const ReplayAnswers>> load_replay_answers(const std::filesystem::path& path);
// The answer a request asks for ("replay:N" as its last user message), or null.
[[nodiscard]] const ReplayAnswer* find_replay_answer(const ReplayAnswers& answers, const protocol::ChatRequest& request);

inline constexpr std::int64_t kDefaultDemoEmbeddingDimensions = 256;

struct DemoEngineOptions {
  std::string model = std::string(kDefaultDemoModel);
  std::chrono::milliseconds token_delay{0};  // pause before each token (async timer)
  std::shared_ptr<const ReplayAnswers> replay;  // null: the canned answer only

  // Length of the demo embeddings (--embedding-dimensions) when the request gives no `dimensions`.
  std::int64_t embedding_dimensions = kDefaultDemoEmbeddingDimensions;
};

// The demo engine's pause before a token (DemoEngineOptions::token_delay) on the caller's
// executor; false when it was interrupted (the engine then ends with internal_error).
[[nodiscard]] http::awaitable<bool> demo_token_pause(std::chrono::milliseconds delay);
// The same pause up to a point in time (nothing to wait when it has passed). The demo engine
// schedules an answer's tokens at start + the sum of the delays before each, so a replayed answer
// keeps its recorded timing: pauses of their own would add the host's per-token overhead (timer
// slack, the send of the token) to every gap, and an answer's time would grow with its token count
// (rvenc bench traffic measured it: docs/traffic-shaping.md).
[[nodiscard]] http::awaitable<bool> demo_token_pause_until(std::chrono::steady_clock::time_point due);

// The demo embedding of one input (its JSON text: a string or a token array): `dimensions` floats
// drawn from a generator seeded with the input's SHA-256, scaled to unit length. Deterministic.
[[nodiscard]] std::vector<float> demo_embedding(std::string_view input_json, std::size_t dimensions);

// Streams the reasoning then the content word by word (a word is a token). max_tokens bounds
// all completion tokens (reasoning included) and ends with finish_reason "length"; the first
// stop sequence found in the content cuts it there (finish_reason "stop", matched_stop set).
// The last chunk carries finish_reason and usage.
class DemoEngine final : public Engine {
 public:
  explicit DemoEngine(DemoEngineOptions options = {}) : options_(std::move(options)) {}
  [[nodiscard]] std::string description() const override { return "built-in demo engine"; }
  [[nodiscard]] http::awaitable<EngineOutcome> generate(const protocol::ChatRequest& request, ChunkSink sink) override;
  // Embeddings: one `list` object with demo_embedding() per input (float or base64). Completions:
  // one text_completion chunk per word of a canned text per prompt (describing the prompt by
  // size only), max_tokens (OpenAI's default 16) bounding each, echo and stop honoured.
  [[nodiscard]] http::awaitable<EngineOutcome> serve(const protocol::ChatRequest& request, UpstreamCall call,
                                                     ChunkSink sink) override;

 private:
  [[nodiscard]] http::awaitable<EngineOutcome> embed(const protocol::ChatRequest& request, ChunkSink sink) const;
  [[nodiscard]] http::awaitable<EngineOutcome> complete(const protocol::ChatRequest& request, ChunkSink sink) const;
  DemoEngineOptions options_;
};

// --- Upstream OpenAI-compatible server -----------------------------------------------------

inline constexpr std::chrono::milliseconds kDefaultUpstreamTimeout{60'000};
// How much of an upstream error body is read to explain the failure.
inline constexpr std::size_t kMaxUpstreamErrorBody = 64 * 1024;
inline constexpr std::size_t kMaxUpstreamErrorMessage = 512;
// Largest one-object answer (embeddings) relayed from an upstream.
inline constexpr std::size_t kMaxUpstreamJsonReply = protocol::kMaxJsonAnswerBytes;

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
  UpstreamEngine(UpstreamEngineOptions options, std::shared_ptr<http::HttpClient> client);
  [[nodiscard]] std::string description() const override;
  [[nodiscard]] http::awaitable<EngineOutcome> generate(const protocol::ChatRequest& request, ChunkSink sink) override;
  // An event-stream call is relayed as generate() relays chat; a JSON call (embeddings) relays the
  // one answer (at most kMaxUpstreamJsonReply bytes) as it arrives, through a JsonAnswerRelay.
  [[nodiscard]] http::awaitable<EngineOutcome> serve(const protocol::ChatRequest& request, UpstreamCall call,
                                                     ChunkSink sink) override;
  // Forwarded to {base}/responses when options.native_responses; translated otherwise. The events
  // are relayed until the terminal one (response.completed/.incomplete/.failed); usage from it.
  [[nodiscard]] http::awaitable<EngineOutcome> respond(const protocol::ResponsesRequest& request,
                                                       const protocol::ChatRequest& chat, ChunkSink sink) override;

 private:
  // Takes one event; true once the stream is complete (its end marker), an error to stop.
  using EventHandler = std::function<http::awaitable<Result<bool>>(protocol::SseEvent& event)>;
  [[nodiscard]] static http::awaitable<Status> read_events(http::ResponseStream& stream, const EventHandler& handler,
                                                           std::string_view end_marker);
  [[nodiscard]] http::awaitable<EngineOutcome> relay_json(const protocol::ChatRequest& request, std::string_view path,
                                                          ChunkSink sink);
  UpstreamEngineOptions options_;
  std::shared_ptr<http::HttpClient> client_;
};

// Parses "MODEL=URL" (--upstream). invalid_request naming the problem.
struct UpstreamSpec {
  std::string model;
  http::Url base;
};
[[nodiscard]] Result<UpstreamSpec> parse_upstream_spec(std::string_view spec);

}  // namespace rvenc::enclave
