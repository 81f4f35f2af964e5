// What `rvenc bench --tls` adds to the benchmark: the certificate both fronts serve (the gateway
// with --tls-cert/--tls-key, nginx with ssl_certificate), the one TLS 1.3 cipher suite both are
// pinned to, and the CPU a front spends on a new TLS connection with a full handshake.
//
// Design: the certificate comes from the local CA `rvenc up --tls` uses (http/local_ca.hpp), so the
// bench trusts what a user's stack would. The suite is pinned on the server side of both fronts
// through OpenSSL's own configuration commands: nginx with `ssl_conf_command Ciphersuites`, the
// gateway (whose TLS policy has no such flag) with an OPENSSL_CONF file whose system_default
// section sets the same `Ciphersuites` and `MinProtocol = TLSv1.3`. The handshake probe offers
// OpenSSL's default TLS 1.3 suites (AES-256-GCM first), so the suite each front picks shows whether
// its pin took. The probe makes each connection with a fresh client context holding no session,
// so every handshake is a full one (never resumed), and reads the front's CPU time from /proc to
// the nanosecond (process_cpu_seconds_precise) before and after N of them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "rvenc/common/error.hpp"

namespace rvenc::bench {

// The suite both fronts are pinned to in `rvenc bench --tls`.
inline constexpr std::string_view kPinnedTlsSuite = "TLS_AES_128_GCM_SHA256";

struct BenchTlsFiles {
  std::filesystem::path ca_file;       // what the load generator trusts
  std::filesystem::path cert_file;     // both fronts' certificate (localhost, 127.0.0.1)
  std::filesystem::path key_file;      // and its key
  std::filesystem::path openssl_conf;  // the gateway's OPENSSL_CONF (the pin)
};

// An OpenSSL configuration whose system_default section allows TLS 1.3 only with `suite`.
[[nodiscard]] std::string render_openssl_pin_config(std::string_view suite);

// The local CA, the server certificate and the pin configuration under `dir`.
// Errors: internal_error naming the file that could not be made.
[[nodiscard]] Result<BenchTlsFiles> prepare_bench_tls(const std::filesystem::path& dir, std::string_view suite);

struct HandshakeCost {
  unsigned handshakes = 0;      // completed, all full (none resumed)
  double server_cpu_us = 0;     // the front's CPU per connection: accept, full handshake, close
  double client_cpu_us = 0;     // the probe's own thread CPU per connection
  std::string protocol;         // what the front negotiated, e.g. "TLSv1.3"
  std::string cipher;           // e.g. "TLS_AES_128_GCM_SHA256"
};

// Opens `count` TLS connections to 127.0.0.1:`port` one after the other, each a full handshake
// verified against `ca_file` for 127.0.0.1, then closes it; measures `server_pid`'s CPU time over
// all of them. Errors: tls_error when a handshake fails (the message says why), internal_error
// when a session was resumed (the figure would not be a full handshake's) or the front's CPU time
// cannot be read.
[[nodiscard]] Result<HandshakeCost> measure_full_handshakes(std::uint16_t port, const std::string& ca_file,
                                                            unsigned count, int server_pid);

}  // namespace rvenc::bench
