// The gateway: authenticates API keys, checks and rate-limits requests, and passes the
// end-to-end encrypted traffic through to the enclaves byte for byte. It never holds a key that
// can decrypt anything; it sees envelopes, keyIds, sizes, timing and the enclave's token counts.
//
// Design: GatewayHandler is the whole request logic as an http::Handler (testable with
// http::RecordingWriter); what it uses is built once apart from it (GatewayServices, the
// composition root in services.cpp); Gateway runs it on an http::Server with the background work
// (key cache invalidation poll, enclave health checks) and stops everything on SIGINT/SIGTERM.
// /healthz (and /health) answers everyone with {"status": "ok"|"degraded"|"unavailable"}; its
// details (enclave URLs, keyIds, errors) and /metrics need the admin token when one is set
// (GatewayOptions::admin_token_hash), else they are public.
// Several enclaves (PROTOCOL.md section 7): GET /rvenc/models is the union of what the healthy
// enclaves serve (from their attestation documents, answered by the gateway itself); GET
// /rvenc/attestation?challenge=HEX[&model=NAME][&all=1] is forwarded to one healthy enclave
// serving NAME chosen for load (EnclavePool::choose), or with all=1 to each of them, answered as
// {"enclaves": [document, ...]}; chat requests go by keyId, and an enclave that is down or fails
// before any event is 503 enclave_unavailable (the client re-attests and re-sends once).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "rvenc/crypto/secret.hpp"
#include "rvenc/gateway/traffic_recorder.hpp"
#include "rvenc/gateway/cors.hpp"
#include "rvenc/gateway/enclave_pool.hpp"
#include "rvenc/gateway/key_cache.hpp"
#include "rvenc/gateway/metrics.hpp"
#include "rvenc/gateway/middleware.hpp"
#include "rvenc/gateway/rate_limiter.hpp"
#include "rvenc/gateway/usage.hpp"
#include "rvenc/http/client.hpp"
#include "rvenc/http/mux.hpp"
#include "rvenc/http/server.hpp"
#include "rvenc/protocol/chat.hpp"

namespace rvenc::gateway {

inline constexpr std::uint64_t kDefaultMaxBody = 8u * 1024 * 1024;
inline constexpr std::size_t kMaxHeaderBytes = 16u * 1024;
inline constexpr std::chrono::milliseconds kUpstreamConnectTimeout{5'000};
// Longest silence allowed from an enclave mid-request (a model may think for a while).
inline constexpr std::chrono::milliseconds kUpstreamIdleTimeout{120'000};
// An enclave's error answer (before its stream) is passed through up to this size.
inline constexpr std::size_t kMaxUpstreamErrorBody = 1u * 1024 * 1024;
// Each open stream holds a client connection and an enclave connection.
inline constexpr std::size_t kDefaultMaxConnections = 4096;
// Client connections at once from one address (loopback exempt unless set explicitly).
inline constexpr std::size_t kDefaultMaxConnectionsPerIp = 256;
// GET /rvenc/attestation a minute per client address without an API key (the burst, too).
inline constexpr std::int64_t kDefaultAttestationPerMinute = 60;
// Usage row status for a client that went away mid-stream (nginx's convention).
inline constexpr int kStatusClientClosed = 499;

struct GatewayOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::vector<http::Url> enclaves;  // the first is the default (v1) enclave
  std::string db_path;  // the store: a SQLite path, or postgresql://… (store::parse_store_location)
  store::StoreOptions store;  // its pool, timeouts and (PostgreSQL) usage journal directory
  StoreFailure store_failure;  // cached keys while the store cannot be reached (key_cache.hpp)
  std::string enclave_token;  // sent as "Authorization: Bearer" to the enclaves; empty = none
  std::string enclave_ca_file;  // PEM bundle verifying https:// enclaves (system trust store when empty)
  // Streams to an enclave share a few connections (rvenc-mux/1, http/mux.hpp), with HTTP/1.1 for
  // enclaves that refuse it; false: one HTTP/1.1 connection per stream.
  bool enclave_mux = true;
  std::uint64_t max_body = kDefaultMaxBody;
  // One info line per request: method, path, status, duration, key masked to its last 4 characters
  // (never content). The CLI's --quiet turns it off.
  bool access_log = true;
  std::chrono::milliseconds upstream_idle_timeout = kUpstreamIdleTimeout;
  std::chrono::milliseconds read_timeout = http::ServerOptions::kDefaultReadTimeout;
  std::chrono::milliseconds idle_timeout = http::ServerOptions::kDefaultIdleTimeout;
  std::chrono::milliseconds first_byte_timeout = http::ServerOptions::kDefaultFirstByteTimeout;
  std::chrono::milliseconds header_timeout = http::ServerOptions::kDefaultHeaderTimeout;
  // https on the listener (http::ServerOptions::tls; SIGHUP reloads it); null: plain http.
  std::shared_ptr<http::TlsServerContext> tls;
  std::chrono::milliseconds tls_handshake_timeout = http::ServerOptions::kDefaultTlsHandshakeTimeout;
  std::size_t max_connections = kDefaultMaxConnections;  // client connections; beyond -> 503
  std::size_t max_connections_per_ip = kDefaultMaxConnectionsPerIp;  // 0: no cap; beyond -> 429
  bool per_ip_cap_loopback = false;  // count loopback clients too (the flag was given)
  std::vector<http::Cidr> trusted_proxies;  // load balancers (http::ServerOptions::trusted_proxies)
  // Unauthenticated attestation requests a minute per client address; at least twice the number
  // of enclaves is allowed (a client may attest each one). 0: no limit.
  std::int64_t attestation_per_minute = kDefaultAttestationPerMinute;
  // SHA-256 of the admin token: /healthz details and /metrics need it. nullopt: they are public.
  std::optional<crypto::Sha256Digest> admin_token_hash;
  // How often the enclaves' health is checked (GET /healthz; attestation only for a new keyId).
  std::chrono::milliseconds health_interval = kDefaultHealthInterval;
  // Limits shared with other gateways (RedisRateLimiter); null: this process's own buckets.
  std::shared_ptr<RateLimiter> rate_limiter;
  // Browser origins allowed to call the chat, models and attestation routes (--cors-origin);
  // empty: no CORS answers at all (cors.hpp).
  CorsPolicy cors;
  // --record-traffic: each stream's event sizes and times, for rvenc bench traffic; null: none.
  std::shared_ptr<TrafficRecorder> traffic_recorder;
};

struct GatewayServices;  // services.hpp (private): the parts built once per process

class GatewayHandler {
 public:
  // Builds the services (GatewayServices::build: the store's two handles, limiters, enclave pool).
  [[nodiscard]] static Result<std::unique_ptr<GatewayHandler>> create(GatewayOptions options);
  ~GatewayHandler();

  http::awaitable<void> handle(http::Request& request, http::ResponseWriter& writer);
  // An http::Handler calling handle() (the handler must outlive the server).
  [[nodiscard]] http::Handler handler();

  // Starts the key-cache poll and the attestation refresh loops on `executor`.
  void start_background(boost::asio::any_io_executor executor);
  // Cancels them (thread-safe; they end on their executor).
  void stop_background();

  [[nodiscard]] EnclavePool& enclaves() noexcept;
  // The API key cache (revocation subscribers make it re-read the database).
  [[nodiscard]] KeyCache& keys() noexcept;
  [[nodiscard]] Metrics& metrics() noexcept;
  [[nodiscard]] UsageRecorder& usage() noexcept;
  [[nodiscard]] const GatewayOptions& options() const noexcept;

 private:
  explicit GatewayHandler(std::unique_ptr<GatewayServices> services);

  // The gateway's routes, named once (gateway.cpp): the allow list and dispatch both read it.
  struct Route {
    std::string_view path;
    http::Verb method;
    http::awaitable<void> (GatewayHandler::*serve)(RequestContext&, http::ResponseWriter&);
  };
  [[nodiscard]] static std::span<const Route> routes() noexcept;
  // Routes one request (handle() wraps the writer first for an allowed CORS origin).
  http::awaitable<void> dispatch(http::Request& request, http::ResponseWriter& writer);
  http::awaitable<void> serve_health(RequestContext& context, http::ResponseWriter& writer);
  http::awaitable<void> serve_metrics(RequestContext& context, http::ResponseWriter& writer);
  http::awaitable<void> serve_models(RequestContext& context, http::ResponseWriter& writer);

  // POST /rvenc/chat/completions, in four units that read top to bottom (gateway.cpp):
  // admit_chat -> open_upstream -> relay_chat -> settle_charge.
  struct Upstream;  // an open enclave stream for one request
  struct Relay;     // one event stream being relayed
  http::awaitable<void> serve_chat(RequestContext& context, http::ResponseWriter& writer);
  // Admission: body size, API key, envelope, concurrent streams, rate limit (chat_steps_);
  // an answer when the request is refused.
  http::awaitable<StepResult> admit_chat(RequestContext& context);
  // Routes by keyId and opens the enclave stream; false when it answered the client (no enclave,
  // a transport failure).
  http::awaitable<bool> open_upstream(RequestContext& context, http::ResponseWriter& writer, Upstream& upstream);
  // Relays the enclave's event stream, or passes its refusal through; returns the tokens charged.
  http::awaitable<std::int64_t> relay_chat(RequestContext& context, http::ResponseWriter& writer, Upstream& upstream);
  // An enclave's answer before any event (an error): passed through with its status and body.
  http::awaitable<void> pass_refusal(RequestContext& context, http::ResponseWriter& writer,
                                     http::ResponseStream& stream);
  // The relay of an event stream: its start, its events, its held end (see Relay::ending).
  http::awaitable<protocol::Usage> relay_stream(RequestContext& context, http::ResponseWriter& writer,
                                                Upstream& upstream);
  http::awaitable<void> relay_events(Relay& relay);
  void note_progress(Relay& relay, std::string_view forward);
  http::awaitable<protocol::Usage> end_relay(Relay& relay);
  // The usage a relay is charged (billed_usage), written to its usage row and the traffic record.
  http::awaitable<protocol::Usage> record_usage(Relay& relay);
  // Settles the request's token reservation with what it used.
  http::awaitable<void> settle_charge(RequestContext& context, std::int64_t used);

  // GET /rvenc/attestation (discovery.cpp): one enclave's document, or every replica's (all=1).
  http::awaitable<void> serve_attestation(RequestContext& context, http::ResponseWriter& writer);
  http::awaitable<void> serve_all_attestations(RequestContext& context, http::ResponseWriter& writer,
                                               const std::optional<std::string>& model,
                                               const protocol::Challenge& challenge);
  // GET /rvenc/models: the union of the healthy enclaves' models.
  [[nodiscard]] http::Response models_response(const RequestContext& context) const;
  // GET `target` from one enclave (bounded by kForwardGetTimeout); a connection failure marks it down.
  http::awaitable<Result<http::Response>> get_from(const http::Url& url, const std::string& target);
  http::awaitable<void> send(RequestContext& context, http::ResponseWriter& writer, http::Response response);
  // /healthz and /health: the public status, or with the admin token the details.
  [[nodiscard]] http::Response health(const RequestContext& context) const;
  [[nodiscard]] http::Response metrics_response(const RequestContext& context) const;
  // The access log line of a finished request (GatewayOptions::access_log).
  void log_access(const RequestContext& context) const;
  // Whether the request may see the details (no admin token configured, or it shows it).
  [[nodiscard]] bool admin_allowed(const http::Request& request) const;

  std::unique_ptr<GatewayServices> services_;
  std::vector<Step> chat_steps_;
  std::vector<Step> get_steps_;
};

class Gateway {
 public:
  // Opens the database and binds the listening socket (nothing is served before start()).
  [[nodiscard]] static Result<std::unique_ptr<Gateway>> create(GatewayOptions options);
  ~Gateway();

  [[nodiscard]] std::string url() const { return server_->url(); }
  [[nodiscard]] GatewayHandler& handler() noexcept { return *handler_; }

  // The lifecycle every rvenc service has (gateway, enclave, proxy): stop_on_signals(), then run()
  // (serves until stop()) or start() ... stop(), wait().
  // Serves on background threads, with the key poll and attestation refresh running.
  void start();
  // start(), then blocks until stop().
  void run();
  // Fetches every enclave's attestation now and waits for the answers (after start()).
  void refresh_enclaves();
  // SIGINT / SIGTERM call stop(). Call before run() or start().
  void stop_on_signals();
  // Thread-safe: stops the background work, lets in-flight streams finish (server grace), stops.
  void stop();
  // Blocks until the server has stopped.
  void wait();

 private:
  Gateway() = default;
  std::unique_ptr<GatewayHandler> handler_;  // declared first: outlives the server
  std::unique_ptr<http::Server> server_;
};

}  // namespace rvenc::gateway
