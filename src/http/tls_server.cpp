// TlsServerContext and read_certificate_info (tls_server.hpp): OpenSSL through Boost.Asio's
// ssl::context, plus the X509 getters for the startup line.
#include "rvenc/http/tls_server.hpp"

#include "rvenc/http/tls.hpp"

#include <cstdio>
#include <memory>

#include <boost/asio/ssl/context.hpp>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace rvenc::http {
namespace ssl = boost::asio::ssl;

namespace {

// TLS 1.2 suites: ephemeral key exchange and AEAD only (TLS 1.3 suites are all of that already).
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
// Distinguishes this server's sessions in OpenSSL's cache (resumption).
constexpr unsigned char kSessionIdContext[] = "rvenc";

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};

// What a BIO holds, as text.
std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  return size > 0 ? std::string(data, static_cast<std::size_t>(size)) : std::string();
}

std::string name_text(const X509_NAME* name) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253);
  return bio_text(bio.get());
}

std::string time_text(const ASN1_TIME* time) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  ASN1_TIME_print(bio.get(), time);
  return bio_text(bio.get());
}

std::string serial_text(const ASN1_INTEGER* serial) {
  BIGNUM* number = ASN1_INTEGER_to_BN(serial, nullptr);
  if (number == nullptr) return {};
  char* hex = BN_bn2hex(number);
  std::string text = hex != nullptr ? hex : "";
  OPENSSL_free(hex);
  BN_free(number);
  return text;
}

// The shared server context (tls.hpp: TLS 1.2 minimum, chain and key checked), plus what only a
// long-running server needs: forward-secret AEAD suites for TLS 1.2 in the server's order, session
// resumption, and OpenSSL's buffers released while a connection is idle.
Result<std::shared_ptr<ssl::context>> build_context(const std::string& cert_file, const std::string& key_file) {
  auto context = make_server_tls_context(cert_file, key_file);
  if (!context) return std::unexpected(context.error());
  SSL_CTX* native = (*context)->native_handle();
  SSL_CTX_set_options(native, SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_cipher_list(native, kTls12Ciphers);
  SSL_CTX_set_session_id_context(native, kSessionIdContext, sizeof(kSessionIdContext) - 1);
  return *context;
}

}  // namespace

Result<CertificateInfo> read_certificate_info(const std::string& pem_file) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_file(pem_file.c_str(), "r"));
  if (!bio) {
    ERR_clear_error();
    return fail(Errc::invalid_request, "cannot read the certificate file " + pem_file);
  }
  std::unique_ptr<X509, X509Free> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    ERR_clear_error();
    return fail(Errc::invalid_request, pem_file + " holds no PEM certificate");
  }
  CertificateInfo info;
  info.subject = name_text(X509_get_subject_name(cert.get()));
  info.not_after = time_text(X509_get0_notAfter(cert.get()));
  info.serial = serial_text(X509_get0_serialNumber(cert.get()));
  info.expired = X509_cmp_current_time(X509_get0_notAfter(cert.get())) < 0;
  return info;
}

Result<std::shared_ptr<TlsServerContext>> TlsServerContext::load(std::string cert_file, std::string key_file) {
  std::shared_ptr<TlsServerContext> self(new TlsServerContext(std::move(cert_file), std::move(key_file)));
  if (auto loaded = self->reload(); !loaded) return std::unexpected(loaded.error());
  return self;
}

Status TlsServerContext::reload() {
  auto info = read_certificate_info(cert_file_);
  if (!info) return std::unexpected(info.error());
  auto context = build_context(cert_file_, key_file_);
  if (!context) return std::unexpected(context.error());
  std::lock_guard lock(mutex_);
  context_ = std::move(*context);
  info_ = std::move(*info);
  return {};
}

std::shared_ptr<ssl::context> TlsServerContext::current() const {
  std::lock_guard lock(mutex_);
  return context_;
}

CertificateInfo TlsServerContext::info() const {
  std::lock_guard lock(mutex_);
  return info_;
}

std::string TlsServerContext::describe() const {
  const CertificateInfo now = info();
  return "certificate " + now.subject + ", expires " + now.not_after + (now.expired ? " (EXPIRED)" : "") +
         ", serial " + now.serial;
}

}  // namespace rvenc::http
