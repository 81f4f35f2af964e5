// HttpClient against a real server: streaming arrives incrementally, disconnects reach the handler,
// keep-alive reuse, stale pooled connections, refused/idle-timeout errors, graceful stop.
#include <future>
#include <optional>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "http_test_util.hpp"

namespace rvenc::http {
namespace {

using namespace test;
namespace bhttp = beast::http;

// How many 1 KiB chunks the disconnect test writes at most (far beyond any socket buffer).
constexpr int kMaxDisconnectWrites = 200'000;
// Polling bound while waiting for the server to take an asynchronous step (not a timing assertion).
constexpr int kMaxPolls = 2000;
constexpr auto kPollInterval = std::chrono::milliseconds(5);

Handler two_part_stream(Gate& gate) {
  return [&gate](Request&, ResponseWriter& writer) -> awaitable<void> {
    if (!co_await writer.begin_stream(event_stream_header())) co_return;
    co_await writer.write("first;");
    co_await gate.wait();  // the client must have read "first;" before this opens
    co_await writer.write("second;");
    co_await writer.end_stream();
  };
}

// Reads from `stream` until at least `wanted` bytes came in.
awaitable<std::string> read_at_least(ResponseStream& stream, std::size_t wanted) {
  std::string got;
  while (got.size() < wanted) {
    auto bytes = co_await stream.read_some();
    if (!bytes || !*bytes) break;
    got += **bytes;
  }
  co_return got;
}

// A string given back with recycle() is what the next read fills (no allocation per read).
TEST(HttpClient, RecycledStringIsFilledByTheNextRead) {
  Gate gate;
  TestServer server(two_part_stream(gate));
  run_coroutine([&]() -> awaitable<void> {
    HttpClient client;
    auto stream = co_await client.open(server.url, make_request(Verb::get, "/events"));
    EXPECT_TRUE(stream);
    if (!stream) co_return;
    auto first = co_await (*stream)->read_some();
    EXPECT_TRUE(first && *first);
    if (!first || !*first) co_return;
    EXPECT_EQ(**first, "first;");
    std::string spent = std::move(**first);
    spent.reserve(4096);  // more than any read here needs
    const char* const storage = spent.data();
    (*stream)->recycle(std::move(spent));
    gate.open();
    auto second = co_await (*stream)->read_some();
    EXPECT_TRUE(second && *second);
    if (!second || !*second) co_return;
    EXPECT_EQ(**second, "second;");
    EXPECT_EQ((*second)->data(), storage);
  });
}

TEST(HttpClient, StreamedChunksArriveBeforeTheNextIsWritten) {
  Gate gate;
  TestServer server(two_part_stream(gate));
  std::string first;
  std::string rest;
  bool clean_end = false;
  run_coroutine([&]() -> awaitable<void> {
    HttpClient client;
    auto stream = co_await client.open(server.url, make_request(Verb::get, "/events"));
    EXPECT_TRUE(stream);
    if (!stream) co_return;
    EXPECT_EQ((*stream)->status(), 200u);
    EXPECT_EQ((*stream)->header()[bhttp::field::content_type], "text/event-stream");
    first = co_await read_at_least(**stream, 6);
    gate.open();
    for (;;) {
      auto bytes = co_await (*stream)->read_some();
      EXPECT_TRUE(bytes);
      if (!bytes) break;
      if (!*bytes) {
        clean_end = true;
        break;
      }
      rest += **bytes;
    }
  });
  EXPECT_EQ(first, "first;");
  EXPECT_EQ(rest, "second;");
  EXPECT_TRUE(clean_end);
}

TEST(HttpClient, ClientDisconnectMakesWriteReturnFalse) {
  std::promise<int> writes_until_gone;
  auto gone = writes_until_gone.get_future();
  TestServer server([&writes_until_gone](Request&, ResponseWriter& writer) -> awaitable<void> {
    co_await writer.begin_stream(event_stream_header());
    const std::string chunk(1024, 'x');
    int writes = 0;
    while (writes < kMaxDisconnectWrites && co_await writer.write(chunk)) ++writes;
    EXPECT_TRUE(writer.client_gone());
    writes_until_gone.set_value(writes);
  });
  run_coroutine([&]() -> awaitable<void> {
    HttpClient client;
    auto stream = co_await client.open(server.url, make_request(Verb::get, "/"));
    EXPECT_TRUE(stream);
    if (!stream) co_return;
    auto bytes = co_await (*stream)->read_some();
    EXPECT_TRUE(bytes && *bytes);
    (*stream)->cancel();
    auto after = co_await (*stream)->read_some();
    EXPECT_FALSE(after);
  });
  ASSERT_EQ(gone.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_LT(gone.get(), kMaxDisconnectWrites);
}

TEST(HttpClient, KeepAliveReusesTheConnection) {
  TestServer server(text_handler("pong"));
  HttpClient client;
  run_coroutine([&]() -> awaitable<void> {
    for (int i = 0; i < 3; ++i) {
      auto response = co_await client.request(server.url, make_request(Verb::post, "/ping", "{}"));
      EXPECT_TRUE(response);
      if (response) {
        EXPECT_EQ(response->body(), "pong");
      }
    }
    // A fully read stream also returns its connection.
    auto stream = co_await client.open(server.url, make_request(Verb::get, "/ping"));
    EXPECT_TRUE(stream);
    if (!stream) co_return;
    EXPECT_EQ(co_await read_at_least(**stream, 4), "pong");
    EXPECT_EQ((co_await (*stream)->read_some()).value(), std::nullopt);
  });
  EXPECT_EQ(client.idle_connections(), 1u);
  // The pool outlives the io_context that made the connection: another one reuses it.
  run_coroutine([&]() -> awaitable<void> {
    auto last = co_await client.request(server.url, make_request(Verb::get, "/ping"));
    EXPECT_TRUE(last);
  });
  EXPECT_EQ(server.server->accepted_connections(), 1u);
  EXPECT_EQ(client.idle_connections(), 1u);
}

TEST(HttpClient, PooledConnectionMovesBetweenLiveIoContexts) {
  // Two io_contexts alive at once share one HttpClient: a connection idle on the first is taken over by
  // the second, and each context's pooled sockets are gone before the context is.
  TestServer server(text_handler("pong"));
  asio::io_context first;
  asio::io_context second;
  {
    HttpClient client;
    const auto ping = [&](asio::io_context& context) {
      std::optional<Result<Response>> got;
      asio::co_spawn(context, client.request(server.url, make_request(Verb::get, "/ping")),
                     [&](std::exception_ptr, Result<Response> r) { got = std::move(r); });
      context.restart();
      context.run();
      ASSERT_TRUE(got && *got);
      EXPECT_EQ((**got).body(), "pong");
    };
    ping(first);
    ping(second);
    ping(first);
    EXPECT_EQ(server.server->accepted_connections(), 1u);
    EXPECT_EQ(client.idle_connections(), 1u);
  }  // the HttpClient goes first here, with a connection registered with `first`
}

// A connection's read deadline is one timer for its whole life; once the connection is pooled
// nothing of it is pending, so an io_context with nothing else to do returns from run() at once
// (not when a long idle timeout would have fired).
TEST(HttpClient, PooledConnectionLeavesNoPendingWork) {
  TestServer server(text_handler("pong"));
  asio::io_context context;
  HttpClient client;
  std::optional<Result<std::string>> body;
  asio::co_spawn(
      context,
      [&]() -> awaitable<void> {
        Timeouts timeouts;
        timeouts.idle = std::chrono::minutes(10);
        auto stream = co_await client.open(server.url, make_request(Verb::get, "/ping"), timeouts);
        if (stream) body = co_await (*stream)->read_all();
      },
      asio::detached);
  // Far below the idle timeout, far above what the exchange takes.
  context.run_for(std::chrono::seconds(30));
  EXPECT_TRUE(context.stopped());
  ASSERT_TRUE(body && *body);
  EXPECT_EQ(**body, "pong");
  EXPECT_EQ(client.idle_connections(), 1u);
}

// Streamed bodies read straight from the socket: one delimited by the end of the connection ends
// cleanly (and is not pooled); a chunked one cut by it is an error, not a short success.
struct CannedRead {
  bool opened = false;
  Result<std::string> body;
  bool finished = false;
};

CannedRead read_canned(HttpClient& client, const CannedServer& server) {
  CannedRead read;
  run_coroutine([&]() -> awaitable<void> {
    auto stream = co_await client.open(server.url, make_request(Verb::get, "/"));
    read.opened = stream.has_value();
    if (!stream) co_return;
    read.body = co_await (*stream)->read_all();
    read.finished = (*stream)->finished();
  });
  return read;
}

TEST(HttpClient, StreamedBodyEndingWithTheConnection) {
  CannedServer server("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it");
  HttpClient client;
  const CannedRead read = read_canned(client, server);
  EXPECT_TRUE(read.opened);
  EXPECT_EQ(read.body.value_or("(failed)"), "all of it");
  EXPECT_TRUE(read.finished);
  EXPECT_EQ(client.idle_connections(), 0u);
}

TEST(HttpClient, ChunkedStreamCutByTheConnectionIsAnError) {
  CannedServer server("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n8\r\nsec");
  HttpClient client;
  const CannedRead read = read_canned(client, server);
  EXPECT_TRUE(read.opened);
  EXPECT_FALSE(read.body);
  if (!read.body) {
    EXPECT_EQ(read.body.error().code, Errc::upstream_error);
  }
  EXPECT_FALSE(read.finished);
  EXPECT_EQ(client.idle_connections(), 0u);
}

// Requests leave as Beast's serializer would write them (the head is written by hand and sent
// with the body in one non-blocking send): a small body, and one far larger than the socket
// takes at once, so the rest goes out asynchronously.
TEST(HttpClient, RequestIsWrittenAsBeastWritesIt) {
  for (const std::size_t body_bytes : {std::size_t{17}, std::size_t{8} << 20}) {
    CannedServer server("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    Request request = make_request(Verb::post, "/v1/chat?x=1", std::string(body_bytes, 'b'));
    request.set(bhttp::field::host, server.url.host_header());
    request.set(bhttp::field::user_agent, "rvenc-test");
    request.set("X-Custom", "a value");
    request.prepare_payload();
    std::ostringstream beast_bytes;
    beast_bytes << request;
    HttpClient client;
    run_coroutine([&]() -> awaitable<void> {
      auto response = co_await client.request(server.url, request);
      EXPECT_TRUE(response) << (response ? "" : response.error().to_string());
      if (response) {
        EXPECT_EQ(response->result_int(), 204);
      }
    });
    const std::string sent = server.received.get();
    EXPECT_EQ(sent.size(), beast_bytes.str().size());
    EXPECT_TRUE(sent == beast_bytes.str()) << sent.substr(0, sent.find("\r\n\r\n"));
  }
}

TEST(HttpClient, StalePooledConnectionIsReplaced) {
  ServerOptions options;
  options.idle_timeout = std::chrono::milliseconds(100);
  TestServer server(text_handler("pong"), options);
  run_coroutine([&]() -> awaitable<void> {
    HttpClient client;
    auto first = co_await client.request(server.url, make_request(Verb::post, "/", "{}"));
    EXPECT_TRUE(first);
    // Wait until the server closed the idle keep-alive connection the pool still holds.
    for (int i = 0; i < kMaxPolls && server.server->active_connections() > 0; ++i) {
      std::this_thread::sleep_for(kPollInterval);
    }
    EXPECT_EQ(server.server->active_connections(), 0u);
    auto second = co_await client.request(server.url, make_request(Verb::post, "/", "{}"));
    EXPECT_TRUE(second) << (second ? "" : second.error().to_string());
  });
  EXPECT_EQ(server.server->accepted_connections(), 2u);
}

TEST(HttpClient, ConnectionRefusedIsUpstreamError) {
  std::uint16_t port = 0;
  {
    // A port that was free a moment ago and has no listener now.
    TestServer closed(text_handler(""));
    port = closed.url.port;
  }
  auto response = fetch("GET", "http://127.0.0.1:" + std::to_string(port) + "/");
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, Errc::upstream_error);
  EXPECT_NE(response.error().message.find(std::to_string(port)), std::string::npos);
}

// An IP literal (every other test) is connected to as it is; a name goes through the resolver.
TEST(HttpClient, HostNamesAreResolved) {
  TestServer server(text_handler("pong"));
  auto by_name = fetch("GET", "http://localhost:" + std::to_string(server.url.port) + "/ping");
  ASSERT_TRUE(by_name) << by_name.error().to_string();
  EXPECT_EQ(by_name->body(), "pong");
}

TEST(HttpClient, SilentServerIsUpstreamTimeout) {
  Gate gate;
  TestServer server([&gate](Request&, ResponseWriter& writer) -> awaitable<void> {
    co_await gate.wait();
    co_await writer.send(json_response(200, "{}"));
  });
  run_coroutine([&]() -> awaitable<void> {
    HttpClient client;
    Timeouts timeouts;
    timeouts.idle = std::chrono::milliseconds(100);
    auto response = co_await client.request(server.url, make_request(Verb::post, "/", "{}"), timeouts);
    EXPECT_FALSE(response);
    if (!response) {
      EXPECT_EQ(response.error().code, Errc::upstream_timeout);
    }
  });
  gate.open();
}

TEST(HttpClient, StalledStreamIsUpstreamTimeout) {
  Gate gate;
  TestServer server(two_part_stream(gate));
  run_coroutine([&]() -> awaitable<void> {
    HttpClient client;
    Timeouts timeouts;
    timeouts.idle = std::chrono::milliseconds(100);
    auto stream = co_await client.open(server.url, make_request(Verb::get, "/"), timeouts);
    EXPECT_TRUE(stream);
    if (!stream) co_return;
    EXPECT_EQ(co_await read_at_least(**stream, 6), "first;");
    auto stalled = co_await (*stream)->read_some();
    EXPECT_FALSE(stalled);
    if (!stalled) {
      EXPECT_EQ(stalled.error().code, Errc::upstream_timeout);
    }
  });
  gate.open();
}

// The total timeout also bounds a stream that keeps trickling (the idle timeout never fires).
TEST(HttpClient, TricklingStreamEndsAtTheTotalTimeout) {
  TestServer server([](Request&, ResponseWriter& writer) -> awaitable<void> {
    if (!co_await writer.begin_stream(event_stream_header())) co_return;
    asio::steady_timer pause(co_await asio::this_coro::executor);
    for (int i = 0; i < 2000; ++i) {
      if (!co_await writer.write("tick;")) co_return;
      pause.expires_after(std::chrono::milliseconds(10));
      co_await pause.async_wait(kTuple);
    }
    co_await writer.end_stream();
  });
  run_coroutine([&]() -> awaitable<void> {
    HttpClient client;
    Timeouts timeouts;
    timeouts.idle = std::chrono::milliseconds(5'000);
    timeouts.total = std::chrono::milliseconds(300);
    auto stream = co_await client.open(server.url, make_request(Verb::get, "/"), timeouts);
    EXPECT_TRUE(stream);
    if (!stream) co_return;
    std::size_t ticks = 0;
    for (;;) {
      auto bytes = co_await (*stream)->read_some();
      if (!bytes) {
        EXPECT_EQ(bytes.error().code, Errc::upstream_timeout);
        EXPECT_NE(bytes.error().message.find("total timeout"), std::string::npos) << bytes.error().message;
        break;
      }
      EXPECT_TRUE(*bytes) << "the stream ended instead of timing out";
      if (!*bytes) break;
      ticks += (*bytes)->size();
    }
    EXPECT_GT(ticks, 0u);
  });
}

// Chunks that already arrived are handed out together (and forwarded with one write by the
// gateway), not one HTTP chunk per read_some().
TEST(HttpClient, ReadSomeHandsOutEveryChunkAlreadyReceived) {
  std::promise<void> all_sent;
  Gate burst;
  Gate finish;
  TestServer server([&](Request&, ResponseWriter& writer) -> awaitable<void> {
    if (!co_await writer.begin_stream(event_stream_header())) co_return;
    co_await writer.write("zero;");
    co_await burst.wait();
    for (const char* part : {"one;", "two;", "three;", "four;"}) co_await writer.write(part);
    all_sent.set_value();  // on loopback, sent means in the client's receive buffer
    co_await finish.wait();
    co_await writer.end_stream();
  });
  run_coroutine([&]() -> awaitable<void> {
    HttpClient client;
    auto stream = co_await client.open(server.url, make_request(Verb::get, "/events"));
    EXPECT_TRUE(stream);
    if (!stream) co_return;
    auto first = co_await (*stream)->read_some();
    EXPECT_TRUE(first && *first && **first == "zero;");
    burst.open();
    all_sent.get_future().wait();
    auto together = co_await (*stream)->read_some();
    EXPECT_TRUE(together && *together);
    if (together && *together) {
      EXPECT_EQ(**together, "one;two;three;four;");
    }
    finish.open();
    auto end = co_await (*stream)->read_some();
    EXPECT_TRUE(end && !*end);
    EXPECT_TRUE((*stream)->finished());
  });
}

// A body far over the server's limit: the server answers 413 at once and closes after draining a
// bounded amount, so the client's write fails (Broken pipe / reset); the client reports the 413
// the server sent, not the failed write.
TEST(HttpClient, ReadsTheAnswerOfAServerThatClosedDuringAHugeUpload) {
  ServerOptions server_options;
  server_options.body_limit = 1024;
  TestServer server([](Request&, ResponseWriter& writer) -> awaitable<void> {
    co_await writer.send(json_response(200, "{}"));
  }, server_options);
  run_coroutine([&]() -> awaitable<void> {
    HttpClient client;
    auto response = co_await client.request(server.url, make_request(Verb::post, "/", std::string(96u << 20, 'x')));
    EXPECT_TRUE(response) << (response ? "" : response.error().to_string());
    if (response) {
      EXPECT_EQ(response->result_int(), 413u);
      EXPECT_NE(response->body().find("request body exceeds 1024 bytes"), std::string::npos) << response->body();
    }
  });
}

TEST(HttpClient, ResponseBodyOverLimitIsUpstreamError) {
  TestServer server(text_handler(std::string(4096, 'b')));
  run_coroutine([&]() -> awaitable<void> {
    HttpClientOptions options;
    options.body_limit = 1024;
    HttpClient client(options);
    auto response = co_await client.request(server.url, make_request(Verb::get, "/"));
    EXPECT_FALSE(response);
    if (!response) {
      EXPECT_EQ(response.error().code, Errc::upstream_error);
    }
  });
}

TEST(HttpClient, ReadAllCollectsAnErrorAnswerAndEnforcesItsLimit) {
  TestServer server([](Request& request, ResponseWriter& writer) -> awaitable<void> {
    co_await writer.send(error_response(request, Error{Errc::unknown_key_id, "refetch attestation"}));
  });
  run_coroutine([&]() -> awaitable<void> {
    HttpClient client;
    auto stream = co_await client.open(server.url, make_request(Verb::post, "/", "{}"));
    EXPECT_TRUE(stream);
    if (!stream) co_return;
    EXPECT_EQ((*stream)->status(), 404u);
    auto body = co_await (*stream)->read_all();
    EXPECT_TRUE(body);
    if (body) {
      EXPECT_NE(body->find("unknown_key_id"), std::string::npos);
    }
    auto small = co_await client.open(server.url, make_request(Verb::post, "/", "{}"));
    EXPECT_TRUE(small);
    if (!small) co_return;
    auto cut = co_await (*small)->read_all(8);
    EXPECT_FALSE(cut);
  });
}

TEST(HttpClient, GarbageResponseIsUpstreamError) {
  // A raw acceptor that answers with bytes that are not HTTP.
  asio::io_context context;
  asio::ip::tcp::acceptor acceptor(context, {asio::ip::make_address("127.0.0.1"), 0});
  const auto port = acceptor.local_endpoint().port();
  std::thread peer([&] {
    auto socket = acceptor.accept();
    std::array<char, 1024> sink{};
    beast::error_code ec;
    socket.read_some(asio::buffer(sink), ec);
    asio::write(socket, asio::buffer(std::string("NOT-HTTP garbage\r\n\r\n")), ec);
  });
  auto response = fetch("GET", "http://127.0.0.1:" + std::to_string(port) + "/");
  peer.join();
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, Errc::upstream_error);
}

TEST(HttpClient, FetchRejectsBadUrlsAndMethods) {
  auto ftp = fetch("GET", "ftp://127.0.0.1/");
  ASSERT_FALSE(ftp);
  EXPECT_EQ(ftp.error().code, Errc::invalid_request);
  EXPECT_FALSE(fetch("", "http://127.0.0.1:1/"));
}

TEST(Server, GracefulStopLetsInFlightStreamFinish) {
  Gate gate;
  TestServer server(two_part_stream(gate));
  std::string rest;
  bool refused_while_stopping = false;
  run_coroutine([&]() -> awaitable<void> {
    HttpClient client;
    auto stream = co_await client.open(server.url, make_request(Verb::get, "/"));
    EXPECT_TRUE(stream);
    if (!stream) co_return;
    EXPECT_EQ(co_await read_at_least(**stream, 6), "first;");
    server.server->stop(std::chrono::seconds(30));
    // The listener closes first: wait until new connections are refused.
    for (int i = 0; i < kMaxPolls && !refused_while_stopping; ++i) {
      refused_while_stopping = !fetch("GET", server.at("/"), {}, {}, std::chrono::seconds(5));
      if (!refused_while_stopping) std::this_thread::sleep_for(kPollInterval);
    }
    gate.open();
    for (;;) {
      auto bytes = co_await (*stream)->read_some();
      EXPECT_TRUE(bytes);
      if (!bytes || !*bytes) break;
      rest += **bytes;
    }
  });
  EXPECT_TRUE(refused_while_stopping);
  EXPECT_EQ(rest, "second;");
  server.server->wait();
  EXPECT_EQ(server.server->active_connections(), 0u);
}

}  // namespace
}  // namespace rvenc::http
