// rvenc gateway: API keys, checks and rate limits in front of the enclaves; never decrypts.
#include <fstream>
#include <iostream>
#include <sstream>

#include <spdlog/spdlog.h>

#include "command.hpp"
#include "server_tls_flags.hpp"
#include "rvenc/http/address.hpp"
#include "rvenc/http/url.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "rvenc/gateway/gateway.hpp"
#include "rvenc/gateway/redis_rate_limiter.hpp"
#include "rvenc/gateway/redis_revocations.hpp"

namespace rvenc::cli {
namespace {

// A token file larger than this is not a token.
constexpr std::size_t kMaxTokenFileBytes = 4096;

struct GatewayFlags {
  ServerTlsFlags tls;
  std::string listen = "127.0.0.1:8400";
  std::vector<std::string> enclaves;
  std::string record_traffic;
  std::string db;
  std::string redis;
  std::string redis_failure = "closed";
  std::string store_failure = "closed";
  long long store_grace_s = 60;
  std::string usage_journal_dir = ".";
  std::string enclave_token_file;
  std::string enclave_ca_file;
  std::uint64_t max_body = gateway::kDefaultMaxBody;
  long long upstream_timeout_ms = gateway::kUpstreamIdleTimeout.count();
  long long read_timeout_ms = http::ServerOptions::kDefaultReadTimeout.count();
  long long idle_timeout_ms = http::ServerOptions::kDefaultIdleTimeout.count();
  long long first_byte_timeout_ms = http::ServerOptions::kDefaultFirstByteTimeout.count();
  long long header_timeout_ms = http::ServerOptions::kDefaultHeaderTimeout.count();
  long long health_interval_ms = gateway::kDefaultHealthInterval.count();
  std::size_t max_connections = gateway::kDefaultMaxConnections;
  std::size_t max_connections_per_ip = gateway::kDefaultMaxConnectionsPerIp;
  bool per_ip_explicit = false;  // --max-connections-per-ip given: loopback counts too
  std::vector<std::string> trusted_proxies;
  std::int64_t attestation_per_minute = gateway::kDefaultAttestationPerMinute;
  std::string admin_token_file;
  bool enclave_http1 = false;
  std::vector<std::string> cors_origins;
  bool quiet = false;
};

// The token in `path` (surrounding whitespace trimmed); `flag` names it in errors.
Result<std::string> read_token_file(const std::string& path, std::string_view flag) {
  const std::string name(flag);
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(Errc::invalid_request, "cannot read " + name + " " + path);
  std::string token(kMaxTokenFileBytes + 1, '\0');
  in.read(token.data(), static_cast<std::streamsize>(token.size()));
  token.resize(static_cast<std::size_t>(in.gcount()));
  if (token.size() > kMaxTokenFileBytes) return fail(Errc::invalid_request, name + " is too large");
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.front()))) token.erase(token.begin());
  if (token.empty()) return fail(Errc::invalid_request, name + " is empty");
  return token;
}

// The SHA-256 of the admin token in `path` (the token itself is wiped).
Result<crypto::Sha256Digest> read_admin_token_hash(const std::string& path) {
  auto token = read_token_file(path, "--admin-token-file");
  if (!token) return std::unexpected(token.error());
  const auto digest = crypto::sha256(crypto::as_bytes(*token));
  crypto::secure_wipe(token->data(), token->size());
  return digest;
}

// Connection limits and timeouts, the trusted proxies and the admin token into `options`.
Status apply_client_limits(const GatewayFlags& flags, gateway::GatewayOptions& options) {
  if (flags.first_byte_timeout_ms <= 0 || flags.header_timeout_ms <= 0 || flags.health_interval_ms <= 0)
    return fail(Errc::invalid_request, "--first-byte-timeout-ms, --header-timeout-ms and --health-interval-ms must "
                                       "be positive");
  options.first_byte_timeout = std::chrono::milliseconds(flags.first_byte_timeout_ms);
  options.header_timeout = std::chrono::milliseconds(flags.header_timeout_ms);
  options.health_interval = std::chrono::milliseconds(flags.health_interval_ms);
  options.max_connections_per_ip = flags.max_connections_per_ip;
  options.per_ip_cap_loopback = flags.per_ip_explicit;
  for (const auto& text : flags.trusted_proxies) {
    auto cidr = http::parse_cidr(text);
    if (!cidr) return fail(Errc::invalid_request, "--trusted-proxy " + cidr.error().message);
    options.trusted_proxies.push_back(*cidr);
  }
  if (flags.attestation_per_minute < 0) return fail(Errc::invalid_request, "--attestation-per-minute must be >= 0");
  options.attestation_per_minute = flags.attestation_per_minute;
  auto cors = gateway::parse_cors_origins(flags.cors_origins);
  if (!cors) return std::unexpected(cors.error());
  options.cors = std::move(*cors);
  if (!flags.admin_token_file.empty()) {
    auto hash = read_admin_token_hash(flags.admin_token_file);
    if (!hash) return std::unexpected(hash.error());
    options.admin_token_hash = *hash;
  }
  return {};
}

int run_gateway(const GatewayFlags& flags) {
  gateway::GatewayOptions options;
  std::optional<gateway::RedisOptions> redis;
  if (!flags.redis.empty()) {
    auto url = gateway::parse_redis_url(flags.redis);
    auto policy = gateway::parse_failure_policy(flags.redis_failure);
    if (!url || !policy) {
      std::cerr << "rvenc gateway: " << (url ? policy.error().message : "--redis: " + url.error().message) << "\n";
      return kExitUsage;
    }
    redis = gateway::RedisOptions{.url = *url};
    options.rate_limiter = std::make_shared<gateway::RedisRateLimiter>(
        gateway::RedisRateLimiterOptions{.redis = *redis, .failure_policy = *policy});
  }
  const auto listen = http::parse_listen_address(flags.listen);
  if (!listen) {
    std::cerr << "rvenc gateway: " << listen.error().message << "\n";
    return kExitUsage;
  }
  options.host = listen->first;
  options.port = listen->second;
  for (const auto& text : flags.enclaves) {
    auto url = http::parse_url(text);
    if (!url) {
      std::cerr << "rvenc gateway: --enclave " << text << ": " << url.error().message << "\n";
      return kExitUsage;
    }
    options.enclaves.push_back(*url);
  }
  if (flags.max_body == 0 || flags.upstream_timeout_ms <= 0 || flags.read_timeout_ms <= 0 ||
      flags.idle_timeout_ms <= 0) {
    std::cerr << "rvenc gateway: --max-body and the timeouts must be positive\n";
    return kExitUsage;
  }
  options.read_timeout = std::chrono::milliseconds(flags.read_timeout_ms);
  options.idle_timeout = std::chrono::milliseconds(flags.idle_timeout_ms);
  options.db_path = flags.db;
  const auto store_location = store::parse_store_location(flags.db);
  if (!store_location) {
    std::cerr << "rvenc gateway: --db: " << store_location.error().message << "\n";
    return kExitUsage;
  }
  options.store.journal_dir = flags.usage_journal_dir;
  options.store_failure.policy = *gateway::store_failure_policy(flags.store_failure);  // checked by CLI11
  options.store_failure.grace = std::chrono::seconds(flags.store_grace_s);
  options.max_body = flags.max_body;
  options.upstream_idle_timeout = std::chrono::milliseconds(flags.upstream_timeout_ms);
  options.max_connections = flags.max_connections;
  options.enclave_mux = !flags.enclave_http1;
  options.access_log = !flags.quiet;
  options.enclave_ca_file = flags.enclave_ca_file;
  if (!flags.record_traffic.empty()) {
    auto recorder = gateway::TrafficRecorder::open(flags.record_traffic);
    if (!recorder) {
      std::cerr << "rvenc gateway: " << recorder.error().message << "\n";
      return kExitUsage;
    }
    options.traffic_recorder = std::move(*recorder);
  }
  if (auto ok = apply_client_limits(flags, options); !ok) {
    std::cerr << "rvenc gateway: " << ok.error().message << "\n";
    return kExitUsage;
  }
  if (!flags.enclave_token_file.empty()) {
    auto token = read_token_file(flags.enclave_token_file, "--enclave-token-file");
    if (!token) {
      std::cerr << "rvenc gateway: " << token.error().message << "\n";
      return kExitUsage;
    }
    options.enclave_token = std::move(*token);
  }
  if (auto applied = apply_server_tls(flags.tls, options); !applied) {
    std::cerr << "rvenc gateway: " << applied.error().message << "\n";
    return kExitUsage;
  }
  const auto tls = options.tls;  // for the startup line (options moves into the server)

  auto created = gateway::Gateway::create(std::move(options));
  if (!created) {
    std::cerr << "rvenc gateway: " << created.error().message << "\n";
    return created.error().code == Errc::invalid_request ? kExitUsage : kExitUnavailable;
  }
  auto& gw = **created;
  // Revocations published by `rvenc keys revoke --redis`: re-read the key cache at once.
  std::unique_ptr<gateway::RevocationSubscriber> revocations;
  if (redis) {
    auto reread = [&gw] {
      if (auto polled = gw.handler().keys().poll(); !polled)
        spdlog::warn("key cache poll failed: {}", polled.error().to_string());
    };
    revocations = std::make_unique<gateway::RevocationSubscriber>(
        *redis, [reread](const std::string&) { reread(); }, reread);
  }
  gw.stop_on_signals();
  gw.start();
  gw.refresh_enclaves();
  // One write: the server's threads already log to the same stdout, and a log line landing inside
  // "listening on http://..." would hide the address from whoever waits for it.
  std::ostringstream facts;
  facts << "rvenc gateway listening on " << gw.url() << "\n";
  facts << describe_server_tls(tls);
  facts << "database: " << store_location->display
        << (store_location->kind == store::StoreLocation::Kind::postgres
                ? " (PostgreSQL; --store-failure " + flags.store_failure + ", cached keys for " +
                      std::to_string(flags.store_grace_s) + " s; usage journals in " + flags.usage_journal_dir + ")"
                : std::string())
        << "\n";
  for (const auto& e : gw.handler().enclaves().snapshot()) {
    facts << "enclave " << e.url.origin() << ": ";
    if (e.healthy)
    {
      facts << "up, keyId " << to_hex(*e.key_id) << " (" << e.provider << "), models:";
      for (const auto& model : e.models) facts << ' ' << model;
      facts << (e.capacity ? ", --max-streams " + std::to_string(*e.capacity) : std::string()) << "\n";
    }
    else
      facts << "down (" << e.last_error << "), will retry\n";
  }
  facts << "to the enclaves: "
        << (gw.handler().options().enclave_mux ? "rvenc-mux connections (HTTP/1.1 for enclaves without)"
                                                 : "HTTP/1.1, a connection per stream")
        << "\n";
  facts << "max body " << gw.handler().options().max_body << " bytes; rate limits "
        << (redis ? "shared in " + redis->url.to_string() + " (--redis-failure " + flags.redis_failure + ")"
                  : std::string("in memory"))
        << "\n";
  facts << (gw.handler().options().admin_token_hash
                ? "admin: /healthz details and /metrics need the admin token (--admin-token-file)\n"
                : "warning: no --admin-token-file: /healthz details (enclave URLs, keyIds, errors) and /metrics are "
                  "public\n");
  facts << "connections: at most " << flags.max_connections << ", " << flags.max_connections_per_ip
        << " per address (0: no cap" << (flags.per_ip_explicit ? "" : "; loopback exempt") << ")"
        << (flags.trusted_proxies.empty() ? std::string() : ", trusted proxies exempt") << "\n";
  if (gw.handler().options().cors.enabled()) {
    facts << "browser pages allowed (CORS) from:";
    for (const auto& origin : gw.handler().options().cors.origins) facts << " " << origin;
    facts << "\n";
  }
  std::cout << facts.str() << std::flush;
  gw.wait();
  spdlog::info("gateway stopped");
  return kExitOk;
}

void setup(CLI::App& app, std::function<int()>& run) {
  auto flags = std::make_shared<GatewayFlags>();
  auto* cmd = app.add_subcommand("gateway", "Run the gateway: API keys, checks, rate limits, pass-through to enclaves");
  option(*cmd, "--listen", flags->listen, "HOST:PORT to listen on (port 0 picks a free port)")->capture_default_str();
  option(*cmd, "--enclave", flags->enclaves,
         "Enclave base URL (http://HOST:PORT or https://HOST:PORT); repeatable: replicas of a model and other "
         "models, each with its own key (GET /rvenc/models lists them all; attestation ?model=NAME picks one for "
         "load, &all=1 lists every replica; see docs/multi-enclave.md)")
      ->required();
  option(*cmd, "--db", flags->db,
         "The API keys and usage: a SQLite file (created if missing) or postgresql://USER[:PASSWORD]@HOST:PORT/DBNAME "
         "(gateways on several hosts; migrated at start; see docs/stores.md)")
      ->required();
  option(*cmd, "--store-failure", flags->store_failure,
         "When the PostgreSQL store is down: closed serves cached keys for --store-grace-s then refuses (503), open "
         "serves cached keys until it returns; unknown keys are refused (503) either way")
      ->check(CLI::IsMember({"open", "closed"}))
      ->capture_default_str();
  option(*cmd, "--store-grace-s", flags->store_grace_s,
         "How long cached keys are served while the store is down (--store-failure closed)")
      ->capture_default_str()
      ->check(at_least(0));
  option(*cmd, "--usage-journal-dir", flags->usage_journal_dir,
         "Directory of the usage journals with a PostgreSQL store (rows wait there while it is down; SQLite: "
         "beside the database)")
      ->capture_default_str();
  option(*cmd, "--redis", flags->redis, "redis://HOST:PORT[/DB] for rate limits and revocations shared by gateways");
  option(*cmd, "--redis-failure", flags->redis_failure,
         "When Redis is down: closed refuses rate-limited requests (503), open uses in-process limits")
      ->check(CLI::IsMember({"open", "closed"}))
      ->capture_default_str();
  option(*cmd, "--enclave-ca-file", flags->enclave_ca_file,
         "PEM bundle (private CA) that verifies https:// enclaves instead of the system trust store");
  option(*cmd, "--enclave-token-file", flags->enclave_token_file,
         "File with the bearer token sent to the enclaves (their --gateway-token-file)");
  option(*cmd, "--max-body", flags->max_body, "Largest request body in bytes (beyond: 413)")->capture_default_str();
  option(*cmd, "--upstream-timeout-ms", flags->upstream_timeout_ms, "Longest silence allowed from an enclave")
      ->capture_default_str();
  option(*cmd, "--read-timeout-ms", flags->read_timeout_ms,
         "Deadline for a client to send a whole request once it started (slow clients are dropped)")
      ->capture_default_str();
  option(*cmd, "--idle-timeout-ms", flags->idle_timeout_ms, "How long an idle keep-alive connection is kept")
      ->capture_default_str();
  option(*cmd, "--max-connections", flags->max_connections,
         "Most client connections served at once (beyond: 503 overloaded); each stream also holds one to an enclave")
      ->capture_default_str()
      ->check(at_least(1));
  option(*cmd, "--first-byte-timeout-ms", flags->first_byte_timeout_ms,
         "How long a new client connection may take to send its first byte (then it is closed)")
      ->capture_default_str();
  option(*cmd, "--header-timeout-ms", flags->header_timeout_ms,
         "Deadline for a request head (request line and headers) once its first byte arrived")
      ->capture_default_str();
  auto* per_ip = option(*cmd, "--max-connections-per-ip", flags->max_connections_per_ip,
                        "Most client connections at once from one address (beyond: 429; 0: no cap); loopback "
                        "clients are exempt unless this is given")
                     ->capture_default_str();
  option(*cmd, "--trusted-proxy", flags->trusted_proxies,
         "CIDR of a load balancer in front (repeatable): exempt from the per-address cap, and its X-Forwarded-For "
         "names the client address (PROXY protocol is not supported)");
  option(*cmd, "--attestation-per-minute", flags->attestation_per_minute,
         "GET /rvenc/attestation a minute per client address without a valid API key (also the burst; at least "
         "2 per enclave; 0: no limit)")
      ->capture_default_str();
  option(*cmd, "--admin-token-file", flags->admin_token_file,
         "File with the admin token: /healthz details and /metrics need Authorization: Bearer <it> "
         "(without it they are public)");
  option(*cmd, "--health-interval-ms", flags->health_interval_ms,
         "How often each enclave's health is checked (GET /healthz, bounded by 1 s, so an enclave that stops "
         "answering is out of service within about 2 s; attestation for a new keyId, after a recovery and every 30 s, "
         "which tells its models, capacity and previous keys)")
      ->capture_default_str();
  option(*cmd, "--cors-origin", flags->cors_origins,
         "Browser origin (scheme://host[:port]) allowed to call the chat, models and attestation routes, e.g. the "
         "chat page of rvenc proxy http://127.0.0.1:3000; repeatable or a comma list (default: none)");
  option(*cmd, "--record-traffic", flags->record_traffic,
         "Append one JSON line per relayed stream to FILE: request id, billed usage and each event's size and "
         "arrival time, nothing else (what the gateway sees anyway; for rvenc bench traffic, see "
         "docs/traffic-shaping.md). Off by default");
  flag(*cmd, "--quiet", flags->quiet,
       "No access log (by default one line per request: method, path, status, duration, key masked to its last "
       "4 characters; never content)");
  flag(*cmd, "--enclave-http1", flags->enclave_http1,
       "One HTTP/1.1 connection per stream to the enclaves, instead of streams sharing rvenc-mux connections");
  add_server_tls_flags(*cmd, flags->tls);
  cmd->callback([&run, flags, per_ip] {
    flags->per_ip_explicit = per_ip->count() > 0;
    run = [flags] { return run_gateway(*flags); };
  });
}

const Registrar registrar{{"gateway", setup}};

}  // namespace
}  // namespace rvenc::cli
