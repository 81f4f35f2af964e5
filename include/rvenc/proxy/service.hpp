// The local OpenAI-compatible proxy (`rvenc proxy`, issue 7): OpenAI clients talk plain OpenAI to
// it on 127.0.0.1 with their rvenc API key as the OpenAI key; it encrypts each request for the
// attested enclave, sends it through the gateway, decrypts the reply and answers in OpenAI format.
//
//   rvenc::proxy::ProxyOptions options;
//   options.gateway_url = "http://127.0.0.1:8400";
//   options.platform_public_key = key;                       // to trust a simulated enclave
//   auto proxy = rvenc::proxy::ProxyServer::create(options);  // binds (port 0 picks one)
//   (*proxy)->start();  ...  (*proxy)->url();  ...  (*proxy)->stop(); (*proxy)->wait();
//
// Routes: POST /v1/chat/completions and /v1/completions (streaming and not), POST /v1/embeddings
// (docs/endpoints.md), POST /v1/responses (streaming and not; stored responses in a local
// ResponsesStore: GET and DELETE /v1/responses/{id}, docs/responses.md), GET /v1/models (the
// gateway's list) and /v1/models/{id},
// GET /healthz (and /health), GET /chat (the browser chat page, chat_page.hpp). Design: ProxyService holds the
// handlers (testable with http::RecordingWriter);
// ProxyServer binds them to an http::Server. The proxy serves on one io thread, so a key's cache
// entry is only ever touched by one coroutine at a time between suspension points.
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json/object.hpp>

#include "rvenc/client/client.hpp"
#include "rvenc/common/error.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "rvenc/http/server.hpp"
#include "rvenc/proxy/chat_page.hpp"
#include "rvenc/proxy/client_cache.hpp"
#include "rvenc/proxy/dek_store.hpp"
#include "rvenc/proxy/openai.hpp"
#include "rvenc/proxy/responses_store.hpp"

namespace rvenc::proxy {

struct ProxyOptions {
  static constexpr std::uint16_t kDefaultPort = 3000;
  // How long the gateway's model list is trusted before it is fetched again.
  static constexpr std::chrono::seconds kDefaultModelsTtl{30};

  std::string host = "127.0.0.1";
  std::uint16_t port = kDefaultPort;  // 0 picks a free port
  // Binding anything but a loopback address exposes decrypted traffic to the network.
  bool allow_remote = false;
  std::string gateway_url = std::string(client::kDefaultBaseUrl);
  std::string ca_file;  // PEM bundle verifying an https:// gateway (system trust store when empty)
  // Trust a "simulated" enclave signed by this platform key (hardware providers otherwise).
  std::optional<crypto::Ed25519PublicKey> platform_public_key;
  std::optional<std::vector<std::uint8_t>> measurement;  // require this measurement
  // Hardware evidence: the policy and roots (ClientOptions::hardware_policy / trust_anchors).
  attestation::Policy hardware_policy;
  std::optional<attestation::TrustAnchors> trust_anchors;
  // Accept attestation binding 1 (enclaves of older releases; notAfter not attested).
  bool allow_binding_v1 = false;
  protocol::Version protocol_version = protocol::Version::v3;
  // --shaping: the stream shaping the proxy's SDK asks for (nullopt: the enclave's default).
  std::optional<protocol::ShapingMode> shaping;
  std::optional<std::filesystem::path> dek_store;  // keep keys across restarts (mode 0600)
  CacheOptions cache;                              // client count, idle drop, DEK rotation
  std::chrono::milliseconds request_timeout = client::kDefaultRequestTimeout;
  std::chrono::seconds models_ttl = kDefaultModelsTtl;
  std::uint64_t body_limit = http::ServerOptions::kDefaultBodyLimit;
  // The built browser chat page served at /chat (chat_page.hpp; --chat-dir).
  std::filesystem::path chat_dir = default_chat_dir();
  // One line per request (http/access_log.hpp: method, path, status, duration, masked key); --quiet.
  bool access_log = true;
  // Responses kept for previous_response_id and GET/DELETE /v1/responses/{id} (memory only).
  ResponsesStoreOptions responses;
};

// True for "localhost" and loopback IP literals (127.0.0.0/8, ::1).
[[nodiscard]] bool is_loopback_host(std::string_view host);
// The SDK options the proxy's clients share (gateway, protocol, attestation policy, timeout).
[[nodiscard]] client::ClientOptions sdk_options(const ProxyOptions& options);

class ProxyService {
 public:
  // `store` (may be null) must outlive the service.
  ProxyService(const ProxyOptions& options, DekStore* store);

  http::awaitable<void> chat_completions(http::Request& request, http::ResponseWriter& writer);
  // POST /v1/responses: previous_response_id expanded from the local store, sealed with store
  // false; the answer kept locally when the caller asked for store (OpenAI's default).
  http::awaitable<void> responses(http::Request& request, http::ResponseWriter& writer);
  // GET /v1/responses/{id} (the stored response) and DELETE /v1/responses/{id}; 404 not_found
  // for an id this key has not stored.
  http::awaitable<void> stored_response(http::Request& request, http::ResponseWriter& writer);
  // POST /v1/completions (legacy, streaming and not) and POST /v1/embeddings (float and base64):
  // the same path as chat, through the SDK's client.completions / client.embeddings.
  http::awaitable<void> completions(http::Request& request, http::ResponseWriter& writer);
  http::awaitable<void> embeddings(http::Request& request, http::ResponseWriter& writer);
  // GET /v1/models (the gateway's list, fetched with the caller's key, so a wrong key gets 401/403;
  // a key the gateway accepted within models_ttl is answered from the list already fetched)
  // and GET /v1/models/{id} (the OpenAI SDK's models.retrieve): its entry, or 404 model_not_found.
  http::awaitable<void> models(http::Request& request, http::ResponseWriter& writer);
  http::awaitable<void> healthz(http::Request& request, http::ResponseWriter& writer);
  // The routes above (and GET /health, an alias of /healthz), and the chat page's (/chat, chat_page.hpp).
  [[nodiscard]] http::Router router();
  // router() plus GET /v1/models/{id}: what the server runs.
  [[nodiscard]] http::Handler handler();

  [[nodiscard]] ClientCache& cache() noexcept { return cache_; }
  [[nodiscard]] const ResponsesStore& stored_responses() const noexcept { return responses_; }

 private:
  // The cached client of the request's Bearer key, or the error to answer with (401 when absent).
  std::expected<std::shared_ptr<CachedClient>, ApiError> client_for(const http::Request& request);
  // nullopt when the gateway serves `model`; model_not_found (or the error fetching the list).
  http::awaitable<std::optional<ApiError>> check_model(CachedClient& entry, const std::string& model);
  http::awaitable<Result<boost::json::object>> fetch_models(CachedClient& entry);
  // check_model then the encryption keys for `model`: the client to call, or the error to answer.
  http::awaitable<std::optional<ApiError>> prepare_call(const http::Request& request,
                                                        std::shared_ptr<CachedClient>& entry, const std::string& model);
  // A failed call as answered: the gateway's headers kept, a refused key forgotten, 5xx logged.
  ApiError call_error(const http::Request& request, CachedClient& entry, const client::ResponseMeta& meta,
                      const Error& error);
  // Streams a Responses call's events to the caller (OpenAI's "event: <type>" SSE form).
  http::awaitable<void> stream_responses(http::Request& request, http::ResponseWriter& writer,
                                         std::shared_ptr<CachedClient>& entry, PreparedResponses& prepared);
  // One request of `endpoint`: key, model check, keys, then the SDK call (streamed when asked).
  http::awaitable<void> forward(http::Request& request, http::ResponseWriter& writer, protocol::Endpoint endpoint);
  // forward()'s call once the request was admitted: answered whole, or streamed chunk by chunk
  // (a client that leaves stops the call; an error mid-stream ends it with an error event, no [DONE]).
  http::awaitable<void> forward_once(http::Request& request, http::ResponseWriter& writer, protocol::Endpoint endpoint,
                                     std::shared_ptr<CachedClient>& entry, IncomingChat& chat);
  http::awaitable<void> forward_stream(http::Request& request, http::ResponseWriter& writer,
                                       protocol::Endpoint endpoint, std::shared_ptr<CachedClient>& entry,
                                       IncomingChat& chat);
  // The non-streaming SDK call of `endpoint`: the assembled object (embeddings: the list).
  static http::awaitable<Result<boost::json::object>> call_once(client::Client& client, protocol::Endpoint endpoint,
                                                                boost::json::object body, client::CallOptions call);

  ProxyOptions options_;
  ClientCache cache_;
  ChatPage chat_page_;
  ResponsesStore responses_;
  std::optional<boost::json::object> models_;
  std::int64_t models_fetched_at_ = 0;
};

class ProxyServer {
 public:
  // Checks the options (loopback unless allow_remote, gateway URL), opens the DEK store, binds.
  // invalid_request for bad options or a refused store; internal_error when the port cannot be bound.
  [[nodiscard]] static Result<std::unique_ptr<ProxyServer>> create(ProxyOptions options);
  ~ProxyServer();
  ProxyServer(const ProxyServer&) = delete;
  ProxyServer& operator=(const ProxyServer&) = delete;

  [[nodiscard]] std::uint16_t port() const;
  [[nodiscard]] std::string url() const;  // "http://HOST:PORT"; OpenAI clients use url() + "/v1"

  void start();  // serves on a background thread
  void run();    // serves on the calling thread until stop()
  void stop();   // thread-safe: in-flight requests get the server's grace period
  void wait();   // after start(): until the thread ended; then flushes the DEK store
  void stop_on_signals();  // SIGINT/SIGTERM -> stop(); call before run()/start()

  [[nodiscard]] ProxyService& service() noexcept { return *service_; }

 private:
  ProxyServer() = default;
  void flush_store();

  std::unique_ptr<DekStore> store_;
  std::unique_ptr<ProxyService> service_;
  std::unique_ptr<http::Server> server_;
};

}  // namespace rvenc::proxy
