// The upstream engine: relays an OpenAI-compatible server's streamed chunks. It logs nothing: which
// upstream a request went to follows from its encrypted model, and what the upstream answered from
// its content. A failure reaches the client in the sealed error event and the enclave's log only as
// the error code of the request's chat line (docs/threat-model.md, "What each component logs").
#include <boost/beast/http/field.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "rvenc/enclave/engine.hpp"
#include "rvenc/enclave/json_answer.hpp"
#include "rvenc/protocol/endpoint.hpp"
#include "rvenc/protocol/sse.hpp"

namespace rvenc::enclave {

namespace json = boost::json;

namespace {

// After [DONE], how many reads may go into reaching the end of the body (so the connection can
// be pooled); a server that keeps sending is abandoned instead.
constexpr int kMaxDrainReads = 4;

// The upstream's own error message (OpenAI error JSON), bounded; empty when there is none.
std::string upstream_message(std::string_view body) {
  boost::system::error_code ec;
  const auto parsed = json::parse(json::string_view(body.data(), body.size()), ec);
  if (ec || !parsed.is_object()) return {};
  const json::value* error = parsed.get_object().if_contains("error");
  if (error == nullptr) return {};
  std::string message;
  if (error->is_string()) {
    message = std::string(error->get_string());
  } else if (error->is_object()) {
    if (const auto* m = error->get_object().if_contains("message"); m != nullptr && m->is_string())
      message = std::string(m->get_string());
  }
  if (message.size() > kMaxUpstreamErrorMessage) message.resize(kMaxUpstreamErrorMessage);
  return message;
}

}  // namespace

Result<UpstreamSpec> parse_upstream_spec(std::string_view spec) {
  const auto eq = spec.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == spec.size())
    return fail(Errc::invalid_request, "--upstream must be MODEL=URL (e.g. llama=http://127.0.0.1:8000/v1)");
  auto url = http::parse_url(spec.substr(eq + 1));
  if (!url) return fail(Errc::invalid_request, "--upstream for model '" + std::string(spec.substr(0, eq)) +
                                                   "': " + url.error().message);
  return UpstreamSpec{std::string(spec.substr(0, eq)), std::move(*url)};
}

UpstreamEngine::UpstreamEngine(UpstreamEngineOptions options, std::shared_ptr<http::HttpClient> client)
    : options_(std::move(options)), client_(std::move(client)) {}

std::string UpstreamEngine::description() const { return "upstream " + options_.base.to_string(); }

namespace {

// POSTs `body` to {base}{path}: the open response stream (status 200), or the error the request
// ends with (upstream_error naming the HTTP status and the server's own message, upstream_timeout).
http::awaitable<Result<std::unique_ptr<http::ResponseStream>>> open_upstream(http::HttpClient& client,
                                                                           const UpstreamEngineOptions& options,
                                                                           std::string_view path, json::object body,
                                                                           bool event_stream) {
  auto upstream_request = http::make_request(http::Verb::post, options.base.join(path), json::serialize(body));
  upstream_request.set(boost::beast::http::field::accept,
                       event_stream ? http::kEventStreamContentType : std::string_view("application/json"));
  http::Timeouts timeouts;
  timeouts.connect = options.timeout;
  timeouts.idle = options.timeout;

  auto opened = co_await client.open(options.base, std::move(upstream_request), timeouts);
  if (!opened && opened.error().code == Errc::tls_error) {
    // The reason (unknown issuer, host-name mismatch, ...), not the model server's address.
    const std::string& message = opened.error().message;
    constexpr std::string_view kReasonAfter = "failed: ";
    const auto reason = message.find(kReasonAfter);
    co_return fail(Errc::upstream_error, "the TLS handshake with the model server failed" +
                                             (reason == std::string::npos ? std::string(" (--upstream-ca-file?)")
                                                                          : ": " + message.substr(reason + kReasonAfter.size())));
  }
  if (!opened) {
    co_return fail(opened.error().code == Errc::upstream_timeout ? Errc::upstream_timeout : Errc::upstream_error,
                   opened.error().code == Errc::upstream_timeout ? "the model server did not answer in time"
                                                                 : "cannot reach the model server");
  }
  auto& stream = **opened;
  if (stream.status() != 200) {
    std::string error_body;
    while (error_body.size() <= kMaxUpstreamErrorBody) {
      auto bytes = co_await stream.read_some();
      if (!bytes || !*bytes) break;
      error_body += **bytes;
    }
    if (error_body.size() > kMaxUpstreamErrorBody) stream.cancel();
    const std::string detail = upstream_message(error_body);
    co_return fail(Errc::upstream_error, "the model server answered HTTP " + std::to_string(stream.status()) +
                                             (detail.empty() ? std::string() : ": " + detail));
  }
  co_return std::move(*opened);
}

}  // namespace

http::awaitable<EngineOutcome> Engine::serve(const protocol::ChatRequest& request, UpstreamCall, ChunkSink) {
  EngineOutcome outcome;
  outcome.usage.prompt_tokens = estimate_prompt_tokens(request);
  outcome.error = Error{Errc::invalid_inference, "this model's engine does not serve the " +
                                                     std::string(protocol::endpoint_name(request.endpoint)) +
                                                     " endpoint"};
  co_return outcome;
}

http::awaitable<EngineOutcome> UpstreamEngine::generate(const protocol::ChatRequest& request, ChunkSink sink) {
  co_return co_await serve(request, UpstreamCall{.path = "/chat/completions"}, std::move(sink));
}

http::awaitable<EngineOutcome> UpstreamEngine::relay_json(const protocol::ChatRequest& request, std::string_view path,
                                                          ChunkSink sink) {
  EngineOutcome outcome;
  outcome.usage.prompt_tokens = estimate_prompt_tokens(request);
  auto opened = co_await open_upstream(*client_, options_, path, request.body, false);
  if (!opened) {
    outcome.error = opened.error();
    co_return outcome;
  }
  auto& stream = **opened;
  JsonAnswerRelay relay(sink);
  std::size_t received = 0;
  for (;;) {
    auto bytes = co_await stream.read_some();
    if (!bytes) {
      outcome.error = Error{bytes.error().code == Errc::upstream_timeout ? Errc::upstream_timeout : Errc::upstream_error,
                            "the connection to the model server broke before its answer ended"};
      co_return outcome;
    }
    if (!*bytes) break;
    received += (**bytes).size();
    if (received > kMaxUpstreamJsonReply) {
      stream.cancel();
      outcome.error = Error{Errc::upstream_error, "the model server's answer is larger than " +
                                                      std::to_string(kMaxUpstreamJsonReply >> 20) +
                                                      " MiB, the most a client takes in one answer; send fewer inputs, "
                                                      "fewer dimensions or encoding_format base64"};
      co_return outcome;
    }
    auto relayed = co_await relay.add(**bytes);
    stream.recycle(std::move(**bytes));
    if (!relayed) {
      stream.cancel();
      outcome.error = relayed.error();
      co_return outcome;
    }
  }
  auto reported = co_await relay.finish();
  if (!reported) {
    outcome.error = reported.error();
    co_return outcome;
  }
  if (*reported) outcome.usage = **reported;
  co_return outcome;
}

// Hands every event of `stream` to `handler` until it reports the end (true); a handler error
// cancels the stream and is returned. A body that ends first is an error naming `end_marker`.
// After the end, the rest of the body is read so the connection can go back to the pool.
http::awaitable<Status> UpstreamEngine::read_events(http::ResponseStream& stream, const EventHandler& handler,
                                                    std::string_view end_marker) {
  protocol::SseParser parser;
  std::vector<protocol::SseEvent> events;
  bool done = false;
  while (!done) {
    auto bytes = co_await stream.read_some();
    if (!bytes) {
      co_return fail(bytes.error().code == Errc::upstream_timeout ? Errc::upstream_timeout : Errc::upstream_error,
                     bytes.error().code == Errc::upstream_timeout
                         ? "the model server stopped sending mid-stream (timeout)"
                         : "the connection to the model server broke mid-stream");
    }
    if (!*bytes) co_return fail(Errc::upstream_error, "the model server ended the stream without " + std::string(end_marker));
    events.clear();
    if (auto ok = parser.feed(**bytes, events); !ok) {
      stream.cancel();
      co_return fail(Errc::upstream_error, "the model server sent an oversized event");
    }
    stream.recycle(std::move(**bytes));  // the events are copies; the next read refills it
    for (auto& event : events) {
      auto handled = co_await handler(event);
      if (!handled) {
        stream.cancel();
        co_return std::unexpected(handled.error());
      }
      if (*handled) {
        done = true;
        break;
      }
    }
  }
  // Read to the end of the body so the connection can go back to the pool.
  bool ended = false;
  for (int i = 0; i < kMaxDrainReads && !ended; ++i) {
    auto bytes = co_await stream.read_some();
    ended = !bytes || !*bytes;
  }
  if (!ended) stream.cancel();
  co_return Status{};
}

http::awaitable<EngineOutcome> UpstreamEngine::serve(const protocol::ChatRequest& request, UpstreamCall call,
                                                     ChunkSink sink) {
  if (!call.event_stream) co_return co_await relay_json(request, call.path, std::move(sink));
  EngineOutcome outcome;
  outcome.usage.prompt_tokens = estimate_prompt_tokens(request);
  json::object body = request.body;
  body["stream"] = true;
  body["stream_options"] = json::object{{"include_usage", true}};
  auto opened = co_await open_upstream(*client_, options_, call.path, std::move(body), true);
  if (!opened) {
    outcome.error = opened.error();
    co_return outcome;
  }

  std::optional<protocol::Usage> reported;
  std::int64_t content_chunks = 0;
  const EventHandler relay = [&](protocol::SseEvent& event) -> http::awaitable<Result<bool>> {
    if (event.data == "[DONE]") co_return true;
    boost::system::error_code ec;
    auto chunk = json::parse(json::string_view(event.data.data(), event.data.size()), ec);
    if (ec || !chunk.is_object()) co_return fail(Errc::upstream_error, "the model server sent a malformed event");
    if (chunk.get_object().contains("error") || event.event == "error") {
      const std::string detail = upstream_message(event.data);
      co_return fail(Errc::upstream_error,
                     "the model server failed mid-stream" + (detail.empty() ? std::string() : ": " + detail));
    }
    if (const auto* usage = chunk.get_object().if_contains("usage")) {
      if (auto parsed = protocol::parse_usage(*usage)) reported = parsed;
    }
    if (const auto* choices = chunk.get_object().if_contains("choices");
        choices != nullptr && choices->is_array() && !choices->get_array().empty())
      ++content_chunks;
    // A receiver gone: what the engine produced so far is billed (the gateway's rvenc-mux trailer).
    if (!co_await sink(std::move(event.data))) co_return fail(Errc::transport_error, "the client disconnected");
    co_return false;
  };
  auto relayed = co_await read_events(**opened, relay, "[DONE]");
  if (reported) {
    outcome.usage = *reported;
  } else {
    outcome.usage.completion_tokens = content_chunks;
  }
  if (!relayed) outcome.error = relayed.error();
  co_return outcome;
}

http::awaitable<EngineOutcome> UpstreamEngine::respond(const protocol::ResponsesRequest& request,
                                                       const protocol::ChatRequest& chat, ChunkSink sink) {
  if (!options_.native_responses) co_return co_await Engine::respond(request, chat, std::move(sink));
  EngineOutcome outcome;
  outcome.usage.prompt_tokens = estimate_prompt_tokens(chat);
  json::object body = request.body;
  body["stream"] = true;
  body["store"] = false;  // nothing of the conversation stays with the model server
  auto opened = co_await open_upstream(*client_, options_, "/responses", std::move(body), true);
  if (!opened) {
    outcome.error = opened.error();
    co_return outcome;
  }
  std::int64_t deltas = 0;
  const EventHandler relay = [&](protocol::SseEvent& event) -> http::awaitable<Result<bool>> {
    boost::system::error_code ec;
    auto parsed = json::parse(json::string_view(event.data.data(), event.data.size()), ec);
    if (ec || !parsed.is_object() || !parsed.get_object().contains("type"))
      co_return fail(Errc::upstream_error, "the model server sent a malformed Responses event");
    const auto terminal = protocol::terminal_response(parsed.get_object());
    if (terminal) {
      if (const auto* usage = terminal->if_contains("usage"); usage != nullptr && usage->is_object()) {
        const auto& u = usage->get_object();
        for (auto [name, out] : {std::pair{"input_tokens", &outcome.usage.prompt_tokens},
                                 std::pair{"output_tokens", &outcome.usage.completion_tokens}})
          if (const auto* n = u.if_contains(name); n != nullptr && n->is_int64() && n->get_int64() >= 0)
            *out = n->get_int64();
      }
    } else if (parsed.get_object().at("type") == "response.output_text.delta") {
      ++deltas;
    }
    const bool failed = parsed.get_object().at("type") == "error";
    if (!co_await sink(std::move(event.data))) co_return fail(Errc::transport_error, "the client disconnected");
    if (failed) co_return fail(Errc::upstream_error, "the model server failed mid-stream");
    co_return terminal.has_value();
  };
  auto relayed = co_await read_events(**opened, relay, "a final response event");
  if (outcome.usage.completion_tokens == 0) outcome.usage.completion_tokens = deltas;
  if (!relayed) outcome.error = relayed.error();
  co_return outcome;
}

}  // namespace rvenc::enclave
