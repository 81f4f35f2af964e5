// rvenc enclave: serves the attested X-Wing key and decrypts, routes and seals chat completions.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <sstream>

#include <spdlog/spdlog.h>

#include "command.hpp"
#include "server_tls_flags.hpp"
#include "rvenc/http/url.hpp"
#include "rvenc/enclave/server.hpp"
#include "rvenc/protocol/endpoint.hpp"

namespace rvenc::cli {
namespace {

struct EnclaveFlags {
  ServerTlsFlags tls;
  std::string listen = "127.0.0.1:8401";
  std::string key_file;  // empty: see EnclaveOptions::key_file
  std::string platform_key = "./platform.key";
  std::string attestation = "auto";
  std::string tsm_root = std::string(enclave::kDefaultTsmReportRoot);
  std::string collateral;
  std::string gateway_token_file;
  std::vector<std::string> upstreams;
  std::string responses_upstreams;
  std::string upstream_ca_file;
  std::string demo_model;
  long long demo_delay_ms = 0;
  std::int64_t embedding_dimensions = enclave::kDefaultDemoEmbeddingDimensions;
  std::string test_models;
  bool allow_v1 = false;
  bool allow_v2 = false;
  unsigned threads = 1;
  std::uint64_t max_body = http::ServerOptions::kDefaultBodyLimit;
  long long key_lifetime_s = enclave::kDefaultKeyLifetime.count();
  double key_rotation_hours = 0;
  long long upstream_timeout_ms = enclave::kDefaultUpstreamTimeout.count();
  long long shutdown_grace_ms = enclave::kDefaultShutdownGrace.count();
  std::size_t max_connections = enclave::kDefaultMaxConnections;
  std::size_t replay_cache_entries = enclave::kDefaultReplayCacheEntries;
  std::size_t replay_tenant_share = 0;
  std::size_t max_attestation_queue = enclave::kDefaultMaxAttestationQueue;
  std::size_t max_streams = 0;
  std::string shaping = "off";
  std::string shaping_allow = "off,pad,cadence";
  long long shaping_interval_ms = protocol::kDefaultShapingInterval.count();
  std::size_t shaping_record_bytes = protocol::kDefaultRecordBytes;
  std::string demo_replay;
  long long first_byte_timeout_ms = http::ServerOptions::kDefaultFirstByteTimeout.count();
  long long header_timeout_ms = http::ServerOptions::kDefaultHeaderTimeout.count();
};

// A year: longer than any sensible rotation, and far from overflowing seconds.
constexpr double kMaxKeyRotationHours = 24.0 * 366;

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

// --shaping, --shaping-allow, --shaping-interval-ms, --shaping-record-bytes.
Result<enclave::ShapingPolicy> shaping_policy(const EnclaveFlags& flags) {
  enclave::ShapingPolicy policy;
  policy.defaults.mode = protocol::shaping_mode_from_name(flags.shaping).value_or(protocol::ShapingMode::off);
  policy.defaults.interval = std::chrono::milliseconds(flags.shaping_interval_ms);
  policy.defaults.record_bytes = flags.shaping_record_bytes;
  policy.allowed.clear();
  for (const auto& name : split_list(flags.shaping_allow)) {
    const auto mode = protocol::shaping_mode_from_name(name);
    if (!mode) return fail(Errc::invalid_request, "--shaping-allow: '" + name + "' is not off, pad or cadence");
    policy.allowed.push_back(*mode);
  }
  if (auto ok = enclave::check_shaping_policy(policy); !ok) return std::unexpected(ok.error());
  return policy;
}

int run_enclave(const EnclaveFlags& flags) {
  enclave::EnclaveOptions options;
  const auto listen = http::parse_listen_address(flags.listen);
  if (!listen) {
    std::cerr << "rvenc enclave: " << listen.error().message << "\n";
    return kExitUsage;
  }
  options.host = listen->first;
  options.port = listen->second;
  if (flags.demo_delay_ms < 0 || flags.key_lifetime_s <= 0 || flags.upstream_timeout_ms <= 0 ||
      flags.shutdown_grace_ms < 0 || flags.first_byte_timeout_ms <= 0 || flags.header_timeout_ms <= 0) {
    std::cerr << "rvenc enclave: durations must be positive\n";
    return kExitUsage;
  }
  if (!flags.key_file.empty()) options.key_file = flags.key_file;
  options.key_lifetime = std::chrono::seconds(flags.key_lifetime_s);
  // Fractional hours (tests rotate every few seconds); at least one second when not 0.
  if (!(flags.key_rotation_hours >= 0) || flags.key_rotation_hours > kMaxKeyRotationHours) {
    std::cerr << "rvenc enclave: --key-rotation-hours must be between 0 and " << kMaxKeyRotationHours << "\n";
    return kExitUsage;
  }
  if (flags.key_rotation_hours > 0)
    options.key_rotation = std::max<std::chrono::seconds>(
        std::chrono::seconds(1), std::chrono::seconds(std::llround(flags.key_rotation_hours * 3600)));
  options.attestation.mode = flags.attestation;
  options.attestation.platform_key_file = flags.platform_key;
  options.attestation.tsm_root = flags.tsm_root;
  options.attestation.collateral_dir = flags.collateral;
  if (!flags.gateway_token_file.empty()) options.gateway_token_file = flags.gateway_token_file;
  options.upstreams = flags.upstreams;
  if (!flags.responses_upstreams.empty()) options.responses_upstreams = split_list(flags.responses_upstreams);
  options.upstream_ca_file = flags.upstream_ca_file;
  if (!flags.demo_model.empty()) options.demo_model = flags.demo_model;
  options.demo_delay = std::chrono::milliseconds(flags.demo_delay_ms);
  if (!flags.demo_replay.empty()) options.demo_replay = flags.demo_replay;
  auto shaping = shaping_policy(flags);
  if (!shaping) {
    std::cerr << "rvenc enclave: " << shaping.error().message << "\n";
    return kExitUsage;
  }
  options.shaping = *shaping;
  options.embedding_dimensions = flags.embedding_dimensions;
  if (!flags.test_models.empty()) options.test_models = split_list(flags.test_models);
  options.allow_v1 = flags.allow_v1;
  options.allow_v2 = flags.allow_v2;
  options.threads = flags.threads;
  options.max_body = flags.max_body;
  options.upstream_timeout = std::chrono::milliseconds(flags.upstream_timeout_ms);
  options.shutdown_grace = std::chrono::milliseconds(flags.shutdown_grace_ms);
  options.max_connections = flags.max_connections;
  options.replay_cache_entries = flags.replay_cache_entries;
  options.replay_tenant_share = flags.replay_tenant_share;
  options.max_attestation_queue = flags.max_attestation_queue;
  options.max_streams = flags.max_streams;
  options.first_byte_timeout = std::chrono::milliseconds(flags.first_byte_timeout_ms);
  options.header_timeout = std::chrono::milliseconds(flags.header_timeout_ms);
  if (auto applied = apply_server_tls(flags.tls, options); !applied) {
    std::cerr << "rvenc enclave: " << applied.error().message << "\n";
    return kExitUsage;
  }
  const auto tls = options.tls;  // for the startup line (options moves into the server)

  auto server = enclave::EnclaveServer::create(std::move(options));
  if (!server) {
    std::cerr << "rvenc enclave: " << server.error().message << "\n";
    const auto code = server.error().code;
    return code == Errc::attestation_failed || code == Errc::transport_error ? kExitUnavailable : kExitFailure;
  }
  (*server)->stop_on_signals();
  // One write, so no log line from another thread lands inside the "listening on" line.
  std::ostringstream facts;
  facts << "rvenc enclave listening on " << (*server)->url() << "\n";
  facts << describe_server_tls(tls);
  for (const auto& line : (*server)->describe()) facts << line << "\n";
  std::cout << facts.str() << std::flush;
  (*server)->run();
  spdlog::info("enclave stopped");
  return kExitOk;
}

void setup(CLI::App& app, std::function<int()>& run) {
  auto flags = std::make_shared<EnclaveFlags>();
  auto* cmd = app.add_subcommand("enclave", "Run the inference enclave: attested key, decryption, model engines");
  option(*cmd, "--listen", flags->listen, "HOST:PORT to listen on (port 0 picks a free port)")->capture_default_str();
  option(*cmd, "--key-file", flags->key_file,
         "Enclave key file (X-Wing seed + notAfter, mode 0600; created if missing, replaced by a new key when "
         "expired or expiring within an hour). Default ./enclave.key with simulated attestation; with hardware "
         "attestation a new key in memory at every start unless given (whoever can read the file can decrypt: "
         "see docs/threat-model.md)");
  option(*cmd, "--key-lifetime", flags->key_lifetime_s,
         "Seconds a new key lives (its notAfter); a key file keeps the notAfter it was made with")
      ->capture_default_str();
  option(*cmd, "--key-rotation-hours", flags->key_rotation_hours,
         "Make a new attested key every N hours while running (fractional allowed, at least 1 s; 0: never). "
         "Keys then live N hours + a grace of min(N hours, 1 h), in which a replaced key still decrypts (listed in "
         "previousKeys); --key-lifetime is not used. See docs/key-rotation.md")
      ->capture_default_str();
  option(*cmd, "--platform-key", flags->platform_key,
         "Ed25519 seed of the simulated platform (32 raw bytes, created with mode 0600 if missing)")
      ->capture_default_str();
  option(*cmd, "--attestation", flags->attestation,
         "simulated, sev-snp, tdx, or auto (the hardware found; never falls back to simulated)")
      ->check(CLI::IsMember({"simulated", "sev-snp", "tdx", "auto"}))
      ->capture_default_str();
  option(*cmd, "--tsm-root", flags->tsm_root, "The configfs-tsm report directory")->capture_default_str();
  option(*cmd, "--collateral", flags->collateral,
         "Directory of collateral files sent with hardware evidence so clients verify offline (names of "
         "docs/attestation.md: tcbinfo.json, qeidentity.json, pckcrl.der, vcek.der, ask_ark.pem, ...); re-read "
         "when they change");
  option(*cmd, "--gateway-token-file", flags->gateway_token_file,
         "File with the bearer token the gateway must send (without it: local use only)");
  option(*cmd, "--upstream", flags->upstreams,
         "MODEL=URL of an OpenAI-compatible server (URL like http://127.0.0.1:8000/v1 or https://...); repeatable");
  option(*cmd, "--upstream-responses", flags->responses_upstreams,
         "Comma-separated --upstream models whose server answers POST /v1/responses itself: Responses requests "
         "are forwarded to it (store: false) instead of translated to chat completions (docs/responses.md)");
  option(*cmd, "--upstream-ca-file", flags->upstream_ca_file,
         "PEM bundle (private CA) that verifies https:// upstreams instead of the system trust store");
  option(*cmd, "--demo-model", flags->demo_model,
         "Model name of the built-in demo engine (default rvenc-demo; served when no --upstream is given or "
         "when this is set)");
  option(*cmd, "--demo-delay-ms", flags->demo_delay_ms, "Pause of the demo engine before each token")
      ->capture_default_str();
  option(*cmd, "--demo-replay", flags->demo_replay,
         "JSON-lines file of answers the demo engine replays instead of its canned one (rvenc bench traffic): "
         "each line {\"tokens\": [...], \"delaysMs\": [...]}; a request whose last user message is \"replay:N\" "
         "gets answer N, each token at the start plus the delays before it (the recorded schedule)");
  option(*cmd, "--shaping", flags->shaping,
         "Stream shaping against traffic analysis for requests that ask for none (docs/traffic-shaping.md): off, "
         "pad (fixed-size records) or cadence (one record every --shaping-interval-ms, fillers, length buckets). "
         "Clients older than shaping cannot read pad or cadence streams")
      ->check(CLI::IsMember({"off", "pad", "cadence"}))
      ->capture_default_str();
  option(*cmd, "--shaping-allow", flags->shaping_allow,
         "Comma-separated shaping modes a request may ask for (others: 400 invalid_inference)")
      ->capture_default_str();
  option(*cmd, "--shaping-interval-ms", flags->shaping_interval_ms,
         "cadence: milliseconds between records when the request gives no intervalMs (5 to 1000)")
      ->capture_default_str();
  option(*cmd, "--shaping-record-bytes", flags->shaping_record_bytes,
         "pad and cadence: plaintext bytes of every data record (a multiple of 64, 128 to 16384)")
      ->capture_default_str();
  option(*cmd, "--embedding-dimensions", flags->embedding_dimensions,
         "Length of the demo engine's embeddings when a request gives no `dimensions` (docs/endpoints.md)")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{1}, protocol::kMaxEmbeddingDimensions));
  option(*cmd, "--test-models", flags->test_models,
         "Comma-separated models that test API keys may use (default: the demo model)");
  flag(*cmd, "--allow-v1", flags->allow_v1, "Accept protocol version 1 (compat; replies can be forged on the path)");
  flag(*cmd, "--allow-v2", flags->allow_v2,
       "Accept protocol version 2 (upgrade period; with an existing key file, refused for 300 s after start)");
  option(*cmd, "--threads", flags->threads, "I/O threads")->capture_default_str()->check(at_least(1, 256));
  option(*cmd, "--max-body", flags->max_body, "Largest request body in bytes (413 request_too_large beyond)")
      ->capture_default_str()
      ->check(at_least(1));
  option(*cmd, "--upstream-timeout-ms", flags->upstream_timeout_ms,
         "Connect timeout and longest silence of an upstream model server")
      ->capture_default_str();
  option(*cmd, "--shutdown-grace-ms", flags->shutdown_grace_ms,
         "On SIGINT/SIGTERM, how long in-flight streams may finish")
      ->capture_default_str();
  option(*cmd, "--max-connections", flags->max_connections, "Most connections served at once (beyond: 503 overloaded)")
      ->capture_default_str()
      ->check(at_least(1));
  option(*cmd, "--replay-cache-entries", flags->replay_cache_entries,
         "Requests remembered for replay protection over 10 minutes (beyond: 503 overloaded)")
      ->capture_default_str()
      ->check(at_least(1));
  option(*cmd, "--replay-tenant-share", flags->replay_tenant_share,
         "Of those, how many one tenant (API key) may hold (beyond: 429 replay_quota_exceeded for it alone); "
         "0: an eighth of --replay-cache-entries, at least min(64, half of it)")
      ->capture_default_str();
  option(*cmd, "--max-attestation-queue", flags->max_attestation_queue,
         "Attestation requests waiting for evidence at once (beyond: 503 overloaded)")
      ->capture_default_str()
      ->check(at_least(1));
  option(*cmd, "--max-streams", flags->max_streams,
         "Chat streams served at once, the engine's capacity (beyond: 503 enclave_busy with Retry-After, so that "
         "clients move to another replica); 0: unlimited")
      ->capture_default_str();
  option(*cmd, "--first-byte-timeout-ms", flags->first_byte_timeout_ms,
         "How long a new connection may take to send its first byte (then it is closed)")
      ->capture_default_str();
  option(*cmd, "--header-timeout-ms", flags->header_timeout_ms,
         "Deadline for a request head once its first byte arrived")
      ->capture_default_str();
  add_server_tls_flags(*cmd, flags->tls);
  cmd->callback([&run, flags] { run = [flags] { return run_enclave(*flags); }; });
}

const Registrar registrar{{"enclave", setup}};

}  // namespace
}  // namespace rvenc::cli
