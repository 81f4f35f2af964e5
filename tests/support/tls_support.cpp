// Test PKI (OpenSSL API) and the in-process TLS terminator TlsFront (see tls_support.hpp).
#include "support/tls_support.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <array>
#include <cstdio>
#include <stdexcept>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "rvenc/http/tls.hpp"

namespace rvenc::test {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

constexpr long kDaySeconds = 24L * 3600;
constexpr long kHourSeconds = 3600;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

struct KeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct CertFree {
  void operator()(X509* cert) const { X509_free(cert); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyFree>;
using CertPtr = std::unique_ptr<X509, CertFree>;

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("test PKI: ") + what + " failed");
}

KeyPtr new_key() {
  KeyPtr key(EVP_EC_gen("P-256"));
  check(key != nullptr, "EC key generation");
  return key;
}

void add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &context, nid, value.c_str());
  check(extension != nullptr, "certificate extension");
  X509_add_ext(cert, extension, -1);
  X509_EXTENSION_free(extension);
}

// An unsigned certificate for `key` named `name`, issued by `issuer` (itself when null).
CertPtr make_cert(const std::string& name, EVP_PKEY* key, X509* issuer, long not_before,
                  long not_after, long serial) {
  CertPtr cert(X509_new());
  check(cert != nullptr, "X509_new");
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), not_before);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), not_after);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* subject = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(name.c_str()), -1,
                             -1, 0);
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : subject);
  return cert;
}

void write_pem(const std::string& file, X509* first, X509* second, EVP_PKEY* key) {
  FILE* out = std::fopen(file.c_str(), "w");
  check(out != nullptr, "opening a PEM file");
  bool ok = true;
  if (first) ok = ok && PEM_write_X509(out, first) == 1;
  if (second) ok = ok && PEM_write_X509(out, second) == 1;
  if (key) ok = ok && PEM_write_PrivateKey(out, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  std::fclose(out);
  check(ok, "writing a PEM file");
}

}  // namespace

struct TestPki::Impl {
  KeyPtr key;
  CertPtr cert;
  long serial = 1;
};

TestPki::TestPki(const std::string& name) : impl_(std::make_unique<Impl>()) {
  impl_->key = new_key();
  impl_->cert = make_cert(name, impl_->key.get(), nullptr, -kDaySeconds, kDaySeconds, impl_->serial++);
  add_extension(impl_->cert.get(), impl_->cert.get(), NID_basic_constraints, "critical,CA:TRUE");
  add_extension(impl_->cert.get(), impl_->cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  add_extension(impl_->cert.get(), impl_->cert.get(), NID_subject_key_identifier, "hash");
  check(X509_sign(impl_->cert.get(), impl_->key.get(), EVP_sha256()) > 0, "signing the CA");
  ca_file_ = directory_.file("ca.pem");
  write_pem(ca_file_, impl_->cert.get(), nullptr, nullptr);
}

TestPki::~TestPki() = default;

TestCertificate TestPki::issue(const std::string& name, const std::vector<std::string>& sans, bool expired) {
  KeyPtr key = new_key();
  const long not_before = expired ? -kDaySeconds : -kHourSeconds;
  const long not_after = expired ? -kHourSeconds : kDaySeconds;
  CertPtr cert = make_cert(name, key.get(), impl_->cert.get(), not_before, not_after,
                           impl_->serial++);
  std::string san;
  for (const auto& entry : sans) san += (san.empty() ? "" : ",") + entry;
  add_extension(cert.get(), impl_->cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  add_extension(cert.get(), impl_->cert.get(), NID_ext_key_usage, "serverAuth");
  if (!san.empty()) add_extension(cert.get(), impl_->cert.get(), NID_subject_alt_name, san);
  add_extension(cert.get(), impl_->cert.get(), NID_authority_key_identifier, "keyid:always");
  check(X509_sign(cert.get(), impl_->key.get(), EVP_sha256()) > 0, "signing a leaf");
  TestCertificate out{directory_.file(name + ".pem"), directory_.file(name + ".key")};
  write_pem(out.cert_file, cert.get(), impl_->cert.get(), nullptr);
  write_pem(out.key_file, nullptr, nullptr, key.get());
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
