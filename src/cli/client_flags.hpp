// The flags `rvenc chat`, `rvenc keygen` and `rvenc attest` share (shared/CLI.md "Client side"),
// and the exit code each client error maps to.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "command.hpp"
#include "rvenc/client/settings.hpp"
#include "rvenc/client/terminal.hpp"

namespace rvenc::cli {

// The gateway flag of every client command and the proxy: CLI.md names its variable RVENC_GATEWAY_URL.
inline CLI::Option* add_gateway_flag(CLI::App& app, std::string& gateway) {
  return option(app, "--gateway", gateway,
                "Gateway URL (default: DIR/stack.json's, else http://127.0.0.1:8400); RVENC_GATEWAY is a "
                "deprecated alias")
      ->envname("RVENC_GATEWAY_URL");
}

// --attestation-policy FILE (RVENC_ATTESTATION_POLICY) and --attestation-trust-root FILE (flag
// only: roots other than the vendors' must never come from an environment left behind).
inline void add_attestation_flags(CLI::App& app, std::string& policy, std::string& trust_root) {
  option(app, "--attestation-policy", policy,
         "Policy JSON for hardware (tdx, sev-snp) evidence: providers, measurements, debug, TCB "
         "(docs/attestation.md; default: any measurement, debug refused, TDX TCB UpToDate)");
  app.add_option("--attestation-trust-root", trust_root,
                 "PEM root(s) hardware evidence must chain to INSTEAD of Intel's/AMD's pinned roots: test roots "
                 "only, announced on stderr (no environment variable)");
}

// The loud line of a test root: never silent.
inline void warn_trust_root(std::string_view command, const std::string& trust_root) {
  if (!trust_root.empty())
    std::cerr << "rvenc " << command << ": WARNING: trusting the test root(s) of " << trust_root
              << " instead of the vendors' pinned roots\n";
}

inline constexpr const char* kAllowBindingV1Help =
    "Also trust enclaves of older releases whose attestation binding (1) does not cover notAfter (a host can "
    "then extend a key's life); by default binding 2 is required";

inline constexpr const char* kShapingHelp =
    "Ask the enclave to shape the answer's stream against traffic analysis (docs/traffic-shaping.md): off, pad "
    "(fixed-size records) or cadence (one record every interval, fillers, length buckets); default: the enclave's "
    "--shaping";

inline void add_client_flags(CLI::App& app, client::ClientSettings& settings, bool with_api_key) {
  add_gateway_flag(app, settings.gateway);
  if (with_api_key) option(app, "--api-key", settings.api_key, "API key (sk_live_... or sk_test_...)");
  option(app, "--ca-file", settings.ca_file,
         "PEM bundle (private CA) that verifies an https:// gateway instead of the system trust store "
         "(default: DIR/stack.json's caFile for its gateway)");
  option(app, "--platform-public-key", settings.platform_public_key,
         "Trust the \"simulated\" attestation provider signed by this Ed25519 key (hex)");
  option(app, "--measurement", settings.measurement, "Require this enclave measurement (hex)");
  flag(app, "--allow-binding-v1", settings.allow_binding_v1, kAllowBindingV1Help);
  option(app, "--data", settings.data_dir,
         "Take each setting not given by flag or variable from DIR/stack.json (default ./.rvenc); its API "
         "and platform key only with its gateway; exit 3 when that stack is not running");
  option(app, "--protocol", settings.protocol, "Wire protocol version: 3 (default), 2 (upgrade period) or 1 (compat, unsafe)")
      ->check(CLI::IsMember({1, 2, 3}));
  option(app, "--shaping", settings.shaping, kShapingHelp)->check(CLI::IsMember({"off", "pad", "cadence"}));
  add_attestation_flags(app, settings.attestation_policy, settings.attestation_trust_root);
}

// Notes where CLI11 took --gateway and --data from (it merges a flag and its variable), and reads
// RVENC_GATEWAY, the old name of RVENC_GATEWAY_URL, with a warning.
inline void note_setting_origins(client::ClientSettings& settings, std::string_view command) {
  const char* gateway_env = std::getenv("RVENC_GATEWAY_URL");
  const char* old_gateway_env = std::getenv("RVENC_GATEWAY");
  if (settings.gateway.empty() && old_gateway_env != nullptr && *old_gateway_env != '\0') {
    std::cerr << "rvenc " << command << ": RVENC_GATEWAY is deprecated; set RVENC_GATEWAY_URL instead\n";
    settings.gateway = old_gateway_env;
    gateway_env = old_gateway_env;
  }
  settings.gateway_from_env = gateway_env != nullptr && !settings.gateway.empty() && settings.gateway == gateway_env;
  const char* data_env = std::getenv("RVENC_DATA");
  settings.data_dir_from_flag = !settings.data_dir.empty() && (data_env == nullptr || settings.data_dir != data_env);
}

// resolve_settings after note_setting_origins.
inline Result<client::ClientOptions> resolve_client_settings(client::ClientSettings settings, std::string_view command) {
  note_setting_origins(settings, command);
  auto options = client::resolve_settings(settings);
  if (options) warn_trust_root(command, settings.attestation_trust_root);
  return options;
}

// -m,--model (RVENC_MODEL) of `rvenc keygen` / `rvenc attest`: attestation per model
// (PROTOCOL.md section 7).
inline void add_model_flag(CLI::App& app, std::string& model, const std::string& help) {
  option(app, "-m,--model", model, help)->envname("RVENC_MODEL");
}

// kExitUntrusted for attestation, kExitUnavailable when the gateway cannot be reached,
// kExitUsage for bad settings, kExitFailure otherwise.
inline int exit_code_for(const Error& error) {
  switch (error.code) {
    case Errc::attestation_failed: return kExitUntrusted;
    case Errc::transport_error:
    case Errc::tls_error:
    case Errc::timeout: return kExitUnavailable;
    case Errc::invalid_request: return error.http_status == 0 ? kExitUsage : kExitFailure;
    default: return kExitFailure;
  }
}

// `text` from a server as it may be written to `fd`: without terminal control sequences when `fd`
// is a terminal, unless `raw`.
inline std::string terminal_safe(int fd, std::string_view text, bool raw = false) {
  return raw || isatty(fd) != 1 ? std::string(text) : client::strip_terminal_controls(text);
}

// "rvenc <command>: rate_limit_exceeded (HTTP 429): message" on stderr; returns the exit code.
// The message may be the gateway's or the enclave's: see terminal_safe.
inline int report_error(std::string_view command, const Error& error, bool raw = false) {
  std::cerr << "rvenc " << command << ": " << code_name(error.code);
  if (error.http_status != 0) std::cerr << " (HTTP " << error.http_status << ")";
  std::cerr << ": " << terminal_safe(STDERR_FILENO, error.message, raw) << "\n";
  return exit_code_for(error);
}

}  // namespace rvenc::cli
