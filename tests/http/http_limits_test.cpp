// Connections that hold the server without using it: silent new connections (first-byte
// timeout), heads that never end (header timeout), many connections from one address (per-address
// cap); the client address of a request behind trusted proxies; CIDR parsing.
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "http_test_util.hpp"
#include "rvenc/http/address.hpp"

namespace rvenc::http {
namespace {

using namespace test;
using namespace std::chrono_literals;

Router hello_router() {
  Router router;
  router.get("/hello", text_handler("hello"));
  // Answers the client address the server saw for this request.
  router.get("/who", [](Request&, ResponseWriter& writer) -> awaitable<void> {
    const auto address = writer.client_address();
    // Built before the co_await: GCC 12 miscompiles a conditional's temporaries inside one.
    std::string text = "none";
    if (address) text = address->to_string();
    co_await writer.send(json_response(200, std::move(text)));
  });
  return router;
}

constexpr std::string_view kHello = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";

TEST(ServerLimits, SilentNewConnectionIsClosedAfterTheFirstByteTimeout) {
  ServerOptions options;
  options.first_byte_timeout = 200ms;
  options.idle_timeout = 60s;  // what held a silent connection before
  TestServer server(hello_router(), options);
  RawConnection silent(server.url.port);
  EXPECT_TRUE(silent.wait_closed());  // well before the receive guard (20 s)
}

TEST(ServerLimits, HeadThatNeverEndsIsClosedAfterTheHeaderTimeout) {
  ServerOptions options;
  options.header_timeout = 200ms;
  options.read_timeout = 60s;  // what bounded a head before
  TestServer server(hello_router(), options);
  RawConnection slow(server.url.port);
  slow.send("GET /hello HTTP/1.1\r\nHost: x\r\n");
  EXPECT_TRUE(slow.wait_closed());
}

// The first-byte timeout is for new connections: between requests idle_timeout still applies.
TEST(ServerLimits, KeptAliveConnectionWaitsIdleTimeoutNotTheFirstByteTimeout) {
  ServerOptions options;
  options.first_byte_timeout = 100ms;
  options.idle_timeout = 60s;
  TestServer server(hello_router(), options);
  RawConnection raw(server.url.port);
  raw.send(kHello);
  ASSERT_TRUE(raw.read_response());
  std::this_thread::sleep_for(600ms);  // six first-byte timeouts
  raw.send(kHello);
  auto second = raw.read_response();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->body(), "hello");
}

struct Refusals {
  std::mutex mutex;
  std::vector<std::string> reasons;
  std::function<void(std::string_view)> callback() {
    return [this](std::string_view reason) {
      std::lock_guard lock(mutex);
      reasons.emplace_back(reason);
    };
  }
  std::vector<std::string> seen() {
    std::lock_guard lock(mutex);
    return reasons;
  }
};

TEST(ServerLimits, PerAddressCapRefusesTheNextConnectionAndFreesOnClose) {
  Refusals refusals;
  ServerOptions options;
  options.max_connections_per_ip = 2;
  options.per_ip_cap_loopback = true;
  options.on_connection_refused = refusals.callback();
  TestServer server(hello_router(), options);
  auto first = std::make_unique<RawConnection>(server.url.port);
  RawConnection second(server.url.port);
  for (auto* raw : {first.get(), &second}) {
    raw->send(kHello);
    ASSERT_TRUE(raw->read_response());  // both are sessions now
  }
  RawConnection third(server.url.port);
  auto refused = third.read_response();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->result_int(), 429u);
  EXPECT_NE(refused->body().find("rate_limit_exceeded"), std::string::npos);
  EXPECT_NE(refused->body().find("too many connections from your address"), std::string::npos);
  EXPECT_EQ((*refused)[beast::http::field::retry_after], "1");
  EXPECT_EQ(refusals.seen(), std::vector<std::string>{"per_ip"});

  first.reset();  // its slot is given back when the server sees the close
  std::optional<Result<Response>> after;
  for (int i = 0; i < 100; ++i) {
    after = fetch("GET", server.at("/hello"));
    if (*after && (*after)->result_int() == 200) break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(*after);
  EXPECT_EQ((*after)->result_int(), 200u);
}

// With a cap of one connection per address, a second connection while one is held is served.
void expect_a_second_connection_served(ServerOptions options) {
  options.max_connections_per_ip = 1;
  TestServer server(hello_router(), options);
  RawConnection first(server.url.port);
  first.send(kHello);
  ASSERT_TRUE(first.read_response());
  auto second = fetch("GET", server.at("/hello"));
  ASSERT_TRUE(second);
  EXPECT_EQ(second->result_int(), 200u);
}

TEST(ServerLimits, LoopbackIsExemptFromThePerAddressCapUnlessAsked) {
  expect_a_second_connection_served(ServerOptions{});
}

TEST(ServerLimits, TrustedProxiesAreExemptFromThePerAddressCap) {
  ServerOptions options;
  options.per_ip_cap_loopback = true;
  options.trusted_proxies = {parse_cidr("127.0.0.0/8").value()};
  expect_a_second_connection_served(options);
}

std::string who(const TestServer& server, std::optional<std::string> forwarded_for) {
  Fields headers;
  if (forwarded_for) headers.set("X-Forwarded-For", *forwarded_for);
  auto response = fetch("GET", server.at("/who"), {}, headers);
  return response ? response->body() : "error: " + response.error().message;
}

TEST(ServerLimits, ClientAddressIsThePeerUnlessItIsATrustedProxy) {
  TestServer direct(hello_router());
  EXPECT_EQ(who(direct, std::nullopt), "127.0.0.1");
  EXPECT_EQ(who(direct, "203.0.113.9"), "127.0.0.1");  // anyone may send the header

  ServerOptions options;
  options.trusted_proxies = {parse_cidr("127.0.0.0/8").value(), parse_cidr("10.0.0.0/8").value()};
  TestServer behind(hello_router(), options);
  EXPECT_EQ(who(behind, std::nullopt), "127.0.0.1");
  EXPECT_EQ(who(behind, "203.0.113.9"), "203.0.113.9");
  // The last untrusted hop: what the client itself wrote on the left is not believed.
  EXPECT_EQ(who(behind, "1.2.3.4, 203.0.113.9, 10.1.2.3"), "203.0.113.9");
  EXPECT_EQ(who(behind, "10.0.0.1, 10.0.0.2"), "10.0.0.1");
  EXPECT_EQ(who(behind, "garbage, 198.51.100.1"), "198.51.100.1");
  EXPECT_EQ(who(behind, "198.51.100.1, garbage"), "127.0.0.1");
  EXPECT_EQ(who(behind, "2001:db8::1"), "2001:db8::1");
}

TEST(Cidr, ParsesMatchesAndRefusesTypos) {
  const auto ten = parse_cidr("10.0.0.0/8");
  ASSERT_TRUE(ten);
  EXPECT_TRUE(ten->contains(asio::ip::make_address("10.200.3.4")));
  EXPECT_FALSE(ten->contains(asio::ip::make_address("11.0.0.1")));
  EXPECT_TRUE(ten->contains(asio::ip::make_address("::ffff:10.1.1.1")));  // v4-mapped
  EXPECT_FALSE(ten->contains(asio::ip::make_address("2001:db8::1")));
  const auto host = parse_cidr("192.0.2.7");
  ASSERT_TRUE(host);
  EXPECT_EQ(host->prefix, 32u);
  EXPECT_TRUE(host->contains(asio::ip::make_address("192.0.2.7")));
  EXPECT_FALSE(host->contains(asio::ip::make_address("192.0.2.8")));
  const auto v6 = parse_cidr("2001:db8::/33");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->contains(asio::ip::make_address("2001:db8:7fff::1")));
  EXPECT_FALSE(v6->contains(asio::ip::make_address("2001:db8:8000::1")));
  EXPECT_TRUE(parse_cidr("0.0.0.0/0")->contains(asio::ip::make_address("8.8.8.8")));
  for (const char* bad : {"", "10.0.0.0/", "10.0.0.0/33", "10.0.0.1/8", "10.0.0.0/8x", "nope/8", "::/129", "10.0.0.0/-1"}) {
    const auto parsed = parse_cidr(bad);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_EQ(parsed.error().code, Errc::invalid_request);
  }
}

}  // namespace
}  // namespace rvenc::http
