// Test PKI (on http::local_ca) and the in-process TLS terminator TlsFront (see tls_support.hpp).
#include "support/tls_support.hpp"

#include <openssl/ssl.h>

#include <array>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "rvenc/http/local_ca.hpp"
#include "rvenc/http/tls.hpp"

namespace rvenc::test {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::chrono::hours kCaValidity{24};
constexpr std::chrono::hours kLeafValidity{24};

void check(const Status& status, const char* what) {
  if (!status) throw std::runtime_error(std::string("test PKI: ") + what + ": " + status.error().to_string());
}

// The request for a leaf named `name` with `sans` ("IP:..." or "DNS:...").
http::CertificateRequest leaf_request(const std::string& name, const std::vector<std::string>& sans, bool expired) {
  http::CertificateRequest request;
  request.common_name = name;
  request.dns_names.clear();
  request.ip_addresses.clear();
  for (const auto& entry : sans) {
    if (entry.starts_with("IP:")) request.ip_addresses.push_back(entry.substr(3));
    else if (entry.starts_with("DNS:")) request.dns_names.push_back(entry.substr(4));
    else throw std::runtime_error("test PKI: a SAN is IP:... or DNS:..., not " + entry);
  }
  if (expired) {  // valid from a day ago until an hour ago
    request.not_before_offset = -std::chrono::hours(24);
    request.valid_for = std::chrono::hours(23);
  } else {
    request.not_before_offset = -std::chrono::hours(1);
    request.valid_for = kLeafValidity;
  }
  return request;
}

std::string read_all(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

// The PKI is http::local_ca's (what `rvenc up --tls` makes), so the tests trust what users get.
struct TestPki::Impl {
  std::string ca_key_file;
};

TestPki::TestPki(const std::string& name) : impl_(std::make_unique<Impl>()) {
  ca_file_ = directory_.file("ca.pem");
  impl_->ca_key_file = directory_.file("ca.key");
  check(http::make_local_ca(ca_file_, impl_->ca_key_file, name, kCaValidity), "making the CA");
}

TestPki::~TestPki() = default;

TestCertificate TestPki::issue(const std::string& name, const std::vector<std::string>& sans, bool expired) {
  TestCertificate out{directory_.file(name + ".pem"), directory_.file(name + ".key")};
  check(http::issue_server_certificate(ca_file_, impl_->ca_key_file, out.cert_file, out.key_file,
                                       leaf_request(name, sans, expired)),
        "issuing a leaf");
  // The chain a server presents: the leaf, then the issuing CA.
  std::ofstream(out.cert_file, std::ios::app | std::ios::binary) << read_all(ca_file_);
  return out;
}

// ---- TlsFront ----

struct TlsFront::Impl {
  asio::io_context context;
  tcp::acceptor acceptor{context};
  std::shared_ptr<http::TlsContext> tls;
  std::uint16_t backend_port = 0;
  std::atomic<std::size_t> handshakes{0};
  std::atomic<std::size_t> resumed{0};

  template <class From, class To>
  static asio::awaitable<void> pump(From& from, To& to) {
    std::array<char, 16 * 1024> bytes{};
    for (;;) {
      auto [read_ec, n] = co_await from.async_read_some(asio::buffer(bytes), kTuple);
      if (n > 0) {
        auto [write_ec, written] = co_await asio::async_write(to, asio::buffer(bytes.data(), n), kTuple);
        if (write_ec) break;
      }
      if (read_ec) break;
    }
    boost::system::error_code ignored;
    from.lowest_layer().close(ignored);
    to.lowest_layer().close(ignored);
  }

  // A plain client (its first byte is not a TLS handshake record) gets a fatal
  // unexpected_message alert, as TLS servers that answer such clients send.
  static asio::awaitable<bool> reject_plain(tcp::socket& socket) {
    constexpr unsigned char kHandshakeRecord = 0x16;
    std::array<unsigned char, 1> first{};
    auto [ec, n] = co_await socket.async_receive(asio::buffer(first), tcp::socket::message_peek, kTuple);
    if (ec || n == 0) co_return true;
    if (first[0] == kHandshakeRecord) co_return false;
    static constexpr std::array<unsigned char, 7> kAlert{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x0a};
    co_await asio::async_write(socket, asio::buffer(kAlert), kTuple);
    co_return true;
  }

  asio::awaitable<void> serve(tcp::socket socket) {
    if (co_await reject_plain(socket)) co_return;
    auto stream = std::make_shared<asio::ssl::stream<tcp::socket>>(std::move(socket), *tls);
    auto [ec] = co_await stream->async_handshake(asio::ssl::stream_base::server, kTuple);
    if (ec) co_return;
    ++handshakes;
    if (SSL_session_reused(stream->native_handle()) == 1) ++resumed;
    auto backend = std::make_shared<tcp::socket>(context);
    auto [connect_ec] = co_await backend->async_connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), backend_port), kTuple);
    if (connect_ec) co_return;
    asio::co_spawn(context, [stream, backend]() -> asio::awaitable<void> { co_await pump(*backend, *stream); },
                   asio::detached);
    co_await pump(*stream, *backend);
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(kTuple);
      if (ec) co_return;
      asio::co_spawn(context, serve(std::move(socket)), asio::detached);
    }
  }
};

TlsFront::TlsFront(std::uint16_t backend_port, const TestCertificate& certificate, int max_version)
    : impl_(std::make_shared<Impl>()) {
  auto tls = http::make_server_tls_context(certificate.cert_file, certificate.key_file);
  if (!tls) throw std::runtime_error(tls.error().to_string());
  impl_->tls = std::move(*tls);
  if (max_version != 0) SSL_CTX_set_max_proto_version(impl_->tls->native_handle(), max_version);
  impl_->backend_port = backend_port;
  const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
  impl_->acceptor.open(endpoint.protocol());
  impl_->acceptor.bind(endpoint);
  impl_->acceptor.listen();
  asio::co_spawn(impl_->context, impl_->accept_loop(), asio::detached);
  thread_ = std::thread([impl = impl_] { impl->context.run(); });
}

TlsFront::~TlsFront() {
  impl_->context.stop();
  thread_.join();
}

std::uint16_t TlsFront::port() const { return impl_->acceptor.local_endpoint().port(); }
std::string TlsFront::origin() const { return "https://127.0.0.1:" + std::to_string(port()); }
std::size_t TlsFront::handshakes() const { return impl_->handshakes.load(); }
std::size_t TlsFront::resumed() const { return impl_->resumed.load(); }

}  // namespace rvenc::test
