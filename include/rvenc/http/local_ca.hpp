// A local test certificate authority for `rvenc up --tls` and the TLS tests: a CA certificate and
// key, and server certificates it signs for chosen host names and addresses (OpenSSL's X509 API;
// nothing here is hand-written cryptography).
//
// Design: files only, PEM, private keys written with mode 0600 and replaced by rename so a server
// reloading on SIGHUP never reads half a file. Keys are ECDSA P-256 (cheap handshakes), serials
// 128 random bits. ensure_local_tls() keeps a CA that is still valid across runs (so a client that
// trusts it once keeps trusting it) and issues a new server certificate when its own is missing,
// not from that CA or near its end. This is for local use and tests: a real deployment brings a
// certificate from a real CA through --tls-cert/--tls-key.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "rvenc/common/error.hpp"

namespace rvenc::http {

struct CertificateRequest {
  std::string common_name = "localhost";
  std::vector<std::string> dns_names = {"localhost"};      // subjectAltName DNS entries
  std::vector<std::string> ip_addresses = {"127.0.0.1"};   // subjectAltName IP entries
  // notBefore = now + not_before_offset (negative: in the past), notAfter = notBefore + valid_for.
  std::chrono::seconds not_before_offset{-60};
  std::chrono::seconds valid_for{std::chrono::hours(24 * 365)};
};

// A self-signed CA certificate (CN `name`) and its key. Errors: internal_error naming the file.
[[nodiscard]] Status make_local_ca(const std::filesystem::path& cert_file, const std::filesystem::path& key_file,
                                   const std::string& name, std::chrono::seconds valid_for);

// A server certificate for `request`, signed by the CA in ca_cert_file/ca_key_file, and its key.
[[nodiscard]] Status issue_server_certificate(const std::filesystem::path& ca_cert_file,
                                              const std::filesystem::path& ca_key_file,
                                              const std::filesystem::path& cert_file,
                                              const std::filesystem::path& key_file, const CertificateRequest& request);

struct LocalTlsFiles {
  std::filesystem::path ca_cert;  // what clients trust (--ca-file, curl --cacert)
  std::filesystem::path cert;     // the server's --tls-cert
  std::filesystem::path key;      // the server's --tls-key
  bool new_ca = false;            // the CA was made on this call
};

// The CA (ca.pem, ca.key) and a server certificate for localhost/127.0.0.1 (server.pem,
// server.key) in `dir` (created with mode 0700), made or reused as the Design paragraph says.
[[nodiscard]] Result<LocalTlsFiles> ensure_local_tls(const std::filesystem::path& dir);

}  // namespace rvenc::http
