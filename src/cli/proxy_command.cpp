// rvenc proxy: the local OpenAI-compatible proxy. Any OpenAI client pointed at
// http://127.0.0.1:3000/v1 with an rvenc API key gets end-to-end encrypted completions.
#include <cstdint>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>

#include "client_flags.hpp"
#include "rvenc/http/url.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/proxy/service.hpp"

namespace rvenc::cli {
namespace {

struct ProxyFlags {
  std::string listen = "127.0.0.1:3000";
  std::string gateway;  // empty: the stack file's, else client::kDefaultBaseUrl
  std::string ca_file;
  std::string platform_public_key;
  std::string data_dir;
  std::string measurement;
  std::string attestation_policy;
  std::string attestation_trust_root;
  int protocol = 3;
  std::string shaping;
  bool allow_binding_v1 = false;
  std::string dek_store;
  std::uint64_t dek_max_requests = proxy::DekPolicy::kDefaultMaxRequests;
  std::int64_t dek_max_age = proxy::DekPolicy::kDefaultMaxAge.count();
  std::size_t max_clients = proxy::CacheOptions::kDefaultMaxClients;
  std::size_t responses_max = proxy::ResponsesStoreOptions::kDefaultMaxEntries;
  std::size_t responses_max_bytes = proxy::ResponsesStoreOptions::kDefaultMaxBytes;
  bool allow_remote = false;
  bool quiet = false;
  std::string chat_dir;
};

int usage_error(const std::string& message) {
  std::cerr << "rvenc proxy: " << message << "\n";
  return kExitUsage;
}

int run(const ProxyFlags& flags) {
  proxy::ProxyOptions options;
  auto listen = http::parse_listen_address(flags.listen);
  if (!listen) return usage_error(listen.error().message);
  options.host = listen->first;
  options.port = listen->second;
  options.allow_remote = flags.allow_remote;
  options.access_log = !flags.quiet;
  // The gateway and platform key resolve like a client's (flag > variable > stack file > default).
  client::ClientSettings settings{.gateway = flags.gateway,
                                  .platform_public_key = flags.platform_public_key,
                                  .data_dir = flags.data_dir,
                                  .ca_file = flags.ca_file};
  note_setting_origins(settings, "proxy");
  auto resolved = client::apply_stack_file(settings);
  if (!resolved) {
    std::cerr << "rvenc proxy: " << resolved.error().message << "\n";
    return resolved.error().code == Errc::transport_error ? kExitUnavailable : kExitUsage;
  }
  options.ca_file = resolved->ca_file;
  options.gateway_url = resolved->gateway.empty() ? std::string(client::kDefaultBaseUrl) : resolved->gateway;
  if (auto ok = client::validate_gateway_url(options.gateway_url); !ok) return usage_error(ok.error().message);
  if (!resolved->platform_public_key.empty()) {
    auto key = from_hex_exact<crypto::kEd25519PublicKeyBytes>(resolved->platform_public_key, "--platform-public-key");
    if (!key) return usage_error(key.error().message);
    options.platform_public_key = *key;
  }
  if (!flags.measurement.empty()) {
    auto measurement = from_hex(flags.measurement, "--measurement");
    if (!measurement) return usage_error(measurement.error().message);
    options.measurement = std::move(*measurement);
  }
  auto hardware = client::load_hardware_trust(flags.attestation_policy, flags.attestation_trust_root);
  if (!hardware) return usage_error(hardware.error().message);
  warn_trust_root("proxy", flags.attestation_trust_root);
  options.hardware_policy = std::move(hardware->policy);
  options.trust_anchors = std::move(hardware->anchors);
  options.protocol_version = static_cast<protocol::Version>(flags.protocol);
  if (!flags.shaping.empty()) options.shaping = protocol::shaping_mode_from_name(flags.shaping);
  options.allow_binding_v1 = flags.allow_binding_v1;
  if (!flags.dek_store.empty()) options.dek_store = flags.dek_store;
  if (!flags.chat_dir.empty()) options.chat_dir = flags.chat_dir;
  options.cache.max_clients = flags.max_clients;
  options.responses.max_entries = flags.responses_max;
  options.responses.max_bytes = flags.responses_max_bytes;
  options.cache.dek.max_requests = flags.dek_max_requests;
  options.cache.dek.max_age = std::chrono::seconds(flags.dek_max_age);

  // Where --gateway points is checked once now, so a wrong URL is one line at start, not a 404 on
  // every request; a gateway not up yet is only a warning (it may start after the proxy).
  auto probe = proxy::sdk_options(options);
  probe.request_timeout = std::chrono::seconds(5);
  if (auto gateway = client::check_gateway(probe); !gateway) {
    if (gateway.error().code == Errc::not_found) {
      std::cerr << "rvenc proxy: --gateway " << options.gateway_url << ": " << gateway.error().message << "\n";
      return kExitUsage;
    }
    std::cerr << "rvenc proxy: warning: the gateway at " << options.gateway_url
              << " does not answer yet (" << gateway.error().message << "); requests fail until it does\n";
  }
  auto server = proxy::ProxyServer::create(options);
  if (!server) {
    std::cerr << "rvenc proxy: " << server.error().message << "\n";
    return server.error().code == Errc::invalid_request ? kExitUsage : kExitUnavailable;
  }
  (*server)->stop_on_signals();
  // One write, so no log line from another thread lands inside the "listening on" line.
  std::ostringstream facts;
  facts << "rvenc proxy listening on " << (*server)->url() << "\n"
        << "  OpenAI base URL: " << (*server)->url() << "/v1 (use your rvenc API key as the OpenAI API key)\n"
        << "  gateway: " << options.gateway_url << ", protocol v" << flags.protocol
        << (options.platform_public_key ? ", trusts the simulated platform key given" : "") << "\n"
        << "  chat page: " << (*server)->url() << "/chat (the gateway must allow this origin: --cors-origin "
        << (*server)->url() << ")\n"
        << "  DEK store: " << (flags.dek_store.empty() ? "none (keys kept in memory)" : flags.dek_store) << "\n";
  std::cout << facts.str() << std::flush;
  (*server)->run();
  return kExitOk;
}

void setup(CLI::App& app, std::function<int()>& run_command) {
  auto flags = std::make_shared<ProxyFlags>();
  auto* cmd = app.add_subcommand("proxy", "Local OpenAI-compatible proxy: encrypts for the enclave, decrypts the replies");
  option(*cmd, "--listen", flags->listen, "HOST:PORT to serve on (port 0 picks one)")->capture_default_str();
  add_gateway_flag(*cmd, flags->gateway);
  option(*cmd, "--data", flags->data_dir,
         "Take the gateway and platform key not given otherwise from DIR/stack.json (default ./.rvenc)");
  option(*cmd, "--ca-file", flags->ca_file,
         "PEM bundle (private CA) that verifies an https:// gateway instead of the system trust store")
      ->envname("RVENC_CA_FILE");
  option(*cmd, "--platform-public-key", flags->platform_public_key,
         "trust a simulated enclave signed by this Ed25519 platform key (hex)");
  option(*cmd, "--measurement", flags->measurement, "require this enclave measurement (hex)");
  add_attestation_flags(*cmd, flags->attestation_policy, flags->attestation_trust_root);
  flag(*cmd, "--allow-binding-v1", flags->allow_binding_v1, kAllowBindingV1Help);
  option(*cmd, "--shaping", flags->shaping, kShapingHelp)->check(CLI::IsMember({"off", "pad", "cadence"}));
  option(*cmd, "--protocol", flags->protocol, "wire protocol version (3; 2 during an upgrade; 1 only for legacy servers)")
      ->check(CLI::IsMember({1, 2, 3}))
      ->capture_default_str();
  option(*cmd, "--dek-store", flags->dek_store,
         "keep encryption keys across restarts in FILE (created mode 0600, indexed by API key hash); keys "
         "verified under other --measurement/--platform-public-key/--attestation-* settings, or near their notAfter, are "
         "dropped at start and made anew");
  option(*cmd, "--dek-max-requests", flags->dek_max_requests, "rotate a key's encryption keys after N requests (0: never)")
      ->capture_default_str();
  option(*cmd, "--dek-max-age", flags->dek_max_age, "rotate encryption keys after S seconds (0: never)")
      ->check(at_least(0))
      ->capture_default_str();
  option(*cmd, "--max-clients", flags->max_clients, "API keys kept in the client cache")
      ->check(at_least(1))
      ->capture_default_str();
  option(*cmd, "--responses-max", flags->responses_max,
         "Responses API: stored responses kept in memory for previous_response_id and GET/DELETE /v1/responses/{id} "
         "(oldest dropped first; 0: keep none)")
      ->capture_default_str();
  option(*cmd, "--responses-max-bytes", flags->responses_max_bytes,
         "Responses API: most bytes of stored conversations kept in memory")
      ->check(at_least(1))
      ->capture_default_str();
  option(*cmd, "--chat-dir", flags->chat_dir,
         "directory of the built browser chat page served at /chat (npm run build in sdk/js); default: " +
             proxy::default_chat_dir().string());
  flag(*cmd, "--quiet", flags->quiet,
       "No access log (by default one line per request: method, path, status, duration, key masked to its last "
       "4 characters; never content)");
  flag(*cmd, "--allow-remote", flags->allow_remote,
       "allow a non-loopback --listen address (exposes decrypted traffic to the network)");
  cmd->callback([flags, &run_command] { run_command = [flags] { return run(*flags); }; });
}

const Registrar registrar{{"proxy", setup}};

}  // namespace
}  // namespace rvenc::cli
