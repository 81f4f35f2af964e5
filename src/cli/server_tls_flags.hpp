// --tls-cert / --tls-key / --tls-handshake-timeout-ms, shared by `rvenc gateway` and `rvenc enclave`
// (environment RVENC_TLS_CERT, RVENC_TLS_KEY, RVENC_TLS_HANDSHAKE_TIMEOUT_MS).
//
// Design: the flags only name files; http::TlsServerContext loads them (and reloads them on SIGHUP
// inside http::Server), so both commands get the same checks and the same startup line.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "command.hpp"
#include "rvenc/common/error.hpp"
#include "rvenc/http/server.hpp"
#include "rvenc/http/tls_server.hpp"

namespace rvenc::cli {

struct ServerTlsFlags {
  std::string cert;
  std::string key;
  long long handshake_timeout_ms = http::ServerOptions::kDefaultTlsHandshakeTimeout.count();
};

inline void add_server_tls_flags(CLI::App& cmd, ServerTlsFlags& flags) {
  option(cmd, "--tls-cert", flags.cert,
         "PEM certificate chain (leaf first) to serve https with; needs --tls-key; SIGHUP reloads both");
  option(cmd, "--tls-key", flags.key, "PEM private key of --tls-cert (keep it mode 0600)");
  option(cmd, "--tls-handshake-timeout-ms", flags.handshake_timeout_ms,
         "With --tls-cert: a client must finish the TLS handshake this long after connecting (then it is closed)")
      ->capture_default_str();
}

// The TLS context the flags ask for: null without --tls-cert/--tls-key; invalid_request when only
// one is given, the timeout is not positive, or the files do not load.
[[nodiscard]] inline Result<std::shared_ptr<http::TlsServerContext>> load_server_tls(const ServerTlsFlags& flags) {
  if (flags.cert.empty() && flags.key.empty()) return std::shared_ptr<http::TlsServerContext>();
  if (flags.cert.empty() || flags.key.empty())
    return fail(Errc::invalid_request, "--tls-cert and --tls-key go together (give both, or neither for plain http)");
  if (flags.handshake_timeout_ms <= 0) return fail(Errc::invalid_request, "--tls-handshake-timeout-ms must be positive");
  return http::TlsServerContext::load(flags.cert, flags.key);
}

// Sets options.tls and options.tls_handshake_timeout (gateway or enclave options) from the flags.
template <class Options>
[[nodiscard]] Status apply_server_tls(const ServerTlsFlags& flags, Options& options) {
  auto tls = load_server_tls(flags);
  if (!tls) return std::unexpected(tls.error());
  options.tls = std::move(*tls);
  options.tls_handshake_timeout = std::chrono::milliseconds(flags.handshake_timeout_ms);
  return {};
}

// "https: certificate CN=..., expires ..., serial ..." for the startup line ("" without TLS).
[[nodiscard]] inline std::string describe_server_tls(const std::shared_ptr<http::TlsServerContext>& tls) {
  if (!tls) return {};
  std::string line = "https: " + tls->describe() + " (SIGHUP reloads " + tls->cert_file() + ")\n";
  if (tls->info().expired) line += "warning: the TLS certificate has expired: clients will refuse it\n";
  return line;
}

}  // namespace rvenc::cli
