// The https side of http::Server (issue 20): certificates from a CA made in the test
// (http/local_ca.hpp), a blocking Asio TLS client that verifies them, and raw sockets for clients
// that never say hello, speak plain HTTP to the TLS port, or stall mid-handshake. In the ASan
// subset with the rest of the http suite.
#include <csignal>
#include <fstream>

#include <boost/asio/connect.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "http_test_util.hpp"
#include "rvenc/http/local_ca.hpp"
#include "rvenc/http/tls_server.hpp"

namespace rvenc::http::test {
namespace {

namespace ssl = asio::ssl;
namespace bhttp = beast::http;

// A CA and a localhost/127.0.0.1 server certificate in a temporary directory.
struct TestPki {
  rvenc::test::TempDir dir;
  std::string ca = dir.file("ca.pem");
  std::string ca_key = dir.file("ca.key");
  std::string cert = dir.file("server.pem");
  std::string key = dir.file("server.key");

  explicit TestPki(const CertificateRequest& request = {}) {
    if (auto made = make_local_ca(ca, ca_key, "test CA", std::chrono::hours(24)); !made)
      throw std::runtime_error(made.error().to_string());
    reissue(request);
  }
  // A new server certificate (new key, new serial) over the same files.
  void reissue(const CertificateRequest& request = {}) {
    if (auto issued = issue_server_certificate(ca, ca_key, cert, key, request); !issued)
      throw std::runtime_error(issued.error().to_string());
  }
  [[nodiscard]] std::string serial() const { return read_certificate_info(cert).value().serial; }
  [[nodiscard]] ServerOptions options() const {
    ServerOptions options;
    options.tls = TlsServerContext::load(cert, key).value();
    return options;
  }
};

// A blocking TLS client that verifies the server against `ca_file` for `host` (SNI too).
class TlsClient {
 public:
  TlsClient(std::uint16_t port, const std::string& ca_file, const std::string& host = "localhost") {
    context_.load_verify_file(ca_file);
    // On the stream: its SSL object was made with the context's settings of that time.
    stream_.set_verify_mode(ssl::verify_peer);
    stream_.set_verify_callback(ssl::host_name_verification(host));
    SSL_set_tlsext_host_name(stream_.native_handle(), host.c_str());
    stream_.next_layer().connect({asio::ip::make_address("127.0.0.1"), port});
  }
  beast::error_code handshake() {
    beast::error_code ec;
    stream_.handshake(ssl::stream_base::client, ec);
    return ec;
  }
  // The serial of the certificate the server presented (upper-case hex).
  std::string peer_serial() {
    X509* peer = SSL_get1_peer_certificate(stream_.native_handle());
    if (peer == nullptr) return {};
    BIGNUM* number = ASN1_INTEGER_to_BN(X509_get0_serialNumber(peer), nullptr);
    char* hex = BN_bn2hex(number);
    std::string serial = hex;
    OPENSSL_free(hex);
    BN_free(number);
    X509_free(peer);
    return serial;
  }
  void send_get(const std::string& target) {
    bhttp::request<bhttp::empty_body> request{bhttp::verb::get, target, kHttp11};
    request.set(bhttp::field::host, "localhost");
    bhttp::write(stream_, request);
  }
  Response get(const std::string& target) {
    send_get(target);
    Response response;
    bhttp::read(stream_, buffer_, response);
    return response;
  }
  // Reads a streamed response until its body contains `text`; the parser keeps the rest.
  void read_until(bhttp::response_parser<bhttp::string_body>& parser, const std::string& text) {
    if (!parser.is_header_done()) bhttp::read_header(stream_, buffer_, parser);
    while (parser.get().body().find(text) == std::string::npos && !parser.is_done())
      bhttp::read_some(stream_, buffer_, parser);
  }
  void read_rest(bhttp::response_parser<bhttp::string_body>& parser) { bhttp::read(stream_, buffer_, parser); }
  // Drops the connection without a TLS close_notify: a FIN, then (unread bytes pending) a reset, so
  // the server's next send fails with EPIPE, the error that raises SIGPIPE unless MSG_NOSIGNAL.
  void drop() {
    beast::error_code ignored;
    stream_.next_layer().shutdown(asio::socket_base::shutdown_send, ignored);
    stream_.next_layer().close(ignored);
  }

 private:
  asio::io_context io_;
  ssl::context context_{ssl::context::tls_client};
  ssl::stream<asio::ip::tcp::socket> stream_{io_, context_};
  beast::flat_buffer buffer_;
};

// A real server on 127.0.0.1 (HttpsServer parses its URL, which an https:// one need not be).
struct HttpsServer {
  std::unique_ptr<Server> server;
  std::uint16_t port = 0;

  HttpsServer(Handler handler, ServerOptions options) {
    options.host = "127.0.0.1";
    options.port = 0;
    server = Server::create(std::move(options), std::move(handler)).value();
    port = server->port();
    server->start();
  }
  ~HttpsServer() {
    server->stop(std::chrono::milliseconds(0));
    server->wait();
  }
};

// Streams "first", waits for `gate`, then streams "second" and ends.
Handler gated_stream(Gate& gate) {
  return [&gate](Request&, ResponseWriter& writer) -> awaitable<void> {
    co_await writer.begin_stream(event_stream_header());
    co_await writer.write("first\n");
    co_await gate.wait();
    co_await writer.write("second\n");
    co_await writer.end_stream();
  };
}

TEST(TlsServer, ServesHttpsVerifiedAgainstTheTestCa) {
  TestPki pki;
  HttpsServer server(text_handler("hello over tls"), pki.options());
  EXPECT_EQ(server.server->url(), "https://127.0.0.1:" + std::to_string(server.port));
  TlsClient client(server.port, pki.ca);
  ASSERT_FALSE(client.handshake());
  EXPECT_EQ(client.peer_serial(), pki.serial());
  const Response first = client.get("/x");
  EXPECT_EQ(first.result_int(), 200);
  EXPECT_EQ(first.body(), "hello over tls");
  // Keep-alive inside TLS: a second request on the same connection.
  EXPECT_EQ(client.get("/y").body(), "hello over tls");
  EXPECT_EQ(server.server->failed_tls_handshakes(), 0u);
}

TEST(TlsServer, StreamsChunksOverTls) {
  TestPki pki;
  Gate gate;
  gate.open();
  HttpsServer server(gated_stream(gate), pki.options());
  TlsClient client(server.port, pki.ca);
  ASSERT_FALSE(client.handshake());
  client.send_get("/stream");
  bhttp::response_parser<bhttp::string_body> parser;
  client.read_rest(parser);
  EXPECT_EQ(parser.get().body(), "first\nsecond\n");
}

// OpenSSL writes to the socket itself (transport.hpp): a write to a connection the client dropped
// must fail as an error, never raise SIGPIPE (which would end this process, as it would the gateway).
TEST(TlsServer, AClientGoneMidStreamEndsOnlyItsStream) {
  TestPki pki;
  HttpsServer server(
      [](Request&, ResponseWriter& writer) -> awaitable<void> {
        co_await writer.begin_stream(event_stream_header());
        const std::string chunk(1024, 'x');
        for (int i = 0; i < 1'000'000 && co_await writer.write(chunk); ++i) {
        }
        co_await writer.end_stream();
      },
      pki.options());
  // Two clients one after the other: each reads part of the stream, then drops the connection.
  for (int client_number = 0; client_number < 2; ++client_number) {
    TlsClient client(server.port, pki.ca);
    ASSERT_FALSE(client.handshake()) << "client " << client_number;
    client.send_get("/stream");
    bhttp::response_parser<bhttp::string_body> parser;
    client.read_until(parser, "xxxx");
    EXPECT_EQ(parser.get().result_int(), 200);
    client.drop();
  }
}

TEST(TlsServer, PlainHttpToTheTlsPortIsToldSoAndTheServerKeepsServing) {
  TestPki pki;
  HttpsServer server(text_handler("ok"), pki.options());
  {
    RawConnection plain(server.port);
    plain.send("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
    const auto response = plain.read_response();
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->result_int(), 400);
    EXPECT_NE(response->body().find("https"), std::string::npos) << response->body();
    EXPECT_TRUE(plain.wait_closed());
  }
  TlsClient client(server.port, pki.ca);
  ASSERT_FALSE(client.handshake());
  EXPECT_EQ(client.get("/").body(), "ok");
  EXPECT_EQ(server.server->failed_tls_handshakes(), 1u);
}

TEST(TlsServer, SilentAndStalledClientsAreClosedByTheHandshakeTimeout) {
  TestPki pki;
  ServerOptions options = pki.options();
  // Only the handshake timeout can close these connections within the raw client's guard.
  options.first_byte_timeout = std::chrono::minutes(5);
  options.tls_handshake_timeout = std::chrono::milliseconds(300);
  HttpsServer server(text_handler("ok"), options);
  RawConnection silent(server.port);
  RawConnection stalled(server.port);
  stalled.send(std::string("\x16\x03\x01\x00\x80", 5));  // a ClientHello record that never comes
  EXPECT_TRUE(silent.wait_closed());
  EXPECT_TRUE(stalled.wait_closed());
  // Counted once each session's coroutine has seen its socket closed, just after the client did.
  for (int i = 0; i < 400 && server.server->failed_tls_handshakes() < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(server.server->failed_tls_handshakes(), 2u);
  TlsClient client(server.port, pki.ca);
  ASSERT_FALSE(client.handshake());
  EXPECT_EQ(client.get("/").body(), "ok");
}

TEST(TlsServer, ReloadServesTheNewCertificateToNewHandshakesWithoutCuttingOpenStreams) {
  TestPki pki;
  const std::string old_serial = pki.serial();
  Gate gate;
  HttpsServer server(gated_stream(gate), pki.options());
  TlsClient open_stream(server.port, pki.ca);
  ASSERT_FALSE(open_stream.handshake());
  open_stream.send_get("/stream");
  bhttp::response_parser<bhttp::string_body> parser;
  open_stream.read_until(parser, "first\n");

  pki.reissue();
  ASSERT_NE(pki.serial(), old_serial);
  ASSERT_TRUE(server.server->reload_tls());
  TlsClient fresh(server.port, pki.ca);
  ASSERT_FALSE(fresh.handshake());
  EXPECT_EQ(fresh.peer_serial(), pki.serial());

  gate.open();
  open_stream.read_rest(parser);
  EXPECT_EQ(parser.get().body(), "first\nsecond\n");
  EXPECT_EQ(open_stream.peer_serial(), old_serial);
}

TEST(TlsServer, AFailedReloadKeepsTheCurrentCertificate) {
  TestPki pki;
  HttpsServer server(text_handler("ok"), pki.options());
  const std::string serial = pki.serial();
  std::ofstream(pki.key, std::ios::trunc) << "not a key\n";
  const auto reloaded = server.server->reload_tls();
  ASSERT_FALSE(reloaded);
  EXPECT_NE(reloaded.error().message.find(pki.key), std::string::npos) << reloaded.error().message;
  TlsClient client(server.port, pki.ca);
  ASSERT_FALSE(client.handshake());
  EXPECT_EQ(client.peer_serial(), serial);
  EXPECT_EQ(client.get("/").body(), "ok");
}

TEST(TlsServer, SighupReloadsTheCertificate) {
  TestPki pki;
  HttpsServer server(text_handler("ok"), pki.options());
  pki.reissue();
  const std::string serial = pki.serial();
  ASSERT_EQ(::kill(::getpid(), SIGHUP), 0);
  // The signal is handled on the server's thread: new handshakes see the new serial soon after.
  std::string seen;
  for (int attempt = 0; attempt < 200 && seen != serial; ++attempt) {
    TlsClient client(server.port, pki.ca);
    ASSERT_FALSE(client.handshake());
    seen = client.peer_serial();
    if (seen != serial) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(seen, serial);
}

// The error code of an OpenAI error JSON answer.
std::string error_code(const Response& response) {
  const auto at = response.body().find("\"code\":\"");
  if (at == std::string::npos) return {};
  const auto start = at + 8;
  return response.body().substr(start, response.body().find('"', start) - start);
}

TEST(TlsServer, ConnectionsBeyondTheCapGet503InsideTls) {
  TestPki pki;
  ServerOptions options = pki.options();
  options.max_connections = 1;
  HttpsServer server(text_handler("ok"), options);
  TlsClient holder(server.port, pki.ca);
  ASSERT_FALSE(holder.handshake());
  ASSERT_EQ(holder.get("/").body(), "ok");  // the one connection the cap allows is now a session
  TlsClient over(server.port, pki.ca);
  ASSERT_FALSE(over.handshake());  // was: closed at accept, a failed handshake without a word
  const Response refused = over.get("/");
  EXPECT_EQ(refused.result_int(), 503);
  EXPECT_EQ(error_code(refused), "overloaded") << refused.body();
  EXPECT_EQ(refused[bhttp::field::retry_after], "1");
  EXPECT_FALSE(refused.keep_alive());
  EXPECT_EQ(holder.get("/").body(), "ok");  // the session inside the cap is still served
}

TEST(TlsServer, ConnectionsBeyondThePerAddressCapGet429InsideTls) {
  TestPki pki;
  ServerOptions options = pki.options();
  options.max_connections_per_ip = 1;
  options.per_ip_cap_loopback = true;
  HttpsServer server(text_handler("ok"), options);
  TlsClient holder(server.port, pki.ca);
  ASSERT_FALSE(holder.handshake());
  ASSERT_EQ(holder.get("/").body(), "ok");
  TlsClient over(server.port, pki.ca);
  ASSERT_FALSE(over.handshake());
  const Response refused = over.get("/");
  EXPECT_EQ(refused.result_int(), 429);
  EXPECT_EQ(error_code(refused), "rate_limit_exceeded") << refused.body();
}

TEST(TlsServer, ClientsRefuseExpiredAndWrongHostCertificates) {
  TestPki expired(CertificateRequest{.not_before_offset = -std::chrono::hours(48), .valid_for = std::chrono::hours(24)});
  EXPECT_TRUE(read_certificate_info(expired.cert).value().expired);
  HttpsServer expired_server(text_handler("ok"), expired.options());
  TlsClient to_expired(expired_server.port, expired.ca);
  const auto expired_ec = to_expired.handshake();
  ASSERT_TRUE(expired_ec);
  EXPECT_NE(expired_ec.message().find("certificate verify failed"), std::string::npos) << expired_ec.message();

  TestPki other(CertificateRequest{.common_name = "other.example", .dns_names = {"other.example"}, .ip_addresses = {}});
  HttpsServer other_server(text_handler("ok"), other.options());
  TlsClient to_other(other_server.port, other.ca, "localhost");
  EXPECT_TRUE(to_other.handshake());
  // A server that serves no TLS at all keeps its plain behaviour.
  HttpsServer plain(text_handler("ok"), ServerOptions{});
  EXPECT_EQ(plain.server->url(), "http://127.0.0.1:" + std::to_string(plain.port));
}

TEST(TlsServer, LoadNamesTheFileThatIsWrong) {
  TestPki pki;
  TestPki other;
  const auto missing = TlsServerContext::load(pki.dir.file("nope.pem"), pki.key);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("nope.pem"), std::string::npos) << missing.error().message;
  const auto mismatched = TlsServerContext::load(pki.cert, other.key);
  ASSERT_FALSE(mismatched);
  EXPECT_NE(mismatched.error().message.find("mismatch"), std::string::npos) << mismatched.error().message;
  EXPECT_NE(mismatched.error().message.find(other.key), std::string::npos) << mismatched.error().message;
}

TEST(TlsServer, LocalCaIsReusedAcrossRuns) {
  rvenc::test::TempDir dir;
  const auto first = ensure_local_tls(dir.path() / "tls");
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_TRUE(first->new_ca);
  const std::string ca_serial = read_certificate_info(first->ca_cert.string()).value().serial;
  const std::string server_serial = read_certificate_info(first->cert.string()).value().serial;
  const auto second = ensure_local_tls(dir.path() / "tls");
  ASSERT_TRUE(second);
  EXPECT_FALSE(second->new_ca);
  EXPECT_EQ(read_certificate_info(second->ca_cert.string()).value().serial, ca_serial);
  EXPECT_EQ(read_certificate_info(second->cert.string()).value().serial, server_serial);
  EXPECT_EQ(std::filesystem::status(second->key).permissions() & std::filesystem::perms::group_all,
            std::filesystem::perms::none);
  ServerOptions options;
  options.tls = TlsServerContext::load(second->cert.string(), second->key.string()).value();
  HttpsServer server(text_handler("ok"), options);
  TlsClient client(server.port, second->ca_cert.string(), "127.0.0.1");
  EXPECT_FALSE(client.handshake());
}

}  // namespace
}  // namespace rvenc::http::test
