// rvenc-mux/1: the frame codec, and MuxClient against a real Server that takes the upgrade
// (streams, plain answers, resets both ways, flow control, refusal, lost connections).
#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "http_test_util.hpp"
#include "rvenc/http/mux.hpp"

namespace rvenc::http {
namespace {

using namespace test;
namespace bhttp = beast::http;

// Polling bound while waiting for the server to take an asynchronous step (not a timing assertion).
constexpr int kMaxPolls = 2000;
constexpr auto kPollInterval = std::chrono::milliseconds(5);

// Polls `done` (on the test thread) until true or the bound.
template <class Predicate>
bool eventually(Predicate done) {
  for (int i = 0; i < kMaxPolls && !done(); ++i) std::this_thread::sleep_for(kPollInterval);
  return done();
}

// The same from a coroutine, without blocking its io_context.
template <class Predicate>
awaitable<bool> eventually_async(Predicate done) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (int i = 0; i < kMaxPolls && !done(); ++i) {
    timer.expires_after(kPollInterval);
    co_await timer.async_wait(kTuple);
  }
  co_return done();
}

ServerOptions accepting_mux() {
  ServerOptions options;
  options.accept_mux = [](const Request&) { return std::optional<Response>{}; };
  return options;
}

// Reads the whole body of `stream`.
awaitable<Result<std::string>> read_body(ResponseStream& stream) {
  std::string body;
  for (;;) {
    auto bytes = co_await stream.read_some();
    if (!bytes) co_return std::unexpected(bytes.error());
    if (!*bytes) co_return body;
    body += **bytes;
  }
}

// Opens /ticks through `client`, reads the first tick, then cancels (the client's RESET): the
// stream for what a test expects after the cancel; null (the failure recorded) when it did not open.
awaitable<std::unique_ptr<ResponseStream>> first_tick_then_cancel(MuxClient& client, const Url& url) {
  auto stream = co_await client.open(url, make_request(Verb::get, "/ticks"));
  EXPECT_TRUE(stream);
  if (!stream) co_return nullptr;
  auto first = co_await (*stream)->read_some();
  EXPECT_TRUE(first && *first);
  (*stream)->cancel();
  co_return std::move(*stream);
}

Handler echo_stream() {
  return [](Request& request, ResponseWriter& writer) -> awaitable<void> {
    if (!co_await writer.begin_stream(event_stream_header())) co_return;
    co_await writer.write("got:");
    co_await writer.write(request.body());
    co_await writer.end_stream(";end");
  };
}

// Streams "tick;" until its client is gone, then calls `gone` with the ticks written. Bounded: a
// test fails (rather than hangs) if the reset never arrives.
Handler ticking(std::function<void(ResponseWriter&, int)> gone) {
  return [gone = std::move(gone)](Request&, ResponseWriter& writer) -> awaitable<void> {
    if (!co_await writer.begin_stream(event_stream_header())) co_return;
    asio::steady_timer pause(co_await asio::this_coro::executor);
    for (int ticks = 0; ticks < kMaxPolls; ++ticks) {
      if (!co_await writer.write("tick;")) {
        gone(writer, ticks);
        co_return;
      }
      pause.expires_after(kPollInterval);
      co_await pause.async_wait(kTuple);
    }
  };
}

// ---------------------------------------------------------------- frames

TEST(MuxFrames, RoundTrip) {
  std::string wire;
  mux::append_frame(wire, mux::FrameType::data, 7, "hello");
  mux::append_window(wire, 9, 1234);
  auto first = mux::next_frame(wire, 1024);
  ASSERT_TRUE(first && *first);
  EXPECT_EQ((*first)->type, mux::FrameType::data);
  EXPECT_EQ((*first)->stream, 7u);
  EXPECT_EQ((*first)->payload, "hello");
  auto second = mux::next_frame(std::string_view(wire).substr((*first)->size()), 1024);
  ASSERT_TRUE(second && *second);
  EXPECT_EQ((*second)->type, mux::FrameType::window);
  EXPECT_EQ(mux::window_increment((*second)->payload), 1234u);
}

TEST(MuxFrames, IncompleteFramesWaitForMoreBytes) {
  std::string wire;
  mux::append_frame(wire, mux::FrameType::request, 1, "a request");
  for (std::size_t cut = 0; cut < wire.size(); ++cut) {
    auto frame = mux::next_frame(std::string_view(wire).substr(0, cut), 1024);
    ASSERT_TRUE(frame) << cut;
    EXPECT_FALSE(*frame) << cut;
  }
}

TEST(MuxFrames, MalformedFramesAreErrors) {
  std::string too_large;
  mux::append_frame(too_large, mux::FrameType::data, 1, std::string(100, 'x'));
  EXPECT_FALSE(mux::next_frame(too_large, 99));
  std::string unknown_type;
  mux::append_frame(unknown_type, static_cast<mux::FrameType>(42), 1, "");
  EXPECT_FALSE(mux::next_frame(unknown_type, 99));
  std::string stream_zero;
  mux::append_frame(stream_zero, mux::FrameType::data, 0, "");
  EXPECT_FALSE(mux::next_frame(stream_zero, 99));
  EXPECT_FALSE(mux::window_increment(""));
  EXPECT_FALSE(mux::window_increment(std::string(4, '\0')));
}

// ---------------------------------------------------------------- client and server

TEST(Mux, StreamsShareOneConnection) {
  TestServer server(echo_stream(), accepting_mux());
  run_coroutine([&]() -> awaitable<void> {
    HttpClient fallback;
    MuxClient client(fallback);
    for (int i = 0; i < 3; ++i) {
      auto stream = co_await client.open(server.url, make_request(Verb::post, "/events", "n" + std::to_string(i)));
      EXPECT_TRUE(stream) << (stream ? "" : stream.error().to_string());
      if (!stream) co_return;
      EXPECT_EQ((*stream)->status(), 200u);
      EXPECT_EQ((*stream)->header()[bhttp::field::content_type], kEventStreamContentType);
      auto body = co_await read_body(**stream);
      EXPECT_TRUE(body);
      EXPECT_EQ(body.value_or(""), "got:n" + std::to_string(i) + ";end");
      EXPECT_TRUE((*stream)->finished());
    }
    EXPECT_EQ(client.connections(), 1u);
    EXPECT_EQ(fallback.idle_connections(), 0u);
  });
  EXPECT_EQ(server.server->accepted_connections(), 1u);
}


// Runs `streams` echo streams at once on an io_context served by `threads` threads; how many came
// back whole and right.
int echo_concurrently(MuxClient& client, const Url& server, int streams, int threads) {
  std::atomic<int> correct{0};
  asio::io_context context;
  for (int i = 0; i < streams; ++i) {
    asio::co_spawn(
        context,
        [&, i]() -> awaitable<void> {
          auto stream = co_await client.open(server, make_request(Verb::post, "/", std::to_string(i)));
          if (!stream) co_return;
          auto body = co_await read_body(**stream);
          if (body && *body == "got:" + std::to_string(i) + ";end") ++correct;
        },
        asio::detached);
  }
  std::vector<std::thread> runners;
  for (int t = 1; t < threads; ++t) runners.emplace_back([&] { context.run(); });
  context.run();
  for (auto& runner : runners) runner.join();
  return correct.load();
}

TEST(Mux, ConcurrentStreamsInterleaveOnOneConnection) {
  constexpr int kStreams = 64;
  TestServer server(echo_stream(), accepting_mux());
  HttpClient fallback;
  MuxClient client(fallback);
  EXPECT_EQ(echo_concurrently(client, server.url, kStreams, 1), kStreams);
  EXPECT_EQ(server.server->accepted_connections(), 1u);
}

// HttpClient coroutines on four threads, a server on two: each connection's state is shared safely.
TEST(Mux, StreamsFromSeveralThreads) {
  constexpr int kStreams = 64;
  constexpr int kClientThreads = 4;
  ServerOptions options = accepting_mux();
  options.threads = 2;
  TestServer server(echo_stream(), options);
  HttpClient fallback;
  MuxClient client(fallback);
  EXPECT_EQ(echo_concurrently(client, server.url, kStreams, kClientThreads), kStreams);
}

TEST(Mux, PlainAnswersKeepTheirStatusFieldsAndBody) {
  TestServer server(
      [](Request&, ResponseWriter& writer) -> awaitable<void> {
        auto response = error_response(Error{Errc::not_found, "nothing here"});
        response.set("X-Extra", "yes");
        co_await writer.send(std::move(response));
      },
      accepting_mux());
  run_coroutine([&]() -> awaitable<void> {
    HttpClient fallback;
    MuxClient client(fallback);
    auto stream = co_await client.open(server.url, make_request(Verb::get, "/missing"));
    EXPECT_TRUE(stream);
    if (!stream) co_return;
    EXPECT_EQ((*stream)->status(), 404u);
    EXPECT_EQ((*stream)->header()["X-Extra"], "yes");
    auto body = co_await (*stream)->read_all();
    EXPECT_TRUE(body);
    EXPECT_NE(body.value_or("").find("nothing here"), std::string::npos);
    EXPECT_EQ(client.connections(), 1u);
  });
}

TEST(Mux, CancelTellsTheHandlerItsClientIsGone) {
  std::atomic<bool> handler_saw_gone{false};
  TestServer server(ticking([&](ResponseWriter&, int) { handler_saw_gone = true; }), accepting_mux());
  run_coroutine([&]() -> awaitable<void> {
    HttpClient fallback;
    MuxClient client(fallback);
    auto stream = co_await first_tick_then_cancel(client, server.url);
    if (!stream) co_return;
    auto after = co_await stream->read_some();
    EXPECT_FALSE(after);
    EXPECT_TRUE(co_await eventually_async([&] { return handler_saw_gone.load(); }));
  });
  EXPECT_TRUE(handler_saw_gone);
}

// Issue 30 item 2: after the client's RESET, the handler can still tell it something small (the
// enclave's usage of the cut stream) in a TRAILER frame that the client awaits after cancel().
TEST(Mux, AHandlerCanSendATrailerAfterTheClientResetTheStream) {
  TestServer server(
      ticking([](ResponseWriter& writer, int ticks) { writer.send_trailer("ticks=" + std::to_string(ticks)); }),
      accepting_mux());
  run_coroutine([&]() -> awaitable<void> {
    HttpClient fallback;
    MuxClient client(fallback);
    auto stream = co_await first_tick_then_cancel(client, server.url);
    if (!stream) co_return;
    const auto trailer = co_await stream->trailer();
    EXPECT_TRUE(trailer);
    if (!trailer) co_return;
    EXPECT_TRUE(trailer->starts_with("ticks=")) << *trailer;
    EXPECT_FALSE(co_await stream->trailer());  // handed out once
    // The connection still serves (the frame was understood).
    auto next = co_await client.open(server.url, make_request(Verb::get, "/ticks"));
    EXPECT_TRUE(next);
    EXPECT_EQ(client.connections(), 1u);
  });
}

// A stream read to its end has no trailer to wait for; neither has one over HTTP/1.1.
TEST(Mux, NoTrailerWithoutAReset) {
  TestServer server(echo_stream(), accepting_mux());
  run_coroutine([&]() -> awaitable<void> {
    HttpClient fallback;
    MuxClient client(fallback);
    auto stream = co_await client.open(server.url, make_request(Verb::post, "/echo", "abc"));
    EXPECT_TRUE(stream);
    if (!stream) co_return;
    EXPECT_TRUE(co_await read_body(**stream));
    EXPECT_FALSE(co_await (*stream)->trailer());
    auto plain = co_await fallback.open(server.url, make_request(Verb::post, "/echo", "abc"));
    EXPECT_TRUE(plain);
    if (!plain) co_return;
    (*plain)->cancel();
    EXPECT_FALSE(co_await (*plain)->trailer());
  });
}

TEST(Mux, HandlerFailureMidStreamIsAnErrorNotAnEnd) {
  TestServer server(
      [](Request& request, ResponseWriter& writer) -> awaitable<void> {
        if (!co_await writer.begin_stream(event_stream_header())) co_return;
        co_await writer.write("partial;");
        if (request.target() == "/fail") throw std::runtime_error("engine broke");
        co_await writer.end_stream("whole");
      },
      accepting_mux());
  run_coroutine([&]() -> awaitable<void> {
    HttpClient fallback;
    MuxClient client(fallback);
    auto failing = co_await client.open(server.url, make_request(Verb::get, "/fail"));
    EXPECT_TRUE(failing);
    if (!failing) co_return;
    auto body = co_await read_body(**failing);
    EXPECT_FALSE(body);
    if (!body) {
      EXPECT_EQ(body.error().code, Errc::upstream_error);
    }
    EXPECT_FALSE((*failing)->finished());
    // The connection carries on.
    auto fine = co_await client.open(server.url, make_request(Verb::get, "/fine"));
    EXPECT_TRUE(fine);
    if (!fine) co_return;
    auto whole = co_await read_body(**fine);
    EXPECT_EQ(whole.value_or(""), "partial;whole");
    EXPECT_EQ(client.connections(), 1u);
  });
}

// A reader that does not read holds back its own stream (the window), never the others.
TEST(Mux, SlowReaderHoldsBackOnlyItsOwnStream) {
  constexpr std::size_t kBigBody = 4 * mux::kInitialWindow;
  constexpr std::size_t kChunk = 1024;
  std::atomic<std::size_t> big_written{0};
  TestServer server(
      [&](Request& request, ResponseWriter& writer) -> awaitable<void> {
        if (!co_await writer.begin_stream(event_stream_header())) co_return;
        if (request.target() != "/big") {
          co_await writer.end_stream("small");
          co_return;
        }
        const std::string chunk(kChunk, 'b');
        for (std::size_t sent = 0; sent < kBigBody; sent += kChunk) {
          if (!co_await writer.write(chunk)) co_return;
          big_written += kChunk;
        }
        co_await writer.end_stream();
      },
      accepting_mux());
  run_coroutine([&]() -> awaitable<void> {
    HttpClient fallback;
    MuxClient client(fallback);
    auto big = co_await client.open(server.url, make_request(Verb::get, "/big"));
    EXPECT_TRUE(big);
    if (!big) co_return;
    // The big stream is not read while the small one is served whole.
    auto small = co_await client.open(server.url, make_request(Verb::get, "/small"));
    EXPECT_TRUE(small);
    if (!small) co_return;
    EXPECT_EQ((co_await read_body(**small)).value_or(""), "small");
    EXPECT_LE(big_written.load(), mux::kInitialWindow + kChunk);
    auto body = co_await read_body(**big);
    EXPECT_TRUE(body);
    EXPECT_EQ(body.value_or("").size(), kBigBody);
  });
  EXPECT_EQ(big_written.load(), kBigBody);
}

// A large write leaves before its writer goes on (a large answer's records reach the client while
// the handler prepares the next): here the handler blocks its only thread after the write until
// the client has the bytes, which happens only if they were flushed first.
TEST(Mux, ALargeWriteIsSentBeforeTheHandlerGoesOn) {
  constexpr std::size_t kLarge = 32 * 1024;
  constexpr int kBlockedPolls = 400;  // 2 s: far beyond a flush, short for a failing run
  std::atomic<bool> received{false};
  std::atomic<bool> seen_while_blocked{false};
  TestServer server(
      [&](Request&, ResponseWriter& writer) -> awaitable<void> {
        if (!co_await writer.begin_stream(event_stream_header())) co_return;
        if (!co_await writer.write(std::string(kLarge, 'r'))) co_return;
        for (int i = 0; i < kBlockedPolls && !received.load(); ++i) std::this_thread::sleep_for(kPollInterval);
        seen_while_blocked = received.load();
        co_await writer.end_stream("end");
      },
      accepting_mux());
  run_coroutine([&]() -> awaitable<void> {
    HttpClient fallback;
    MuxClient client(fallback);
    auto stream = co_await client.open(server.url, make_request(Verb::get, "/large"));
    EXPECT_TRUE(stream);
    if (!stream) co_return;
    std::string body;
    while (body.size() < kLarge) {
      auto bytes = co_await (*stream)->read_some();
      if (!bytes || !*bytes) break;
      body += **bytes;
    }
    received = true;
    auto rest = co_await read_body(**stream);
    EXPECT_EQ(body + rest.value_or(""), std::string(kLarge, 'r') + "end");
  });
  EXPECT_TRUE(seen_while_blocked.load());
}

TEST(Mux, ServersWithoutMuxAreServedOverHttp1) {
  TestServer server(echo_stream());  // no accept_mux: the upgrade is an ordinary request (404)
  run_coroutine([&]() -> awaitable<void> {
    HttpClient fallback;
    MuxClient client(fallback);
    for (int i = 0; i < 2; ++i) {
      auto stream = co_await client.open(server.url, make_request(Verb::post, "/", "plain"));
      EXPECT_TRUE(stream);
      if (!stream) co_return;
      EXPECT_EQ((co_await read_body(**stream)).value_or(""), "got:plain;end");
    }
    EXPECT_EQ(client.connections(), 0u);
    EXPECT_EQ(fallback.idle_connections(), 1u);
  });
  // The upgrade was asked once (the refusal is remembered), on a connection of its own.
  EXPECT_EQ(server.server->accepted_connections(), 2u);
}

TEST(Mux, RefusedUpgradeFallsBackAndSendsTheAuthorization) {
  std::atomic<int> upgrades_seen{0};
  std::string authorization_seen;
  ServerOptions options;
  options.accept_mux = [&](const Request& request) -> std::optional<Response> {
    ++upgrades_seen;
    authorization_seen = std::string(request[bhttp::field::authorization]);
    return error_response(Error{Errc::invalid_api_key, "no"});
  };
  TestServer server(echo_stream(), options);
  run_coroutine([&]() -> awaitable<void> {
    HttpClient fallback;
    MuxClientOptions mux_options;
    mux_options.authorization = "Bearer the-token";
    MuxClient client(fallback, mux_options);
    auto stream = co_await client.open(server.url, make_request(Verb::post, "/", "x"));
    EXPECT_TRUE(stream);
    if (stream) {
      EXPECT_EQ((co_await read_body(**stream)).value_or(""), "got:x;end");
    }
  });
  EXPECT_EQ(upgrades_seen.load(), 1);
  EXPECT_EQ(authorization_seen, "Bearer the-token");
}

TEST(Mux, OversizedRequestsGoOverHttp1) {
  TestServer server(echo_stream(), accepting_mux());
  run_coroutine([&]() -> awaitable<void> {
    HttpClient fallback;
    MuxClientOptions options;
    options.max_request_bytes = 512;
    MuxClient client(fallback, options);
    const std::string body(1024, 'x');
    auto stream = co_await client.open(server.url, make_request(Verb::post, "/", body));
    EXPECT_TRUE(stream);
    if (stream) {
      EXPECT_EQ((co_await read_body(**stream)).value_or(""), "got:" + body + ";end");
    }
    EXPECT_EQ(client.connections(), 0u);
  });
}

TEST(Mux, RequestsOverTheServerLimitsAreAnsweredOnTheirStream) {
  ServerOptions options = accepting_mux();
  options.body_limit = 16;
  TestServer server(echo_stream(), options);
  run_coroutine([&]() -> awaitable<void> {
    HttpClient fallback;
    MuxClient client(fallback);
    auto too_large = co_await client.open(server.url, make_request(Verb::post, "/", std::string(1024, 'x')));
    EXPECT_TRUE(too_large);
    if (!too_large) co_return;
    EXPECT_EQ((*too_large)->status(), 413u);
    auto error_body = co_await (*too_large)->read_all();
    EXPECT_NE(error_body.value_or("").find("request_too_large"), std::string::npos);
    auto fine = co_await client.open(server.url, make_request(Verb::post, "/", "small"));
    EXPECT_TRUE(fine);
    if (fine) {
      EXPECT_EQ((co_await read_body(**fine)).value_or(""), "got:small;end");
    }
    EXPECT_EQ(client.connections(), 1u);
  });
}

TEST(Mux, SilentServerTimesOut) {
  Gate gate;
  TestServer server(
      [&](Request&, ResponseWriter& writer) -> awaitable<void> {
        co_await gate.wait();
        co_await writer.send(json_response(200, "{}"));
      },
      accepting_mux());
  run_coroutine([&]() -> awaitable<void> {
    HttpClient fallback;
    MuxClient client(fallback);
    Timeouts timeouts;
    timeouts.idle = std::chrono::milliseconds(200);
    auto stream = co_await client.open(server.url, make_request(Verb::get, "/slow"), timeouts);
    EXPECT_FALSE(stream);
    if (!stream) {
      EXPECT_EQ(stream.error().code, Errc::upstream_timeout);
    }
  });
  gate.open();
}

TEST(Mux, LostConnectionFailsItsStreams) {
  Gate gate;
  auto server = std::make_unique<TestServer>(
      [&](Request&, ResponseWriter& writer) -> awaitable<void> {
        if (!co_await writer.begin_stream(event_stream_header())) co_return;
        co_await writer.write("first;");
        co_await gate.wait();
        co_await writer.end_stream();
      },
      accepting_mux());
  run_coroutine([&]() -> awaitable<void> {
    HttpClient fallback;
    MuxClient client(fallback);
    auto stream = co_await client.open(server->url, make_request(Verb::get, "/"));
    EXPECT_TRUE(stream);
    if (!stream) co_return;
    auto first = co_await (*stream)->read_some();
    EXPECT_TRUE(first && *first);
    // Stopped with no grace: the connection closes under the stream (the handler waiting at the
    // gate goes with the server's io_context).
    server.reset();
    auto rest = co_await read_body(**stream);
    EXPECT_FALSE(rest);
    if (!rest) {
      EXPECT_EQ(rest.error().code, Errc::upstream_error);
    }
    EXPECT_EQ(client.connections(), 0u);
  });
}

TEST(Mux, GracefulStopLetsOpenStreamsFinish) {
  Gate gate;
  TestServer server(
      [&](Request&, ResponseWriter& writer) -> awaitable<void> {
        if (!co_await writer.begin_stream(event_stream_header())) co_return;
        co_await writer.write("first;");
        co_await gate.wait();
        co_await writer.end_stream("last");
      },
      accepting_mux());
  run_coroutine([&]() -> awaitable<void> {
    HttpClient fallback;
    MuxClient client(fallback);
    auto stream = co_await client.open(server.url, make_request(Verb::get, "/"));
    EXPECT_TRUE(stream);
    if (!stream) co_return;
    auto first = co_await (*stream)->read_some();
    EXPECT_TRUE(first && *first);
    server.server->stop(std::chrono::milliseconds(30'000));
    gate.open();
    EXPECT_EQ((co_await read_body(**stream)).value_or("error"), "last");
    // Stopped: the connection closes once its last stream is done.
    EXPECT_TRUE(co_await eventually_async([&] { return server.server->active_connections() == 0; }));
  });
}

// The client's idle connection has no read pending, so it learns of the close only by using it:
// the request is sent again on a new connection.
TEST(Mux, AConnectionTheServerClosedWhileIdleIsReplaced) {
  ServerOptions options = accepting_mux();
  options.idle_timeout = std::chrono::milliseconds(50);
  TestServer server(echo_stream(), options);
  run_coroutine([&]() -> awaitable<void> {
    HttpClient fallback;
    MuxClient client(fallback);
    auto stream = co_await client.open(server.url, make_request(Verb::post, "/", "one"));
    EXPECT_TRUE(stream);
    if (stream) {
      EXPECT_EQ((co_await read_body(**stream)).value_or(""), "got:one;end");
    }
    EXPECT_TRUE(co_await eventually_async([&] { return server.server->active_connections() == 0; }));
    stream = co_await client.open(server.url, make_request(Verb::post, "/", "two"));
    EXPECT_TRUE(stream) << (stream ? "" : stream.error().to_string());
    if (stream) {
      EXPECT_EQ((co_await read_body(**stream)).value_or(""), "got:two;end");
    }
  });
  EXPECT_EQ(server.server->accepted_connections(), 2u);
}

// A MuxClient outlives the io_contexts it ran on (their connections go with them).
TEST(Mux, ClientOutlivesItsIoContexts) {
  TestServer server(echo_stream(), accepting_mux());
  HttpClient fallback;
  MuxClient client(fallback);
  for (int round = 0; round < 3; ++round) {
    run_coroutine([&]() -> awaitable<void> {
      auto stream = co_await client.open(server.url, make_request(Verb::post, "/", "r"));
      EXPECT_TRUE(stream);
      if (stream) {
        EXPECT_EQ((co_await read_body(**stream)).value_or(""), "got:r;end");
      }
      EXPECT_EQ(client.connections(), 1u);
    });
    EXPECT_EQ(client.connections(), 0u);
  }
  EXPECT_EQ(server.server->accepted_connections(), 3u);
}

TEST(Mux, ServerClosesAConnectionThatBreaksTheFraming) {
  TestServer server(echo_stream(), accepting_mux());
  RawConnection raw(server.server->port());
  raw.send("GET /rvenc/mux HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: rvenc-mux/1\r\n\r\n");
  const auto switching = raw.read_response();
  ASSERT_TRUE(switching);
  EXPECT_EQ(switching->result_int(), 101u);
  std::string frames;
  mux::append_frame(frames, mux::FrameType::head, 1, "a client never sends a HEAD");
  raw.send(frames);
  EXPECT_TRUE(raw.read_until_closed().empty());
  // Other connections are served as before.
  run_coroutine([&]() -> awaitable<void> {
    HttpClient fallback;
    MuxClient client(fallback);
    auto stream = co_await client.open(server.url, make_request(Verb::post, "/", "ok"));
    EXPECT_TRUE(stream);
    if (stream) {
      EXPECT_EQ((co_await read_body(**stream)).value_or(""), "got:ok;end");
    }
  });
}

}  // namespace
}  // namespace rvenc::http
