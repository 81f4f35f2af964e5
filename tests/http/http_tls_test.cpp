// https:// in the HTTP client, against a real TLS server (TlsFront, the production server context)
// with certificates from a test CA made here: requests, streams, keep-alive, session resumption,
// and every handshake failure as a clear tls_error (never a hang, never plain http).
#include <openssl/ssl.h>

#include <gtest/gtest.h>

#include "http_test_util.hpp"
#include "rvenc/http/tls.hpp"
#include "support/tls_support.hpp"

namespace rvenc::http {
namespace {

using namespace test;
using rvenc::test::TestCertificate;
using rvenc::test::TestPki;
using rvenc::test::TlsFront;

// Generous: a failure must come from the TLS layer, long before this.
constexpr std::chrono::milliseconds kGuard{60'000};

Handler echo_handler() {
  return [](Request& request, ResponseWriter& writer) -> awaitable<void> {
    if (target_path(request) == "/stream") {
      if (!co_await writer.begin_stream(event_stream_header())) co_return;
      co_await writer.write("one;");
      co_await writer.write("two;");
      co_await writer.end_stream();
      co_return;
    }
    co_await writer.send(json_response(200, "{\"echo\":\"" + std::string(request.body()) + "\"}"));
  };
}

Result<Response> call(HttpClient& client, const std::string& url, std::string body = {}) {
  std::optional<Result<Response>> out;
  run_coroutine([&]() -> awaitable<void> {
    auto server = parse_url(url);
    if (!server) {
      out = std::unexpected(server.error());
      co_return;
    }
    out = co_await client.request(*server, make_request(Verb::post, "", std::move(body)),
                                  Timeouts{kGuard, kGuard, kGuard});
  });
  return std::move(*out);
}

class Tls : public ::testing::Test {
 protected:
  TestPki pki;
  TestServer backend{echo_handler()};
  [[nodiscard]] HttpClientOptions trusting() const {
    HttpClientOptions options;
    options.ca_file = pki.ca_file();
    return options;
  }
  [[nodiscard]] TestCertificate good_cert() { return pki.issue("server", {"IP:127.0.0.1", "DNS:localhost"}); }
  [[nodiscard]] std::uint16_t backend_port() const { return backend.url.port; }
};

void expect_tls_error(const Result<Response>& result, std::string_view fragment) {
  ASSERT_FALSE(result) << "status " << result->result_int();
  EXPECT_EQ(result.error().code, Errc::tls_error) << result.error().message;
  EXPECT_NE(result.error().message.find(fragment), std::string::npos) << result.error().message;
}

TEST_F(Tls, RequestsAndStreamsShareOneVerifiedKeepAliveConnection) {
  TlsFront front(backend_port(), good_cert());
  HttpClient client(trusting());
  auto first = call(client, front.origin() + "/echo", "hello");
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(first->body(), R"({"echo":"hello"})");
  std::string streamed;
  run_coroutine([&]() -> awaitable<void> {
    auto server = *parse_url(front.origin() + "/stream");
    auto stream = co_await client.open(server, make_request(Verb::get, ""), Timeouts{kGuard, kGuard, kGuard});
    if (!stream) co_return;
    auto body = co_await (*stream)->read_all();
    if (body) streamed = *body;
    // Same io_context: the pooled TLS connection is reused, not a new handshake.
    auto again = co_await client.request(server, make_request(Verb::post, "/echo", "again"));
    if (again) streamed += again->body();
  });
  EXPECT_EQ(streamed, R"(one;two;{"echo":"again"})");
  EXPECT_EQ(front.handshakes(), 2U);  // one per io_context: TLS connections never change context
  EXPECT_EQ(client.idle_connections(), 0U);  // closed with their io_context
}

TEST_F(Tls, HostNameIsVerifiedWithSni) {
  TlsFront front(backend_port(), good_cert());
  HttpClient client(trusting());
  auto by_name = call(client, "https://localhost:" + std::to_string(front.port()) + "/", "n");
  ASSERT_TRUE(by_name) << by_name.error().message;
}

TEST_F(Tls, NewConnectionResumesTheOriginsSession) {
  TlsFront front(backend_port(), good_cert());
  HttpClient client(trusting());
  ASSERT_TRUE(call(client, front.origin() + "/", "a"));
  ASSERT_TRUE(call(client, front.origin() + "/", "b"));  // a new io_context: a new connection
  EXPECT_EQ(front.handshakes(), 2U);
  EXPECT_EQ(front.resumed(), 1U);
}

TEST_F(Tls, UnknownIssuerIsRefused) {
  TlsFront front(backend_port(), good_cert());
  HttpClient system_store;  // the test CA is not in the system trust store
  expect_tls_error(call(system_store, front.origin() + "/"), "unknown issuer");
  TestPki other("some other CA");
  HttpClientOptions wrong;
  wrong.ca_file = other.ca_file();
  HttpClient wrong_ca(wrong);
  expect_tls_error(call(wrong_ca, front.origin() + "/"), "unknown issuer");
  EXPECT_EQ(front.handshakes(), 0U);
}

TEST_F(Tls, HostNameMismatchIsRefused) {
  TlsFront front(backend_port(), pki.issue("elsewhere", {"DNS:elsewhere.test"}));
  HttpClient client(trusting());
  expect_tls_error(call(client, front.origin() + "/"), "host-name mismatch");
  expect_tls_error(call(client, "https://localhost:" + std::to_string(front.port()) + "/"), "host-name mismatch");
}

TEST_F(Tls, ExpiredCertificateIsRefused) {
  TlsFront front(backend_port(), pki.issue("old", {"IP:127.0.0.1"}, true));
  HttpClient client(trusting());
  expect_tls_error(call(client, front.origin() + "/"), "expired");
}

TEST_F(Tls, OldProtocolVersionIsRefused) {
  TlsFront front(backend_port(), good_cert(), TLS1_1_VERSION);
  HttpClient client(trusting());
  auto result = call(client, front.origin() + "/");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, Errc::tls_error) << result.error().message;
}

TEST_F(Tls, HttpsToAPlainPortSaysItIsNotTls) {
  HttpClient client(trusting());
  expect_tls_error(call(client, "https://127.0.0.1:" + std::to_string(backend_port()) + "/"), "not TLS");
}

TEST_F(Tls, PlainHttpToATlsPortSaysUseHttps) {
  TlsFront front(backend_port(), good_cert());
  HttpClient client(trusting());
  expect_tls_error(call(client, "http://127.0.0.1:" + std::to_string(front.port()) + "/"), "use https://");
}

TEST_F(Tls, MissingCaFileIsATlsError) {
  TlsFront front(backend_port(), good_cert());
  HttpClientOptions options;
  options.ca_file = pki.directory().string() + "/missing.pem";
  HttpClient client(options);
  expect_tls_error(call(client, front.origin() + "/"), "missing.pem");
}

TEST(TlsBytes, RecognisesAlertAndHandshakeRecords) {
  EXPECT_TRUE(looks_like_tls(std::string_view("\x15\x03\x03\x00\x02", 5)));
  EXPECT_TRUE(looks_like_tls(std::string_view("\x16\x03\x01\x02\x00", 5)));
  EXPECT_FALSE(looks_like_tls("HTTP/1.1 400 Bad Request"));
  EXPECT_FALSE(looks_like_tls(std::string_view("\x15\x03", 2)));
}

}  // namespace
}  // namespace rvenc::http
