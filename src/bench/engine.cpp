#include "rvenc/bench/engine.hpp"

#include <algorithm>
#include <chrono>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace rvenc::bench {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;

constexpr std::string_view kChatPath = "/v1/chat/completions";
constexpr std::string_view kEmbeddingsPath = "/v1/embeddings";
// How often a held stream looks whether it has been released.
constexpr std::chrono::milliseconds kHoldPoll{20};
// A rough prompt size for the usage object (the content is never looked at).
constexpr std::size_t kPromptTokens = 8;

std::size_t requested_chunks(const std::string& body) {
  boost::system::error_code ec;
  const auto value = json::parse(body, ec);
  if (ec || !value.is_object()) return kDefaultEngineChunks;
  const auto* max_tokens = value.as_object().if_contains("max_tokens");
  if (!max_tokens || !max_tokens->is_int64() || max_tokens->as_int64() < 1) return kDefaultEngineChunks;
  return std::min<std::size_t>(static_cast<std::size_t>(max_tokens->as_int64()), kMaxEngineChunks);
}

}  // namespace

std::string FastEngine::render_chunk(std::size_t index, std::size_t total) {
  std::string out = R"(data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1764004858,)"
                    R"("model":"bench-model","choices":[{"index":0,"delta":{)";
  if (index == 0) out += R"("role":"assistant",)";
  out += index == 0 ? R"("content":"tok"},)" : R"("content":" tok"},)";
  const bool last = index + 1 == total;
  out += last ? R"("logprobs":null,"finish_reason":"stop"}],)" : R"("logprobs":null,"finish_reason":null}],)";
  if (last) {
    out += R"("usage":{"prompt_tokens":)" + std::to_string(kPromptTokens) + R"(,"completion_tokens":)" +
           std::to_string(total) + R"(,"total_tokens":)" + std::to_string(total + kPromptTokens) + "}}\n\n";
  } else {
    out += "\"usage\":null}\n\n";
  }
  return out;
}

const std::string& FastEngine::embeddings_answer() {
  static const std::string answer = [] {
    json::array data;
    for (std::size_t i = 0; i < kEngineEmbeddingBatch; ++i) {
      json::array vector;
      for (std::size_t d = 0; d < kEngineEmbeddingDimensions; ++d)
        vector.emplace_back(static_cast<double>((i * 31 + d * 17) % 1000) / 1000.0 - 0.5);
      data.push_back(json::object{{"object", "embedding"}, {"index", i}, {"embedding", std::move(vector)}});
    }
    return json::serialize(json::object{{"object", "list"},
                                        {"data", std::move(data)},
                                        {"model", "bench-model"},
                                        {"usage", json::object{{"prompt_tokens", kPromptTokens * kEngineEmbeddingBatch},
                                                               {"total_tokens", kPromptTokens * kEngineEmbeddingBatch}}}});
  }();
  return answer;
}

const std::string& FastEngine::tiny_embeddings_answer() {
  static const std::string answer = json::serialize(json::object{
      {"object", "list"},
      {"data", json::array{json::object{{"object", "embedding"}, {"index", 0}, {"embedding", json::array{0.5}}}}},
      {"model", "bench-model"},
      {"usage", json::object{{"prompt_tokens", kPromptTokens}, {"total_tokens", kPromptTokens}}}});
  return answer;
}

Result<std::unique_ptr<FastEngine>> FastEngine::start(EngineOptions options) {
  std::unique_ptr<FastEngine> engine(new FastEngine());
  http::ServerOptions server_options;
  server_options.host = options.host;
  server_options.port = options.port;
  server_options.threads = options.threads;
  server_options.max_connections = kEngineMaxConnections;
  server_options.server_name = "rvenc-bench-engine";
  http::Router router;
  router.post(std::string(kChatPath), [self = engine.get()](http::Request& request, http::ResponseWriter& writer) {
    return self->serve(request, writer);
  });
  router.post(std::string(kEmbeddingsPath), [self = engine.get()](http::Request& request, http::ResponseWriter& writer) {
    return self->serve_embeddings(request, writer);
  });
  auto server = http::Server::create(server_options, std::move(router));
  if (!server) return std::unexpected(server.error());
  engine->server_ = std::move(*server);
  engine->server_->start();
  return engine;
}

FastEngine::~FastEngine() {
  if (server_) {
    server_->stop(std::chrono::milliseconds(0));
    server_->wait();
  }
}

std::string FastEngine::url() const { return server_->url(); }

http::awaitable<void> FastEngine::serve(http::Request& request, http::ResponseWriter& writer) {
  requests_.fetch_add(1, std::memory_order_relaxed);
  const std::size_t total = requested_chunks(request.body());
  if (!co_await writer.begin_stream(http::event_stream_header())) co_return;

  asio::steady_timer timer(co_await asio::this_coro::executor);
  const auto started = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < total; ++i) {
    const unsigned rate = rate_.load(std::memory_order_relaxed);
    // The first token goes out at once (TTFT measures the path, not a simulated prefill).
    if (i > 0 && rate > 0) {
      timer.expires_at(started + std::chrono::nanoseconds(1'000'000'000LL * static_cast<long long>(i) / rate));
      co_await timer.async_wait(asio::use_awaitable);
    }
    if (!co_await writer.write(render_chunk(i, total))) co_return;
    while (i == 0 && hold_.load(std::memory_order_relaxed)) {
      timer.expires_after(kHoldPoll);
      co_await timer.async_wait(asio::use_awaitable);
    }
  }
  if (!co_await writer.write("data: [DONE]\n\n")) co_return;
  co_await writer.end_stream();
}

http::awaitable<void> FastEngine::serve_embeddings(http::Request& request, http::ResponseWriter& writer) {
  requests_.fetch_add(1, std::memory_order_relaxed);
  // Only the floor's requests name dimensions; the others are not parsed (the engine must cost nothing).
  bool tiny = false;
  if (request.body().find("\"dimensions\"") != std::string::npos) {
    boost::system::error_code ec;
    const auto body = json::parse(request.body(), ec);
    const auto* dimensions = !ec && body.is_object() ? body.get_object().if_contains("dimensions") : nullptr;
    tiny = dimensions != nullptr && dimensions->is_int64() && dimensions->get_int64() == 1;
  }
  auto response = http::json_response(200, tiny ? tiny_embeddings_answer() : embeddings_answer());
  response.keep_alive(request.keep_alive());
  co_await writer.send(std::move(response));
}

}  // namespace rvenc::bench
