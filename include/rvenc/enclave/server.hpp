// `rvenc enclave` as a library: loads the keys, picks the attestation provider and the engines,
// and serves EnclaveService over HTTP. `rvenc up` runs it in-process with start()/stop().
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "rvenc/common/error.hpp"
#include "rvenc/enclave/attestation.hpp"
#include "rvenc/enclave/engine.hpp"
#include "rvenc/enclave/service.hpp"
#include "rvenc/http/server.hpp"

namespace rvenc::enclave {

inline constexpr std::chrono::seconds kDefaultKeyLifetime{30L * 24 * 3600};
inline constexpr std::string_view kDefaultKeyFile = "enclave.key";
inline constexpr std::chrono::milliseconds kDefaultShutdownGrace{10'000};
// Gateways keep pools of idle connections, and every stream holds one.
inline constexpr std::size_t kDefaultMaxConnections = 4096;

struct EnclaveOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  // The enclave key file (see load_enclave_key). Unset: kDefaultKeyFile with the simulated
  // provider; with a hardware provider a new key in memory at every start.
  std::optional<std::filesystem::path> key_file;
  std::chrono::seconds key_lifetime = kDefaultKeyLifetime;
  // --key-rotation-hours: a new key every period (KeyRing; new keys then live period + grace, and
  // key_lifetime is not used); 0: never.
  std::chrono::seconds key_rotation{0};
  AttestationConfig attestation;
  std::optional<std::filesystem::path> gateway_token_file;
  std::vector<std::string> upstreams;  // "MODEL=URL"
  // Models of `upstreams` whose server answers POST /v1/responses itself (forwarded, not translated).
  std::vector<std::string> responses_upstreams;
  std::string upstream_ca_file;  // PEM bundle verifying https:// upstreams (system trust store when empty)
  // The demo engine's model. Unset: "rvenc-demo" when no upstream is given, else no demo engine.
  std::optional<std::string> demo_model;
  std::chrono::milliseconds demo_delay{0};
  // Answers the demo engine replays (DemoEngineOptions::replay), from a JSON-lines file.
  std::optional<std::filesystem::path> demo_replay;
  // Stream shaping (docs/traffic-shaping.md).
  ShapingPolicy shaping;

  std::int64_t embedding_dimensions = kDefaultDemoEmbeddingDimensions;  // the demo engine's embeddings
  // Unset: the demo model.
  std::optional<std::vector<std::string>> test_models;
  bool allow_v1 = false;
  bool allow_v2 = false;
  unsigned threads = 1;
  // Largest request body accepted (the envelope is hex: about twice the encrypted request).
  std::uint64_t max_body = http::ServerOptions::kDefaultBodyLimit;
  std::chrono::milliseconds upstream_timeout = kDefaultUpstreamTimeout;
  std::chrono::milliseconds shutdown_grace = kDefaultShutdownGrace;
  std::size_t max_connections = kDefaultMaxConnections;  // beyond -> 503 overloaded
  // Requests remembered for replay protection (beyond: 503 overloaded until entries expire).
  std::size_t replay_cache_entries = kDefaultReplayCacheEntries;
  // Of those, what one tenant may hold (beyond: 429 replay_quota_exceeded); 0: derived
  // (default_tenant_share). At most replay_cache_entries.
  std::size_t replay_tenant_share = 0;
  // Attestation requests waiting for evidence at once (beyond: 503 overloaded).
  std::size_t max_attestation_queue = kDefaultMaxAttestationQueue;
  // Chat streams served at once (the engine's capacity; beyond: 503 enclave_busy); 0: unlimited.
  std::size_t max_streams = 0;
  // Slow connections (http::ServerOptions): first byte of a new connection, each request head.
  std::chrono::milliseconds first_byte_timeout = http::ServerOptions::kDefaultFirstByteTimeout;
  std::chrono::milliseconds header_timeout = http::ServerOptions::kDefaultHeaderTimeout;
  // https on the listener (http::ServerOptions::tls; SIGHUP reloads it); null: plain http.
  std::shared_ptr<http::TlsServerContext> tls;
  std::chrono::milliseconds tls_handshake_timeout = http::ServerOptions::kDefaultTlsHandshakeTimeout;
};

class EnclaveServer {
 public:
  // Errors: invalid_request (options, key files), attestation_failed (provider unavailable),
  // transport_error (cannot listen), internal_error (I/O).
  [[nodiscard]] static Result<std::unique_ptr<EnclaveServer>> create(EnclaveOptions options);
  ~EnclaveServer();
  EnclaveServer(const EnclaveServer&) = delete;
  EnclaveServer& operator=(const EnclaveServer&) = delete;

  [[nodiscard]] std::uint16_t port() const { return server_->port(); }
  [[nodiscard]] std::string url() const { return server_->url(); }
  // Startup facts for people: key id, provider, measurement, platform key, models, warnings.
  [[nodiscard]] std::vector<std::string> describe() const;
  [[nodiscard]] const EnclaveService& service() const noexcept { return *service_; }

  // The lifecycle every rvenc service has (gateway, enclave, proxy):
  // SIGINT / SIGTERM call stop(). Call before run() or start().
  void stop_on_signals();
  // Serves on the calling thread until stop().
  void run();
  // Serves on background threads; stop() then wait().
  void start();
  // Thread-safe: in-flight streams get the server's grace period.
  void stop();
  void wait();

 private:
  EnclaveServer() = default;
  EnclaveOptions options_;
  std::vector<std::string> warnings_;
  std::shared_ptr<http::HttpClient> upstream_client_;
  std::unique_ptr<EnclaveService> service_;
  std::unique_ptr<http::Server> server_;  // stops before the service goes
  // With rotation: rotates and retires keys on time even without traffic (KeyRing::maintain).
  // Declared last, so it stops first.
  std::jthread maintenance_;
};

}  // namespace rvenc::enclave
