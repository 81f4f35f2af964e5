// Server behaviour over real sockets on 127.0.0.1: routing, limits, malformed input, slow
// clients, pipelining, overload, handler failures, signals; and the Router on a RecordingWriter.
#include <atomic>
#include <csignal>
#include <future>
#include <sstream>
#include <utility>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "http_test_util.hpp"

namespace rvenc::http {
namespace {

using namespace test;
namespace bhttp = beast::http;

Router hello_router() {
  Router router;
  router.get("/hello", text_handler("hello"));
  router.post("/echo", [](Request& request, ResponseWriter& writer) -> awaitable<void> {
    co_await writer.send(json_response(200, "{\"got\":" + std::to_string(request.body().size()) + ",\"query\":\"" +
                                                 std::string(target_query(request)) + "\"}"));
  });
  return router;
}

// The /echo route's answer: 200 with the body size and query it saw.
void expect_echo(const std::optional<Response>& response, std::string_view json) {
  ASSERT_TRUE(response);
  EXPECT_EQ(response->result_int(), 200u);
  EXPECT_EQ(response->body(), json);
}

bool has_code(const Response& response, std::string_view code) {
  return response.body().find("\"code\":\"" + std::string(code) + "\"") != std::string::npos;
}

TEST(Router, DispatchesIgnoringQueryAndAnswers404And405) {
  Router router = hello_router();
  run_coroutine([&]() -> awaitable<void> {
    Request ok{Verb::post, "/echo?stream=1", kHttp11};
    ok.body() = "abc";
    RecordingWriter ok_writer;
    co_await router(ok, ok_writer);
    EXPECT_EQ(ok_writer.status(), 200u);
    EXPECT_EQ(ok_writer.body(), R"({"got":3,"query":"stream=1"})");

    Request missing{Verb::get, "/nope", kHttp11};
    RecordingWriter missing_writer;
    co_await router(missing, missing_writer);
    EXPECT_EQ(missing_writer.status(), 404u);
    EXPECT_TRUE(has_code(*missing_writer.response, "not_found"));

    Request wrong{Verb::delete_, "/hello", kHttp11};
    RecordingWriter wrong_writer;
    co_await router(wrong, wrong_writer);
    EXPECT_EQ(wrong_writer.status(), 405u);
    EXPECT_TRUE(has_code(*wrong_writer.response, "method_not_allowed"));
    EXPECT_EQ((*wrong_writer.response)[bhttp::field::allow], "GET");
  });
}

TEST(RecordingWriter, RecordsStreamAndSimulatesDisconnect) {
  run_coroutine([]() -> awaitable<void> {
    RecordingWriter writer;
    writer.disconnect_after_writes(2);
    EXPECT_TRUE(co_await writer.begin_stream(event_stream_header()));
    EXPECT_TRUE(co_await writer.write("a"));
    EXPECT_TRUE(co_await writer.write("b"));
    EXPECT_FALSE(co_await writer.write("c"));
    EXPECT_TRUE(writer.client_gone());
    co_await writer.end_stream();
    EXPECT_EQ(writer.status(), 200u);
    EXPECT_EQ(writer.body(), "ab");
    EXPECT_EQ(writer.chunks.size(), 2u);
  });
}

TEST(Server, RoutesRealRequests) {
  TestServer server(hello_router());
  auto hello = fetch("GET", server.at("/hello"));
  ASSERT_TRUE(hello) << hello.error().to_string();
  EXPECT_EQ(hello->result_int(), 200u);
  EXPECT_EQ(hello->body(), "hello");
  EXPECT_EQ((*hello)[bhttp::field::server], "rvenc");

  auto echo = fetch("POST", server.at("/echo?x=1"), std::string(100, 'z'));
  ASSERT_TRUE(echo);
  EXPECT_EQ(echo->body(), R"({"got":100,"query":"x=1"})");

  auto missing = fetch("GET", server.at("/missing"));
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->result_int(), 404u);
  EXPECT_EQ((*missing)[bhttp::field::content_type], "application/json");
  EXPECT_TRUE(has_code(*missing, "not_found"));

  auto wrong = fetch("POST", server.at("/hello"));
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->result_int(), 405u);
  EXPECT_TRUE(has_code(*wrong, "method_not_allowed"));
}

TEST(Server, BodyOverLimitGets413) {
  ServerOptions options;
  options.body_limit = 1024;
  TestServer server(hello_router(), options);
  auto response = fetch("POST", server.at("/echo"), std::string(4096, 'x'));
  ASSERT_TRUE(response) << response.error().to_string();
  EXPECT_EQ(response->result_int(), 413u);
  EXPECT_TRUE(has_code(*response, "request_too_large"));
  auto small = fetch("POST", server.at("/echo"), std::string(1000, 'x'));
  ASSERT_TRUE(small);
  EXPECT_EQ(small->result_int(), 200u);
}

TEST(Server, HeadersOverLimitGet431) {
  ServerOptions options;
  options.header_limit = 1024;
  TestServer server(hello_router(), options);
  Fields headers;
  headers.set("X-Padding", std::string(4096, 'p'));
  auto response = fetch("GET", server.at("/hello"), {}, headers);
  ASSERT_TRUE(response) << response.error().to_string();
  EXPECT_EQ(response->result_int(), 431u);
  EXPECT_TRUE(has_code(*response, "request_too_large"));
  EXPECT_EQ(response->body().find("pppp"), std::string::npos);
}

TEST(Server, MalformedRequestGets400AndServerKeepsServing) {
  TestServer server(hello_router());
  {
    RawConnection raw(server.url.port);
    raw.send("THIS IS NOT HTTP AT ALL\r\n\r\n");
    auto response = raw.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result_int(), 400u);
    EXPECT_TRUE(has_code(*response, "invalid_request"));
    EXPECT_TRUE(raw.wait_closed());
  }
  {
    RawConnection raw(server.url.port);
    raw.send("GET /hello HTTP/1.1\r\nContent-Length: nope\r\n\r\n");
    auto response = raw.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result_int(), 400u);
  }
  auto hello = fetch("GET", server.at("/hello"));
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->body(), "hello");
}

TEST(Server, SlowLorisConnectionIsClosedAfterReadTimeout) {
  ServerOptions options;
  options.read_timeout = std::chrono::milliseconds(200);
  TestServer server(hello_router(), options);
  RawConnection raw(server.url.port);
  raw.send("GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
  EXPECT_TRUE(raw.wait_closed());
  auto hello = fetch("GET", server.at("/hello"));
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->result_int(), 200u);
}

TEST(Server, IdleKeepAliveConnectionIsClosed) {
  ServerOptions options;
  options.idle_timeout = std::chrono::milliseconds(200);
  TestServer server(hello_router(), options);
  RawConnection raw(server.url.port);
  raw.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  auto response = raw.read_response();
  ASSERT_TRUE(response);
  EXPECT_TRUE(response->keep_alive());
  EXPECT_TRUE(raw.wait_closed());
}

// A stream to a client that stops reading: once the socket buffers are full, the pending chunk
// write is given up after write_timeout and the handler learns the client is gone.
TEST(Server, StreamToAClientThatStopsReadingEndsAfterWriteTimeout) {
  ServerOptions options;
  options.write_timeout = std::chrono::milliseconds(200);
  std::promise<std::size_t> written_before_gone;
  TestServer server(
      [&written_before_gone](Request&, ResponseWriter& writer) -> awaitable<void> {
        if (!co_await writer.begin_stream(event_stream_header())) co_return;
        const std::string chunk(64 * 1024, 'x');
        std::size_t written = 0;
        while (co_await writer.write(chunk)) written += chunk.size();
        written_before_gone.set_value(written);
      },
      options);
  RawConnection raw(server.url.port);
  raw.send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
  auto gone = written_before_gone.get_future();
  ASSERT_EQ(gone.wait_for(std::chrono::seconds(kRawReceiveGuardSeconds)), std::future_status::ready);
  EXPECT_GT(gone.get(), 0u);
  EXPECT_TRUE(raw.wait_closed());
}

// Stream heads and chunk framing are written by hand (not by Beast): byte for byte what Beast writes.
TEST(Server, StreamHeadIsWrittenAsBeastWritesIt) {
  TestServer server([](Request&, ResponseWriter& writer) -> awaitable<void> {
    auto header = event_stream_header(203);
    header.set("X-Custom", "a value");
    if (!co_await writer.begin_stream(std::move(header))) co_return;
    co_await writer.write("data: x\n\n");
    co_await writer.end_stream("data: the last event\n\n");
  });
  RawConnection raw(server.url.port);
  raw.send("GET /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const std::string bytes = raw.read_until_closed();
  const auto head_end = bytes.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos) << bytes;
  const std::string head = bytes.substr(0, head_end + 4);
  beast::http::response_parser<beast::http::empty_body> parser;
  parser.skip(true);
  beast::error_code ec;
  parser.put(asio::buffer(head), ec);
  ASSERT_FALSE(ec) << ec.message();
  std::ostringstream beast_head;
  beast_head << parser.get().base();
  EXPECT_EQ(head, beast_head.str());
  EXPECT_TRUE(head.starts_with("HTTP/1.1 203 Non-Authoritative Information\r\n")) << head;
  EXPECT_NE(head.find("\r\nX-Custom: a value\r\n"), std::string::npos) << head;
  // The chunks framed by hand as Beast frames them: lowercase hex sizes, the last chunk empty.
  EXPECT_EQ(bytes.substr(head_end + 4), "9\r\ndata: x\n\n\r\n16\r\ndata: the last event\n\n\r\n0\r\n\r\n");
}

// write_now() keeps what a full socket does not take and sends it first at the next write: a
// stream far larger than the socket buffers, to a client that starts reading only once the server
// had to wait, arrives whole and in order.
TEST(Server, WriteNowKeepsWhatTheSocketDoesNotTake) {
  constexpr int kChunks = 40;
  constexpr std::size_t kChunkBytes = 512 * 1024;  // 20 MiB in all, beyond any loopback buffers
  std::promise<void> had_to_wait;
  TestServer server([&had_to_wait](Request&, ResponseWriter& writer) -> awaitable<void> {
    if (!co_await writer.begin_stream(event_stream_header())) co_return;
    bool waited = false;
    for (int i = 0; i < kChunks; ++i) {
      const std::string chunk(kChunkBytes, static_cast<char>('a' + i % 26));
      bool taken = writer.write_now(chunk);
      if (!taken) {
        if (!std::exchange(waited, true)) had_to_wait.set_value();
        taken = co_await writer.write(chunk);
      }
      if (!taken || writer.client_gone()) co_return;
    }
    co_await writer.end_stream("end");
  });
  RawConnection raw(server.url.port);
  raw.send("GET /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(had_to_wait.get_future().wait_for(std::chrono::seconds(kRawReceiveGuardSeconds)), std::future_status::ready);
  const std::string bytes = raw.read_until_closed();
  beast::http::response_parser<beast::http::string_body> parser;
  parser.body_limit(boost::none);
  beast::error_code ec;
  std::size_t used = 0;
  while (!ec && !parser.is_done() && used < bytes.size())
    used += parser.put(asio::buffer(bytes.data() + used, bytes.size() - used), ec);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_TRUE(parser.is_done());
  std::string expected;
  for (int i = 0; i < kChunks; ++i) expected.append(kChunkBytes, static_cast<char>('a' + i % 26));
  expected += "end";
  EXPECT_TRUE(parser.get().body() == expected) << parser.get().body().size() << " bytes";
}

// A request is parsed from whatever each read brings: a head split inside a field name and a
// body in two pieces (sent apart, so the server reads them separately) make one request.
TEST(Server, RequestArrivingInPiecesIsReadWhole) {
  constexpr auto kPieceGap = std::chrono::milliseconds(20);
  TestServer server(hello_router());
  RawConnection raw(server.url.port);
  raw.send("POST /echo?q=1 HTTP/1.1\r\nHost: x\r\nContent-");
  std::this_thread::sleep_for(kPieceGap);
  raw.send("Length: 11\r\n\r\nhello");
  std::this_thread::sleep_for(kPieceGap);
  raw.send(" world");
  expect_echo(raw.read_response(), "{\"got\":11,\"query\":\"q=1\"}");
}

// Expect: 100-continue gets the interim answer first; the body sent after it is read.
TEST(Server, ExpectContinueGets100BeforeTheBody) {
  TestServer server(hello_router());
  RawConnection raw(server.url.port);
  raw.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  auto interim = raw.read_response();
  ASSERT_TRUE(interim);
  EXPECT_EQ(interim->result_int(), 100u);
  raw.send("12345");
  expect_echo(raw.read_response(), "{\"got\":5,\"query\":\"\"}");
}

// A connection that ends inside a body gets no answer (there is no one to read it), and the
// server goes on serving.
TEST(Server, ConnectionEndingInsideABodyIsDroppedQuietly) {
  TestServer server(hello_router());
  {
    RawConnection raw(server.url.port);
    raw.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly a part");
    raw.shutdown_send();
    EXPECT_EQ(raw.read_until_closed(), "");
  }
  auto hello = fetch("GET", server.at("/hello"));
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->result_int(), 200u);
}

TEST(Server, PipelinedRequestsAreAnsweredInOrder) {
  TestServer server(hello_router());
  RawConnection raw(server.url.port);
  raw.send(
      "POST /echo?n=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab"
      "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
      "POST /echo?n=3 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  auto first = raw.read_response();
  auto second = raw.read_response();
  auto third = raw.read_response();
  ASSERT_TRUE(first && second && third);
  EXPECT_EQ(first->body(), R"({"got":2,"query":"n=1"})");
  EXPECT_EQ(second->body(), "hello");
  EXPECT_EQ(third->body(), R"({"got":0,"query":"n=3"})");
  EXPECT_FALSE(third->keep_alive());
  EXPECT_TRUE(raw.wait_closed());
  EXPECT_EQ(server.server->accepted_connections(), 1u);
}

TEST(Server, ConnectionsBeyondTheCapGet503) {
  ServerOptions options;
  options.max_connections = 1;
  TestServer server(hello_router(), options);
  RawConnection holder(server.url.port);
  holder.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(holder.read_response());  // the first connection is now an active session
  auto rejected = fetch("GET", server.at("/hello"));
  ASSERT_TRUE(rejected) << rejected.error().to_string();
  EXPECT_EQ(rejected->result_int(), 503u);
  EXPECT_TRUE(has_code(*rejected, "overloaded"));
}

TEST(Server, HandlerFailuresBecome500) {
  Router router;
  router.get("/throw", [](Request&, ResponseWriter&) -> awaitable<void> {
    throw std::runtime_error("secret detail");
    co_return;
  });
  router.get("/silent", [](Request&, ResponseWriter&) -> awaitable<void> { co_return; });
  TestServer server(router);
  auto thrown = fetch("GET", server.at("/throw"));
  ASSERT_TRUE(thrown);
  EXPECT_EQ(thrown->result_int(), 500u);
  EXPECT_TRUE(has_code(*thrown, "internal_error"));
  EXPECT_EQ(thrown->body().find("secret"), std::string::npos);
  auto silent = fetch("GET", server.at("/silent"));
  ASSERT_TRUE(silent);
  EXPECT_EQ(silent->result_int(), 500u);
}

TEST(Server, ServesConcurrentClientsOnSeveralThreads) {
  constexpr int kClients = 8;
  constexpr int kRequestsPerClient = 20;
  ServerOptions options;
  options.threads = 4;
  TestServer server(hello_router(), options);
  std::atomic<int> answered{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      run_coroutine([&]() -> awaitable<void> {
        HttpClient client;
        for (int i = 0; i < kRequestsPerClient; ++i) {
          auto response = co_await client.request(server.url, make_request(Verb::post, "/echo", "{}"));
          if (response && response->result_int() == 200) ++answered;
        }
      });
    });
  }
  for (auto& thread : clients) thread.join();
  EXPECT_EQ(answered.load(), kClients * kRequestsPerClient);
  // Each client kept one keep-alive connection.
  EXPECT_EQ(server.server->accepted_connections(), static_cast<std::size_t>(kClients));
}

TEST(Server, BindFailureIsAnError) {
  TestServer first(hello_router());
  ServerOptions options;
  options.port = first.url.port;
  auto second = Server::create(options, hello_router());
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message.find(std::to_string(first.url.port)), std::string::npos);
  options.host = "not-an-address";
  EXPECT_FALSE(Server::create(options, hello_router()));
}

TEST(Server, SigtermStopsTheServer) {
  auto created = Server::create(ServerOptions{}, hello_router());
  ASSERT_TRUE(created);
  auto& server = **created;
  server.stop_on_signals();
  server.start();
  ASSERT_TRUE(fetch("GET", server.url() + "/hello"));
  std::raise(SIGTERM);
  server.wait();  // returns only once the signal stopped the server
  auto after = fetch("GET", server.url() + "/hello");
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error().code, Errc::upstream_error);
}

}  // namespace
}  // namespace rvenc::http
