// The server side of TLS for every rvenc listener (gateway, enclave): a certificate chain and key
// loaded from PEM files into an OpenSSL context (through Boost.Asio's ssl::context), reloadable
// while the server runs, and what its certificate says (subject, expiry, serial) for startup
// lines and logs.
//
// Design: a TlsServerContext owns the *current* ssl::context behind a mutex; every accepted
// connection takes a shared_ptr to the context current at accept time, so reload() (SIGHUP)
// swaps in a new certificate for new handshakes while open connections keep the one they shook
// hands with. A reload that fails (unreadable file, key not matching the certificate) changes
// nothing and says why. Policy is fixed, not configurable: TLS 1.2 minimum (1.3 preferred),
// forward-secret AEAD suites only for 1.2, no compression, no renegotiation, session tickets for
// resumption, buffers released while a connection is idle (memory per open stream).
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "rvenc/common/error.hpp"

namespace boost::asio::ssl {
class context;
}  // namespace boost::asio::ssl

namespace rvenc::http {

// What the leaf certificate of a chain file says.
struct CertificateInfo {
  std::string subject;    // RFC 2253, e.g. "CN=localhost,O=rvenc local test CA"
  std::string not_after;  // e.g. "Dec  6 03:00:00 2027 GMT"
  std::string serial;     // upper-case hex
  bool expired = false;   // notAfter is in the past (served anyway, with a warning)
};

// Reads the first certificate of a PEM file. Errors: invalid_request naming the file.
[[nodiscard]] Result<CertificateInfo> read_certificate_info(const std::string& pem_file);

class TlsServerContext {
 public:
  // Loads `cert_file` (PEM, leaf first, then the intermediates) and `key_file` (PEM private key).
  // Errors: tls_error (invalid_request for the certificate's own reading) naming the file and what OpenSSL said (missing, not PEM, key does not
  // match the certificate).
  [[nodiscard]] static Result<std::shared_ptr<TlsServerContext>> load(std::string cert_file, std::string key_file);

  // Re-reads both files; on success new handshakes use them, on failure the current pair stays.
  [[nodiscard]] Status reload();
  // The context for a new connection (kept by that connection for its whole life).
  [[nodiscard]] std::shared_ptr<boost::asio::ssl::context> current() const;
  [[nodiscard]] CertificateInfo info() const;
  [[nodiscard]] const std::string& cert_file() const { return cert_file_; }
  // "subject CN=..., expires ..., serial ..." for startup lines and logs.
  [[nodiscard]] std::string describe() const;

 private:
  TlsServerContext(std::string cert_file, std::string key_file) : cert_file_(std::move(cert_file)), key_file_(std::move(key_file)) {}

  std::string cert_file_;
  std::string key_file_;
  mutable std::mutex mutex_;
  std::shared_ptr<boost::asio::ssl::context> context_;
  CertificateInfo info_;
};

}  // namespace rvenc::http
