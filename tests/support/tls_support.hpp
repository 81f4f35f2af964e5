// TLS test parts: a test PKI in a temporary directory (a CA, and leaf certificates for chosen
// subject alternative names, valid or expired), made by http::local_ca, the same code that makes
// the CA of `rvenc up --tls` (one PKI for the product and every test), and TlsFront, an
// in-process TLS terminator (Asio ssl::stream) that relays each connection to a plain port on
// 127.0.0.1, so any plain test server (HTTP, fake engine, rvenc-mux) can be reached over https.
//
// Design: the PKI is real X.509 (local_ca: EC P-256, SHA-256, CA basicConstraints, SAN extension,
// random serials), so the client's verification runs exactly as against a public CA. TlsFront runs on its own thread,
// uses rvenc::http::make_server_tls_context (the production server context) and counts
// handshakes and resumed sessions. A client that does not start with a TLS handshake record
// (a plain http:// client) gets a TLS alert back and the connection closes, as a TLS server
// that answers such clients does.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.hpp"

namespace rvenc::test {

struct TestCertificate {
  std::string cert_file;  // PEM: the leaf, then the issuing CA
  std::string key_file;   // PEM private key
};

class TestPki {
 public:
  // Makes a CA named `name` in a new temporary directory (removed with the object).
  explicit TestPki(const std::string& name = "rvenc test CA");
  ~TestPki();
  TestPki(const TestPki&) = delete;
  TestPki& operator=(const TestPki&) = delete;

  [[nodiscard]] const std::string& ca_file() const { return ca_file_; }
  [[nodiscard]] const std::filesystem::path& directory() const { return directory_.path(); }
  // A leaf certificate signed by this CA for `sans` ("IP:127.0.0.1", "DNS:localhost"); expired an
  // hour ago when `expired`. Throws on failure.
  [[nodiscard]] TestCertificate issue(const std::string& name, const std::vector<std::string>& sans,
                                      bool expired = false);

  struct Impl;

 private:
  TempDir directory_;
  std::string ca_file_;
  std::unique_ptr<Impl> impl_;
};

class TlsFront {
 public:
  // Listens on 127.0.0.1 (a free port) with `certificate`, relaying to 127.0.0.1:backend_port.
  // `max_version` (an OpenSSL TLS1_x_VERSION, 0 = any) caps what the front offers.
  TlsFront(std::uint16_t backend_port, const TestCertificate& certificate, int max_version = 0);
  ~TlsFront();
  TlsFront(const TlsFront&) = delete;
  TlsFront& operator=(const TlsFront&) = delete;

  [[nodiscard]] std::uint16_t port() const;
  // "https://127.0.0.1:PORT".
  [[nodiscard]] std::string origin() const;
  [[nodiscard]] std::size_t handshakes() const;  // completed
  [[nodiscard]] std::size_t resumed() const;     // completed with a resumed session

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
  std::thread thread_;
};

}  // namespace rvenc::test
