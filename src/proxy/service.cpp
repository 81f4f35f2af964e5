#include "rvenc/proxy/service.hpp"

#include <charconv>

#include <boost/asio/ip/address.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include "rvenc/common/auth.hpp"
#include "rvenc/http/access_log.hpp"
#include "rvenc/http/url.hpp"
#include "rvenc/protocol/responses.hpp"
#include "rvenc/protocol/sse.hpp"

namespace rvenc::proxy {

namespace json = boost::json;
namespace bhttp = boost::beast::http;

namespace {

// How soon a miss may refetch the model list (a model added to the enclave shows up quickly,
// a stream of requests for an unknown model does not hammer the gateway).
constexpr std::int64_t kModelsMissRefetchSeconds = 2;

ApiError missing_key_error() {
  ApiError error;
  error.status = 401;
  error.type = "authentication_error";
  error.code = "invalid_api_key";
  error.message = "Missing API key: send your rvenc API key as `Authorization: Bearer sk_…` (the OpenAI API key setting)";
  return error;
}

void add_headers(http::Fields& fields, const std::vector<std::pair<std::string, std::string>>& headers) {
  for (const auto& [name, value] : headers) fields.set(name, value);
}

http::Response error_reply(const http::Request& request, const ApiError& error) {
  http::Response response = http::json_response(error.status, error_json(error));
  add_headers(response.base(), error.headers);
  response.version(request.version());
  response.keep_alive(request.keep_alive());
  return response;
}

http::Response json_reply(const http::Request& request, unsigned status, std::string body,
                          const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  http::Response response = http::json_response(status, std::move(body));
  add_headers(response.base(), headers);
  response.version(request.version());
  response.keep_alive(request.keep_alive());
  return response;
}

constexpr std::string_view kModelPathPrefix = "/v1/models/";
constexpr std::string_view kResponsesPathPrefix = "/v1/responses/";

bool lists_model(const json::object& list, std::string_view model) {
  const auto* data = list.if_contains("data");
  if (data == nullptr || !data->is_array()) return false;
  for (const auto& item : data->get_array()) {
    if (!item.is_object()) continue;
    const auto* id = item.get_object().if_contains("id");
    if (id != nullptr && id->is_string() && id->get_string() == model) return true;
  }
  return false;
}

// SDK call options that keep the gateway's answer head (status, headers) in `meta`, which must
// outlive the call: errors and replies pass its headers on.
client::CallOptions recording_meta(client::ResponseMeta& meta) {
  client::CallOptions call;
  call.on_response = [&meta](const client::ResponseMeta& m) { meta = m; };
  return call;
}

}  // namespace

bool is_loopback_host(std::string_view host) {
  if (host == "localhost") return true;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(std::string(host), ec);
  return !ec && address.is_loopback();
}

client::ClientOptions sdk_options(const ProxyOptions& options) {
  client::ClientOptions sdk;
  sdk.base_url = options.gateway_url;
  sdk.ca_file = options.ca_file;
  sdk.protocol_version = options.protocol_version;
  sdk.shaping = options.shaping;
  sdk.request_timeout = options.request_timeout;
  sdk.hardware_policy = options.hardware_policy;
  sdk.trust_anchors = options.trust_anchors;
  sdk.attestation.allowed_providers = options.hardware_policy.providers;
  if (options.platform_public_key) {
    sdk.attestation.simulated_platform_key = options.platform_public_key;
    sdk.attestation.allowed_providers.push_back("simulated");
  }
  if (options.measurement) sdk.attestation.expected_measurement = options.measurement;
  if (options.allow_binding_v1) sdk.attestation.min_binding = protocol::Binding::v1;
  return sdk;
}

ProxyService::ProxyService(const ProxyOptions& options, DekStore* store)
    : options_(options),
      cache_(options.cache, sdk_options(options), store),
      chat_page_(ChatPageOptions{.dir = options.chat_dir,
                                 .gateway_url = options.gateway_url,
                                 .platform_public_key = options.platform_public_key,
                                 .measurement = options.measurement,
                                 .protocol_version = options.protocol_version}),
      responses_(options.responses) {}

http::Router ProxyService::router() {
  http::Router router;
  router.post("/v1/chat/completions", [this](http::Request& r, http::ResponseWriter& w) { return chat_completions(r, w); });
  router.post("/v1/completions", [this](http::Request& r, http::ResponseWriter& w) { return completions(r, w); });
  router.post("/v1/embeddings", [this](http::Request& r, http::ResponseWriter& w) { return embeddings(r, w); });
  router.post("/v1/responses", [this](http::Request& r, http::ResponseWriter& w) { return responses(r, w); });
  router.get("/v1/models", [this](http::Request& r, http::ResponseWriter& w) { return models(r, w); });
  router.get("/healthz", [this](http::Request& r, http::ResponseWriter& w) { return healthz(r, w); });
  chat_page_.add_routes(router);
  router.get("/health", [this](http::Request& r, http::ResponseWriter& w) { return healthz(r, w); });
  return router;
}

http::Handler ProxyService::handler() {
  return [this, routes = router()](http::Request& request, http::ResponseWriter& writer) -> http::awaitable<void> {
    const std::string_view path = http::target_path(request);
    if (request.method() == http::Verb::get && path.starts_with(kModelPathPrefix) && path.size() > kModelPathPrefix.size())
      return models(request, writer);
    if ((request.method() == http::Verb::get || request.method() == http::Verb::delete_) &&
        path.starts_with(kResponsesPathPrefix) && path.size() > kResponsesPathPrefix.size())
      return stored_response(request, writer);
    return routes(request, writer);
  };
}

std::expected<std::shared_ptr<CachedClient>, ApiError> ProxyService::client_for(const http::Request& request) {
  const auto key = bearer_token(request[bhttp::field::authorization]);
  if (!key) return std::unexpected(missing_key_error());
  auto entry = cache_.get(std::string(*key), unix_now());
  if (!entry) return std::unexpected(api_error(entry.error()));
  return *entry;
}

http::awaitable<Result<json::object>> ProxyService::fetch_models(CachedClient& entry) {
  auto list = co_await entry.client.async_models();
  if (list) {
    models_ = *list;
    models_fetched_at_ = unix_now();
  }
  co_return list;
}

http::awaitable<std::optional<ApiError>> ProxyService::check_model(CachedClient& entry, const std::string& model) {
  const std::int64_t age = unix_now() - models_fetched_at_;
  if (!models_ || age >= options_.models_ttl.count() ||
      (!lists_model(*models_, model) && age >= kModelsMissRefetchSeconds)) {
    if (auto list = co_await fetch_models(entry); !list) co_return api_error(list.error());
  }
  if (lists_model(*models_, model)) co_return std::nullopt;
  co_return model_not_found(model);
}

http::awaitable<void> ProxyService::healthz(http::Request& request, http::ResponseWriter& writer) {
  co_await writer.send(json_reply(request, 200, R"({"status":"ok"})"));
}

http::awaitable<void> ProxyService::models(http::Request& request, http::ResponseWriter& writer) {
  auto entry = client_for(request);
  if (!entry) {
    co_await writer.send(error_reply(request, entry.error()));
    co_return;
  }
  // The key was checked by the gateway (which answers /rvenc/models with 401/403 for a wrong key)
  // within models_ttl: the cached list answers. Otherwise the list is fetched with this key.
  const std::int64_t now = unix_now();
  if (!models_ || (*entry)->models_checked_at == 0 || now - (*entry)->models_checked_at >= options_.models_ttl.count()) {
    auto list = co_await fetch_models(**entry);
    if (!list) {
      if (list.error().http_status == 401 || list.error().http_status == 403) cache_.forget(**entry);
      co_await writer.send(error_reply(request, api_error(list.error())));
      co_return;
    }
    (*entry)->models_checked_at = now;
  }
  const json::object* list = &*models_;  // set by fetch_models(); one io thread, no suspension since
  const std::string_view path = http::target_path(request);
  if (!path.starts_with(kModelPathPrefix)) {
    co_await writer.send(json_reply(request, 200, json::serialize(*list)));
    co_return;
  }
  // GET /v1/models/{id}: the list's entry (model ids may hold '/', so the rest of the path).
  const std::string id(path.substr(kModelPathPrefix.size()));
  if (const auto* data = list->if_contains("data"); data != nullptr && data->is_array()) {
    for (const auto& item : data->get_array()) {
      const auto* found = item.is_object() ? item.get_object().if_contains("id") : nullptr;
      if (found == nullptr || !found->is_string() || found->get_string() != id) continue;
      co_await writer.send(json_reply(request, 200, json::serialize(item)));
      co_return;
    }
  }
  co_await writer.send(error_reply(request, model_not_found(id)));
}

http::awaitable<std::optional<ApiError>> ProxyService::prepare_call(const http::Request& request,
                                                                    std::shared_ptr<CachedClient>& entry,
                                                                    const std::string& model) {
  if (auto refused = co_await check_model(*entry, model)) {
    if (refused->status == 401 || refused->status == 403) cache_.forget(*entry);
    co_return refused;
  }
  if (auto ready = co_await cache_.prepare_keys(entry, model, unix_now()); !ready) {
    spdlog::warn("proxy: cannot make encryption keys for key {}: {}", mask_secret(request[bhttp::field::authorization]),
                 ready.error().to_string());
    co_return api_error(ready.error());
  }
  co_return std::nullopt;
}

ApiError ProxyService::call_error(const http::Request& request, CachedClient& entry, const client::ResponseMeta& meta,
                                  const Error& error) {
  ApiError out = api_error(error);
  out.headers = meta.headers;
  if (out.status == 401 || out.status == 403) cache_.forget(entry);
  if (out.status >= 500)
    spdlog::warn("proxy: request for key {} failed: {}", mask_secret(request[bhttp::field::authorization]),
                 error.to_string());
  return out;
}

http::awaitable<void> ProxyService::chat_completions(http::Request& request, http::ResponseWriter& writer) {
  co_await forward(request, writer, protocol::Endpoint::chat_completions);
}

http::awaitable<void> ProxyService::completions(http::Request& request, http::ResponseWriter& writer) {
  co_await forward(request, writer, protocol::Endpoint::completions);
}

http::awaitable<void> ProxyService::embeddings(http::Request& request, http::ResponseWriter& writer) {
  co_await forward(request, writer, protocol::Endpoint::embeddings);
}

http::awaitable<Result<json::object>> ProxyService::call_once(client::Client& client, protocol::Endpoint endpoint,
                                                              json::object body, client::CallOptions call) {
  switch (endpoint) {
    case protocol::Endpoint::completions:
      co_return co_await client.completions.async_create(std::move(body), std::move(call));
    case protocol::Endpoint::embeddings:
      co_return co_await client.embeddings.async_create(std::move(body), std::move(call));
    default:
      co_return co_await client.chat.completions.async_create(std::move(body), std::move(call));
  }
}

http::awaitable<void> ProxyService::forward(http::Request& request, http::ResponseWriter& writer,
                                            protocol::Endpoint endpoint) {
  auto entry = client_for(request);
  if (!entry) {
    co_await writer.send(error_reply(request, entry.error()));
    co_return;
  }
  auto chat = parse_incoming_request(request.body(), endpoint);
  if (!chat) {
    co_await writer.send(error_reply(request, api_error(chat.error())));
    co_return;
  }
  if (auto refused = co_await prepare_call(request, *entry, chat->model)) {
    co_await writer.send(error_reply(request, *refused));
    co_return;
  }

  if (!chat->stream) {
    co_await forward_once(request, writer, endpoint, *entry, *chat);
    co_return;
  }
  co_await forward_stream(request, writer, endpoint, *entry, *chat);
}

http::awaitable<void> ProxyService::forward_once(http::Request& request, http::ResponseWriter& writer,
                                                 protocol::Endpoint endpoint, std::shared_ptr<CachedClient>& entry,
                                                 IncomingChat& chat) {
  client::ResponseMeta meta;
  const client::CallOptions call = recording_meta(meta);
  auto completion = co_await call_once(entry->client, endpoint, std::move(chat.body), call);
  if (!completion) {
    co_await writer.send(error_reply(request, call_error(request, *entry, meta, completion.error())));
    co_return;
  }
  cache_.confirm(*entry, chat.model);
  std::string body;
  if (endpoint == protocol::Endpoint::embeddings) {
    body = json::serialize(*completion);
  } else {
    const bool text = endpoint == protocol::Endpoint::completions;
    body = completion_json(std::move(*completion), text ? "text_completion" : "chat.completion");
  }
  co_await writer.send(json_reply(request, 200, std::move(body), meta.headers));
}

http::awaitable<void> ProxyService::forward_stream(http::Request& request, http::ResponseWriter& writer,
                                                   protocol::Endpoint endpoint, std::shared_ptr<CachedClient>& entry,
                                                   IncomingChat& chat) {
  client::ResponseMeta meta;
  const client::CallOptions call = recording_meta(meta);
  const auto fail_with = [&](const Error& error) { return call_error(request, *entry, meta, error); };
  const bool text = endpoint == protocol::Endpoint::completions;
  StreamShaper shaper(chat.include_usage, text ? "text_completion" : "chat.completion.chunk");
  const auto open_stream = [&]() -> http::awaitable<bool> {
    http::ResponseHeader header = http::event_stream_header(200);
    add_headers(header, meta.headers);
    co_return co_await writer.begin_stream(std::move(header));
  };
  // Each decrypted chunk goes to the client at once; a client that left stops the call, which
  // closes the gateway connection so the enclave stops generating.
  client::AsyncChunkHandler on_chunk = [&](const client::Chunk& chunk) -> http::awaitable<Status> {
    if (!writer.started() && !co_await open_stream()) co_return fail(Errc::transport_error, "the client disconnected");
    const std::string event = shaper.chunk(chunk.object);
    if (!co_await writer.write(event)) co_return fail(Errc::transport_error, "the client disconnected");
    co_return Status{};
  };
  Status status;
  if (text) {
    status = co_await entry->client.completions.async_create(std::move(chat.body), on_chunk, call);
  } else {
    status = co_await entry->client.chat.completions.async_create(std::move(chat.body), on_chunk, call);
  }
  if (status) cache_.confirm(*entry, chat.model);
  if (writer.client_gone()) co_return;
  if (!status && !writer.started()) {
    co_await writer.send(error_reply(request, fail_with(status.error())));
    co_return;
  }
  if (!writer.started() && !co_await open_stream()) co_return;
  // After an error mid-stream, no [DONE]: official clients raise on the error object instead of
  // ending quietly with half an answer.
  // (A named string, not a ternary temporary: GCC 12 destroys those twice across co_await.)
  std::string tail;
  if (status) {
    tail = shaper.finish();
  } else {
    tail = stream_error_event(fail_with(status.error()));
  }
  co_await writer.write(tail);
  co_await writer.end_stream();
}

// --- POST /v1/responses, GET/DELETE /v1/responses/{id} -------------------------------------------

http::awaitable<void> ProxyService::responses(http::Request& request, http::ResponseWriter& writer) {
  auto entry = client_for(request);
  if (!entry) {
    co_await writer.send(error_reply(request, entry.error()));
    co_return;
  }
  const auto owner = ResponsesStore::owner_of(bearer_token(request[bhttp::field::authorization]).value_or(""));
  auto prepared = prepare_responses_request(request.body(), responses_, owner);
  if (!prepared) {
    co_await writer.send(error_reply(request, api_error(prepared.error())));
    co_return;
  }
  if (auto refused = co_await prepare_call(request, *entry, prepared->model)) {
    co_await writer.send(error_reply(request, *refused));
    co_return;
  }
  if (prepared->stream) {
    // (References, not by-value temporaries: GCC 12 may destroy those twice across co_await.)
    co_await stream_responses(request, writer, *entry, *prepared);
    co_return;
  }
  client::ResponseMeta meta;
  const client::CallOptions call = recording_meta(meta);
  auto response = co_await (*entry)->client.responses.async_create(prepared->body, call);
  if (!response) {
    co_await writer.send(error_reply(request, call_error(request, **entry, meta, response.error())));
    co_return;
  }
  cache_.confirm(**entry, prepared->model);
  restore_request_fields(*response, *prepared);
  std::string body = json::serialize(*response);
  if (prepared->store) responses_.put(owner, std::move(prepared->input), std::move(*response));
  co_await writer.send(json_reply(request, 200, std::move(body), meta.headers));
}

http::awaitable<void> ProxyService::stream_responses(http::Request& request, http::ResponseWriter& writer,
                                                     std::shared_ptr<CachedClient>& entry, PreparedResponses& prepared) {
  const auto owner = ResponsesStore::owner_of(bearer_token(request[bhttp::field::authorization]).value_or(""));
  client::ResponseMeta meta;
  const client::CallOptions call = recording_meta(meta);
  std::optional<json::object> final_response;
  std::int64_t next_sequence = 0;
  // Each decrypted event goes to the caller at once, in OpenAI's form ("event: <type>").
  client::AsyncChunkHandler on_event = [&](const client::Chunk& chunk) -> http::awaitable<Status> {
    if (!writer.started()) {
      http::ResponseHeader header = http::event_stream_header(200);
      add_headers(header, meta.headers);
      if (!co_await writer.begin_stream(std::move(header))) co_return fail(Errc::transport_error, "the client left");
    }
    json::object event = chunk.object;
    if (auto* response = event.if_contains("response"); response != nullptr && response->is_object())
      restore_request_fields(response->get_object(), prepared);
    if (auto terminal = protocol::terminal_response(event)) final_response = std::move(*terminal);
    if (const auto* n = event.if_contains("sequence_number"); n != nullptr && n->is_int64())
      next_sequence = n->get_int64() + 1;
    const auto* type = event.if_contains("type");
    const std::string text = protocol::format_event(type != nullptr && type->is_string() ? std::string_view(type->get_string()) : "",
                                                    json::serialize(event));
    if (!co_await writer.write(text)) co_return fail(Errc::transport_error, "the client disconnected");
    co_return Status{};
  };
  auto status = co_await entry->client.responses.async_create(prepared.body, on_event, call);
  if (status) cache_.confirm(*entry, prepared.model);
  if (final_response && prepared.store && final_response->at("status") != "failed")
    responses_.put(owner, std::move(prepared.input), std::move(*final_response));
  if (writer.client_gone()) co_return;
  if (!status && !writer.started()) {
    co_await writer.send(error_reply(request, call_error(request, *entry, meta, status.error())));
    co_return;
  }
  if (!status && !final_response) {
    // Broken before the enclave's own error events: OpenAI's stream error event.
    const ApiError error = call_error(request, *entry, meta, status.error());
    const std::string text = protocol::format_event(
        "error", json::serialize(json::object{{"type", "error"}, {"code", error.code}, {"message", error.message},
                                              {"param", nullptr}, {"sequence_number", next_sequence}}));
    co_await writer.write(text);
  }
  co_await writer.end_stream();
}

http::awaitable<void> ProxyService::stored_response(http::Request& request, http::ResponseWriter& writer) {
  auto entry = client_for(request);
  if (!entry) {
    co_await writer.send(error_reply(request, entry.error()));
    co_return;
  }
  const auto owner = ResponsesStore::owner_of(bearer_token(request[bhttp::field::authorization]).value_or(""));
  const std::string id(http::target_path(request).substr(kResponsesPathPrefix.size()));
  const bool remove = request.method() == http::Verb::delete_;
  if (const auto* found = responses_.find(owner, id); found != nullptr) {
    std::string body = remove ? json::serialize(json::object{{"id", id}, {"object", "response.deleted"}, {"deleted", true}})
                              : json::serialize(*found);
    if (remove) responses_.erase(owner, id);
    co_await writer.send(json_reply(request, 200, std::move(body)));
    co_return;
  }
  ApiError error = api_error(Error{Errc::not_found, "No stored response with this id (responses are kept by this rvenc "
                                                    "proxy, in memory, when created with store: true)"});
  co_await writer.send(error_reply(request, error));
}

// --- ProxyServer ----------------------------------------------------------------------------

Result<std::unique_ptr<ProxyServer>> ProxyServer::create(ProxyOptions options) {
  if (!is_loopback_host(options.host) && !options.allow_remote)
    return fail(Errc::invalid_request, "refusing to listen on " + options.host +
                                           ": the proxy exposes decrypted traffic to the network; use a loopback "
                                           "address (127.0.0.1) or pass --allow-remote");
  if (auto url = http::parse_url(options.gateway_url); !url)
    return fail(Errc::invalid_request, "--gateway: " + url.error().message);
  if (options.cache.max_clients == 0) return fail(Errc::invalid_request, "the client cache needs room for one client");

  std::unique_ptr<ProxyServer> proxy(new ProxyServer());
  if (options.dek_store) {
    auto store = DekStore::open(*options.dek_store);
    if (!store) return std::unexpected(store.error());
    proxy->store_ = std::move(*store);
  }
  proxy->service_ = std::make_unique<ProxyService>(options, proxy->store_.get());

  http::ServerOptions server_options;
  server_options.host = options.host;
  server_options.port = options.port;
  server_options.body_limit = options.body_limit;
  server_options.threads = 1;  // see service.hpp: cache entries are used from one thread
  server_options.server_name = "rvenc-proxy";
  auto handler = proxy->service_->handler();
  if (options.access_log) handler = http::with_access_log(std::move(handler));
  auto server = http::Server::create(server_options, std::move(handler));
  if (!server) return std::unexpected(server.error());
  proxy->server_ = std::move(*server);
  if (!is_loopback_host(options.host))
    spdlog::warn("proxy: listening on {} (--allow-remote): decrypted traffic is exposed to the network", options.host);
  return proxy;
}

ProxyServer::~ProxyServer() {
  if (server_) {
    server_->stop(std::chrono::milliseconds{0});
    server_->wait();
  }
  flush_store();
  // The SDK clients' pooled connections belong to the server's io_context: release them first.
  service_.reset();
  server_.reset();
}

std::uint16_t ProxyServer::port() const { return server_->port(); }
std::string ProxyServer::url() const { return server_->url(); }
void ProxyServer::start() { server_->start(); }
void ProxyServer::run() {
  server_->run();
  flush_store();
}
void ProxyServer::stop() { server_->stop(); }
void ProxyServer::wait() {
  server_->wait();
  flush_store();
}
void ProxyServer::stop_on_signals() { server_->stop_on_signals(); }

void ProxyServer::flush_store() {
  if (!service_) return;
  if (auto ok = service_->cache().flush(); !ok)
    spdlog::warn("proxy: cannot write the DEK store: {}", ok.error().to_string());
}

}  // namespace rvenc::proxy
