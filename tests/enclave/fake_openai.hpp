// An OpenAI-compatible model server in the test process (rvenc_http Server on 127.0.0.1:0) with
// one behaviour per base path: ok, die (drops the connection mid-stream), garbage, nodone, stall
// (silent mid-stream for `stall`), err (503 before any event). Used by the enclave's upstream
// tests and the fault tests. The ok and err paths also serve /v1/completions (text_completion
// chunks) and /v1/embeddings (one list object), natively, recording the path (docs/endpoints.md).
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "rvenc/http/server.hpp"

namespace rvenc::enclave::test {

inline constexpr auto kDefaultStall = std::chrono::seconds(3);

inline std::string openai_chunk(const std::string& model, std::string_view content, bool last = false) {
  namespace json = boost::json;
  json::object chunk{{"id", "chatcmpl-up"},
                     {"object", "chat.completion.chunk"},
                     {"created", 1},
                     {"model", model},
                     {"choices", json::array{json::object{{"index", 0},
                                                          {"delta", json::object{{"content", content}}},
                                                          {"finish_reason", last ? json::value("stop") : nullptr}}}}};
  return "data: " + json::serialize(chunk) + "\n\n";
}

// An OpenAI-compatible server with one behaviour per base path.
class FakeOpenAi {
 public:
  // `stall`: how long the stall mode stays silent before it ends the stream.
  explicit FakeOpenAi(std::chrono::milliseconds stall = kDefaultStall) : stall_(stall) {
    http::Router router;
    router.post("/ok/v1/chat/completions", [this](http::Request& request, http::ResponseWriter& writer) {
      return stream(request, writer, Mode::ok);
    });
    router.post("/die/v1/chat/completions", [this](http::Request& request, http::ResponseWriter& writer) {
      return stream(request, writer, Mode::die);
    });
    router.post("/garbage/v1/chat/completions", [this](http::Request& request, http::ResponseWriter& writer) {
      return stream(request, writer, Mode::garbage);
    });
    router.post("/nodone/v1/chat/completions", [this](http::Request& request, http::ResponseWriter& writer) {
      return stream(request, writer, Mode::no_done);
    });
    router.post("/stall/v1/chat/completions", [this](http::Request& request, http::ResponseWriter& writer) {
      return stream(request, writer, Mode::stall);
    });
    router.post("/err/v1/chat/completions", [](http::Request& request, http::ResponseWriter& writer) -> http::awaitable<void> {
      co_await writer.send(http::error_response(
          request, Error{Errc::overloaded, "the model is still loading"}));
    });
    router.post("/ok/v1/completions", [this](http::Request& request, http::ResponseWriter& writer) {
      return completions(request, writer);
    });
    router.post("/ok/v1/embeddings", [this](http::Request& request, http::ResponseWriter& writer) {
      return embeddings(request, writer);
    });
    // A long answer that stops being JSON after ~100 KiB, sent 200 ms later: the enclave has cut
    // and sent records of the first part by then.
    router.post("/bad/v1/embeddings", [this](http::Request& request, http::ResponseWriter& writer) -> http::awaitable<void> {
      record(request);
      std::string body = R"({"object":"list","data":[)";
      for (int i = 0; body.size() < 100 * 1024; ++i) body += R"({"object":"embedding","index":)" + std::to_string(i) + "},";
      auto header = http::event_stream_header();
      header.set(boost::beast::http::field::content_type, "application/json");
      const bool begun = co_await writer.begin_stream(std::move(header));
      if (!begun) co_return;
      const bool written = co_await writer.write(body);
      if (!written) co_return;
      boost::asio::steady_timer pause(co_await boost::asio::this_coro::executor, std::chrono::milliseconds(200));
      co_await pause.async_wait(boost::asio::use_awaitable);
      co_await writer.end_stream(R"(oops]})");
    });
    router.post("/err/v1/embeddings", [this](http::Request& request, http::ResponseWriter& writer) -> http::awaitable<void> {
      record(request);
      co_await writer.send(http::error_response(request, Error{Errc::overloaded, "the embedding model is loading"}));
    });
    server = std::move(*http::Server::create(http::ServerOptions{}, router));
    server->start();
  }
  ~FakeOpenAi() {
    server->stop(std::chrono::milliseconds(0));  // stalled handlers are not waited for
    server->wait();
  }

  std::string base(std::string_view mode) const { return server->url() + "/" + std::string(mode) + "/v1"; }
  boost::json::object last_request() {
    std::lock_guard lock(mutex);
    return last;
  }
  // The path of the last request to an endpoint route ("/ok/v1/embeddings").
  std::string last_path() {
    std::lock_guard lock(mutex);
    return path;
  }

  std::unique_ptr<http::Server> server;

 private:
  enum class Mode { ok, die, garbage, no_done, stall };

  http::awaitable<void> stream(http::Request& request, http::ResponseWriter& writer, Mode mode) {
    const auto body = boost::json::parse(request.body()).as_object();
    {
      std::lock_guard lock(mutex);
      last = body;
    }
    const std::string model(body.at("model").as_string());
    co_await writer.begin_stream(http::event_stream_header());
    co_await writer.write(openai_chunk(model, "Upstream "));
    co_await writer.write(openai_chunk(model, "says "));
    switch (mode) {
      case Mode::die:
        // Mid-stream, a throwing handler makes the server drop the connection.
        throw std::runtime_error("the fake model server crashed");
      case Mode::garbage:
        co_await writer.write("data: {not json\n\n");
        break;
      case Mode::no_done:
        break;
      case Mode::stall: {
        // Silent for much longer than the engine's timeout.
        boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, stall_);
        co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
        break;
      }
      case Mode::ok:
        co_await writer.write(openai_chunk(model, "hello.", true));
        co_await writer.write(
            "data: {\"id\":\"chatcmpl-up\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"" + model +
            "\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\n");
        co_await writer.write("data: [DONE]\n\n");
        break;
    }
    co_await writer.end_stream();
  }

  void record(const http::Request& request) {
    std::lock_guard lock(mutex);
    last = boost::json::parse(request.body()).as_object();
    path = std::string(request.target());
  }

  // Two text_completion chunks, a usage chunk, [DONE].
  http::awaitable<void> completions(http::Request& request, http::ResponseWriter& writer) {
    record(request);
    const std::string model(last_request().at("model").as_string());
    auto chunk = [&](std::string_view text, bool end) {
      boost::json::object c{{"id", "cmpl-up"}, {"object", "text_completion"}, {"created", 1}, {"model", model},
                            {"choices", boost::json::array{boost::json::object{
                                            {"index", 0}, {"text", text}, {"logprobs", nullptr},
                                            {"finish_reason", end ? boost::json::value("length") : nullptr}}}}};
      return "data: " + boost::json::serialize(c) + "\n\n";
    };
    co_await writer.begin_stream(http::event_stream_header());
    co_await writer.write(chunk("Upstream ", false));
    co_await writer.write(chunk("completes.", true));
    co_await writer.write("data: {\"id\":\"cmpl-up\",\"object\":\"text_completion\",\"created\":1,\"model\":\"" +
                          model + "\",\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2,"
                                  "\"total_tokens\":6}}\n\n");
    co_await writer.write("data: [DONE]\n\n");
    co_await writer.end_stream();
  }

  // One vector [index, 0.5] per input, usage prompt_tokens 5.
  http::awaitable<void> embeddings(http::Request& request, http::ResponseWriter& writer) {
    record(request);
    const auto body = last_request();
    const auto& input = body.at("input");
    const std::size_t count = input.is_array() && !input.as_array().empty() && !input.as_array()[0].is_int64()
                                  ? input.as_array().size()
                                  : 1;
    boost::json::array data;
    for (std::size_t i = 0; i < count; ++i)
      data.push_back(boost::json::object{{"object", "embedding"}, {"index", i},
                                         {"embedding", boost::json::array{static_cast<double>(i), 0.5}}});
    const boost::json::object list{{"object", "list"}, {"data", std::move(data)}, {"model", body.at("model")},
                                   {"usage", boost::json::object{{"prompt_tokens", 5}, {"total_tokens", 5}}}};
    co_await writer.send(http::json_response(200, boost::json::serialize(list)));
  }

  std::chrono::milliseconds stall_;
  std::mutex mutex;
  boost::json::object last;
  std::string path;
};

}  // namespace rvenc::enclave::test
