#include "rvenc/enclave/server.hpp"

#include <algorithm>
#include <chrono>
#include <mutex>

#include <spdlog/spdlog.h>

#include "rvenc/common/clock.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/enclave/key.hpp"

namespace rvenc::enclave {

namespace {

// How often keys are maintained without traffic: a quarter of the period, within [1 s, 60 s].
std::chrono::milliseconds maintenance_tick(std::chrono::seconds period) {
  return std::clamp<std::chrono::milliseconds>(period / 4, std::chrono::seconds(1), std::chrono::seconds(60));
}

// The engines of --upstream and the demo model (`options.demo_model` gets its default when no
// upstream is given); `upstream_client` is made when an upstream needs it.
Result<std::map<std::string, std::shared_ptr<Engine>>> make_engines(EnclaveOptions& options,
                                                                     std::shared_ptr<http::HttpClient>& upstream_client) {
  std::map<std::string, std::shared_ptr<Engine>> engines;
  if (!options.upstreams.empty())
    upstream_client = std::make_shared<http::HttpClient>(http::HttpClientOptions{.ca_file = options.upstream_ca_file});
  for (const auto& spec_text : options.upstreams) {
    auto spec = parse_upstream_spec(spec_text);
    if (!spec) return std::unexpected(spec.error());
    if (engines.contains(spec->model))
      return fail(Errc::invalid_request, "model '" + spec->model + "' is given twice in --upstream");
    const bool native = std::find(options.responses_upstreams.begin(), options.responses_upstreams.end(),
                                  spec->model) != options.responses_upstreams.end();
    engines[spec->model] = std::make_shared<UpstreamEngine>(
        UpstreamEngineOptions{spec->model, spec->base, options.upstream_timeout, native}, upstream_client);
  }
  for (const auto& model : options.responses_upstreams)
    if (!engines.contains(model))
      return fail(Errc::invalid_request, "--upstream-responses '" + model + "' is not a model of --upstream");
  if (!options.demo_model && options.upstreams.empty()) options.demo_model = std::string(kDefaultDemoModel);
  if (options.demo_model) {
    if (options.demo_model->empty()) return fail(Errc::invalid_request, "--demo-model must not be empty");
    if (engines.contains(*options.demo_model))
      return fail(Errc::invalid_request, "model '" + *options.demo_model + "' is both the demo model and an upstream");
    DemoEngineOptions demo{*options.demo_model, options.demo_delay, nullptr, options.embedding_dimensions};
    if (options.demo_replay) {
      auto replay = load_replay_answers(*options.demo_replay);
      if (!replay) return std::unexpected(replay.error());
      demo.replay = std::move(*replay);
    }
    engines[*options.demo_model] = std::make_shared<DemoEngine>(std::move(demo));
  }
  return engines;
}

// The service's options; what an operator should know about them goes to `warnings`.
Result<ServiceOptions> make_service_options(const EnclaveOptions& options, bool key_made_now,
                                            const std::optional<std::filesystem::path>& key_file,
                                            std::vector<std::string>& warnings) {
  ServiceOptions service_options;
  service_options.allow_v1 = options.allow_v1;
  service_options.allow_v2 = options.allow_v2;
  service_options.key_may_have_been_used = !key_made_now;
  service_options.replay_cache_entries = options.replay_cache_entries;
  if (options.replay_tenant_share > options.replay_cache_entries)
    return fail(Errc::invalid_request, "--replay-tenant-share must not exceed --replay-cache-entries");
  service_options.replay_tenant_share = options.replay_tenant_share;
  service_options.max_attestation_queue = options.max_attestation_queue;
  service_options.max_streams = options.max_streams;
  if (auto ok = check_shaping_policy(options.shaping); !ok) return std::unexpected(ok.error());
  service_options.shaping = options.shaping;
  service_options.rotation = RotationOptions{.period = options.key_rotation, .key_file = key_file};
  if (options.gateway_token_file) {
    auto hash = load_gateway_token_hash(*options.gateway_token_file);
    if (!hash) return std::unexpected(hash.error());
    service_options.gateway_token_hash = *hash;
  } else {
    warnings.push_back("warning: no --gateway-token-file: any caller may use this enclave directly; for local use only");
  }
  service_options.test_models = options.test_models.value_or(
      std::vector<std::string>{options.demo_model.value_or(std::string(kDefaultDemoModel))});
  if (options.allow_v1)
    warnings.push_back("warning: --allow-v1: protocol version 1 replies can be forged by anyone on the path");
  if (options.allow_v2 && !key_made_now)
    warnings.push_back("note: --allow-v2 with an existing key file: version 2 requests are refused for " +
                       std::to_string(kMaxClockSkewSeconds) + " s (replay window after a restart)");
  return service_options;
}

// The HTTP server's options; rvenc-mux/1 upgrades are taken from callers showing the gateway token.
http::ServerOptions make_server_options(const EnclaveOptions& options, const EnclaveService& service) {
  http::ServerOptions server_options;
  server_options.host = options.host;
  server_options.port = options.port;
  server_options.threads = options.threads == 0 ? 1 : options.threads;
  server_options.shutdown_grace = options.shutdown_grace;
  server_options.body_limit = options.max_body;
  server_options.max_connections = options.max_connections;
  server_options.first_byte_timeout = options.first_byte_timeout;
  server_options.header_timeout = options.header_timeout;
  server_options.tls = options.tls;
  server_options.tls_handshake_timeout = options.tls_handshake_timeout;
  // The gateway multiplexes its streams over a few connections (rvenc-mux/1), if it shows its token.
  server_options.accept_mux = [service = &service](const http::Request& request) {
    std::optional<http::Response> refusal;
    if (auto ok = service->check_gateway_token(request); !ok) refusal = http::error_response(request, ok.error());
    return refusal;
  };
  return server_options;
}

// Rotates and retires the service's keys every `tick` until stopped (KeyRing::maintain).
std::jthread start_key_maintenance(EnclaveService& service, std::chrono::milliseconds tick) {
  return std::jthread([service = &service, tick](std::stop_token stop) {
    std::mutex mutex;
    std::condition_variable_any wake;
    std::unique_lock lock(mutex);
    for (;;) {
      (void)wake.wait_for(lock, stop, tick, [] { return false; });  // wakes at once on stop
      if (stop.stop_requested()) return;
      service->maintain_keys();
    }
  });
}

}  // namespace

Result<std::unique_ptr<EnclaveServer>> EnclaveServer::create(EnclaveOptions options) {
  std::unique_ptr<EnclaveServer> self(new EnclaveServer());

  // Engines first: bad --upstream flags are the cheapest mistakes to report.
  auto engines = make_engines(options, self->upstream_client_);
  if (!engines) return std::unexpected(engines.error());
  if (options.key_lifetime.count() <= 0) return fail(Errc::invalid_request, "--key-lifetime must be positive");
  if (options.key_rotation.count() < 0) return fail(Errc::invalid_request, "--key-rotation-hours must not be negative");

  // Attestation first: an enclave that cannot attest leaves no key file behind.
  auto provider = make_attestation_provider(options.attestation);
  if (!provider) return std::unexpected(provider.error());

  // A hardware enclave keeps its key in memory unless told where to keep it: a file on the host's
  // disk is readable by the host, whom the hardware is there to keep out.
  std::optional<std::filesystem::path> key_file = options.key_file;
  if (!key_file && (*provider)->name() == "simulated") key_file = std::filesystem::path(kDefaultKeyFile);
  const bool rotating = options.key_rotation.count() > 0;
  auto key = load_enclave_key(key_file, rotating ? rotated_key_lifetime(options.key_rotation) : options.key_lifetime,
                              unix_now());
  if (!key) return std::unexpected(key.error());
  if (!key_file) spdlog::info("a new enclave key in memory only (no --key-file with hardware attestation)");

  auto service_options = make_service_options(options, key->made_now, key_file, self->warnings_);
  if (!service_options) return std::unexpected(service_options.error());
  self->service_ = std::make_unique<EnclaveService>(std::move(*service_options), std::move(key->key),
                                                    std::shared_ptr<AttestationProvider>(std::move(*provider)),
                                                    std::move(*engines));

  auto server = http::Server::create(make_server_options(options, *self->service_), self->service_->router());
  if (!server)
    return fail(Errc::transport_error, "cannot listen on " + options.host + ":" + std::to_string(options.port) +
                                           ": " + server.error().message);
  self->server_ = std::move(*server);
  if (rotating) self->maintenance_ = start_key_maintenance(*self->service_, maintenance_tick(options.key_rotation));
  self->options_ = std::move(options);
  return self;
}

EnclaveServer::~EnclaveServer() {
  if (server_) {
    server_->stop(std::chrono::milliseconds(0));
    server_->wait();
  }
}

std::vector<std::string> EnclaveServer::describe() const {
  const auto& provider = service_->provider();
  std::vector<std::string> lines;
  const auto key = service_->current_key();
  lines.push_back("keyId " + to_hex(key->key_id()) + " (not after " + std::to_string(key->not_after()) + ")");
  if (const auto period = service_->keys().period(); period.count() > 0)
    lines.push_back("a new key every " + std::to_string(period.count()) + " s (--key-rotation-hours); a replaced key "
                    "decrypts for " + std::to_string(rotation_grace(period).count()) + " s more");
  lines.push_back("attestation provider " + std::string(provider.name()));
  lines.push_back("measurement " + to_hex(provider.measurement()));
  if (const auto platform = provider.platform_public_key())
    lines.push_back("platform public key " + to_hex(*platform));
  for (const auto& [name, engine] : service_->engines()) lines.push_back("model " + name + ": " + engine->description());
  lines.push_back("replay protection for up to " + std::to_string(service_->replay_cache().capacity()) + " requests per " +
                  std::to_string(kReplayWindowSeconds) + " s (--replay-cache-entries), at most " +
                  std::to_string(service_->replay_cache().tenant_share()) + " per tenant (--replay-tenant-share)");
  if (const auto capacity = service_->capacity())
    lines.push_back("at most " + std::to_string(*capacity) + " streams at once (--max-streams; beyond: 503 enclave_busy)");
  lines.insert(lines.end(), warnings_.begin(), warnings_.end());
  return lines;
}

void EnclaveServer::stop_on_signals() { server_->stop_on_signals(); }
void EnclaveServer::run() { server_->run(); }

void EnclaveServer::start() { server_->start(); }
void EnclaveServer::stop() { server_->stop(); }
void EnclaveServer::wait() { server_->wait(); }

}  // namespace rvenc::enclave
