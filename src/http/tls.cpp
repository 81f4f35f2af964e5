// TLS contexts, client connection set-up and handshake failure messages (see tls.hpp).
#include "rvenc/http/tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <filesystem>

#include <boost/asio/error.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/error.hpp>

namespace rvenc::http {

namespace ssl = boost::asio::ssl;

namespace {

constexpr std::string_view kCaHint =
    "; for a private CA pass its PEM bundle with --ca-file (RVENC_CA_FILE) or ClientOptions::ca_file";

Status check_readable(const std::string& file, std::string_view what) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec))
    return fail(Errc::tls_error, std::string(what) + " '" + file + "' does not exist or is not a file");
  return {};
}

// The common hardening of both sides: TLS 1.2 or later, no compression, no renegotiation.
void restrict_protocol(TlsContext& context) {
  SSL_CTX* native = context.native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
}

std::string verify_failure(long verify_result) {
  switch (verify_result) {
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return "host-name mismatch: the server's certificate is not valid for this host name or address";
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return "the server's certificate has expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return "the server's certificate is not valid yet";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
      return "unknown issuer: the server's certificate is not signed by a trusted CA" + std::string(kCaHint);
    default:
      return std::string("certificate verification failed: ") + X509_verify_cert_error_string(verify_result);
  }
}

std::string openssl_failure(const boost::system::error_code& ec) {
  switch (ERR_GET_REASON(static_cast<unsigned long>(ec.value()))) {
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_RECORD_LENGTH_MISMATCH:
    case SSL_R_HTTP_REQUEST:
      return "not TLS: the server answered in plain text (an http:// server? use http:// or its TLS port)";
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_VERSION_TOO_LOW:
      return "protocol version: the server offers no TLS version rvenc accepts (TLS 1.2 or later)";
    default:
      return ec.message();
  }
}

}  // namespace

Result<std::shared_ptr<TlsContext>> make_client_tls_context(const std::string& ca_file) {
  auto context = std::make_shared<TlsContext>(TlsContext::tls_client);
  restrict_protocol(*context);
  context->set_verify_mode(ssl::verify_peer);
  boost::system::error_code ec;
  if (ca_file.empty()) {
    context->set_default_verify_paths(ec);
    if (ec) return fail(Errc::tls_error, "cannot load the system trust store: " + ec.message());
    return context;
  }
  if (auto readable = check_readable(ca_file, "CA file"); !readable) return std::unexpected(readable.error());
  context->load_verify_file(ca_file, ec);
  if (ec) return fail(Errc::tls_error, "cannot load the CA file '" + ca_file + "' (a PEM bundle): " + ec.message());
  return context;
}

Result<std::shared_ptr<TlsContext>> make_server_tls_context(const std::string& cert_chain_file,
                                                           const std::string& key_file) {
  auto context = std::make_shared<TlsContext>(TlsContext::tls_server);
  restrict_protocol(*context);
  if (auto readable = check_readable(cert_chain_file, "certificate file"); !readable)
    return std::unexpected(readable.error());
  if (auto readable = check_readable(key_file, "key file"); !readable) return std::unexpected(readable.error());
  boost::system::error_code ec;
  context->use_certificate_chain_file(cert_chain_file, ec);
  if (ec) return fail(Errc::tls_error, "cannot load the certificate chain '" + cert_chain_file + "': " + ec.message());
  context->use_private_key_file(key_file, TlsContext::pem, ec);
  if (ec) return fail(Errc::tls_error, "cannot load the private key '" + key_file + "': " + ec.message());
  if (SSL_CTX_check_private_key(context->native_handle()) != 1) {
    ERR_clear_error();
    return fail(Errc::tls_error,
                "the private key '" + key_file + "' does not match the certificate '" + cert_chain_file + "'");
  }
  return context;
}

Status prepare_client_tls(SSL* ssl, const std::string& host) {
  boost::system::error_code literal;
  (void)boost::asio::ip::make_address(host, literal);
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  bool ok = false;
  if (!literal) {
    ok = X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) == 1;  // no SNI for IP literals (RFC 6066)
  } else {
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    ok = SSL_set_tlsext_host_name(ssl, host.c_str()) == 1 && X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0) == 1;
  }
  if (!ok) {
    ERR_clear_error();
    return fail(Errc::tls_error, "cannot set TLS verification up for host '" + host + "'");
  }
  return {};
}

Error tls_handshake_error(const boost::system::error_code& ec, long verify_result, std::string_view where) {
  const std::string prefix = "TLS handshake with " + std::string(where) + " failed: ";
  if (verify_result != X509_V_OK) return Error{Errc::tls_error, prefix + verify_failure(verify_result)};
  if (ec == boost::beast::error::timeout || ec == boost::asio::error::timed_out) {
    return Error{Errc::tls_error, prefix + "no TLS answer within the connect timeout (not a TLS port?)"};
  }
  if (ec.category() == boost::asio::error::get_ssl_category())
    return Error{Errc::tls_error, prefix + openssl_failure(ec)};
  if (ec == ssl::error::stream_truncated || ec == boost::asio::error::eof ||
      ec == boost::asio::error::connection_reset) {
    return Error{Errc::tls_error,
                 prefix + "the server closed the connection during the handshake (not a TLS server, or it rejected "
                          "this client)"};
  }
  return Error{Errc::tls_error, prefix + ec.message()};
}

bool looks_like_tls(std::string_view bytes) noexcept {
  constexpr unsigned char kAlert = 0x15;
  constexpr unsigned char kHandshake = 0x16;
  constexpr unsigned char kMajor = 0x03;
  constexpr unsigned char kMaxMinor = 0x04;
  if (bytes.size() < 3) return false;
  const auto type = static_cast<unsigned char>(bytes[0]);
  return (type == kAlert || type == kHandshake) && static_cast<unsigned char>(bytes[1]) == kMajor &&
         static_cast<unsigned char>(bytes[2]) <= kMaxMinor;
}

}  // namespace rvenc::http
