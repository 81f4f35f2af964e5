#include "rvenc/gateway/gateway.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include "forwarding.hpp"
#include "rvenc/common/auth.hpp"
#include "rvenc/common/clock.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/gateway/sse_relay.hpp"
#include "rvenc/http/access_log.hpp"
#include "rvenc/protocol/attestation.hpp"
#include "rvenc/protocol/envelope.hpp"
#include "rvenc/protocol/sse.hpp"

namespace rvenc::gateway {
namespace {

namespace asio = boost::asio;
namespace beast_http = boost::beast::http;

constexpr std::chrono::milliseconds kForwardGetTimeout{30'000};
constexpr std::string_view kPrometheusContentType = "text/plain; version=0.0.4";

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// The one plain event the gateway itself sends when the enclave connection breaks mid-stream.
std::string upstream_broken_event() {
  // PROTOCOL.md section 4 names its type "upstream_error" (not the table's "api_error").
  return protocol::format_event("error", openai_error_json("the connection to the enclave broke mid-stream",
                                                           "upstream_error", "upstream_error", kErrorSource));
}

}  // namespace

// A transport failure talking to an enclave before any event, as the client sees it: 504 when
// it did not answer in time (it may be generating: not to be re-sent), else 503
// enclave_unavailable (the client re-attests and re-sends once, PROTOCOL.md section 7).
Error upstream_failure(const Error& error) {
  if (error.code == Errc::upstream_timeout) return Error{Errc::upstream_timeout, "the enclave did not answer in time"};
  return Error{Errc::enclave_unavailable, "the enclave is not reachable; fetch the attestation again"};
}

http::Response pass_through(const http::Request& request, const http::ResponseHeader& header, std::string body) {
  http::Response response{header.result(), http::kHttp11};
  for (const auto field : {beast_http::field::content_type, beast_http::field::retry_after, beast_http::field::cache_control})
    if (auto it = header.find(field); it != header.end()) response.set(field, it->value());
  response.body() = std::move(body);
  response.keep_alive(request.keep_alive());
  response.prepare_payload();
  return response;
}

namespace {

// What a stream is charged (PROTOCOL.md section 4): the enclave's final usage; for a stream that
// ended without one (cut by its client, or by the enclave's failure), the provisional prompt plus
// what the enclave reported when it stopped generating (a rvenc-mux trailer after the gateway's
// RESET), never a count of the events relayed (traffic shaping's filler would be billed).
http::awaitable<protocol::Usage> billed_usage(const SseRelay& relay, http::ResponseStream& stream) {
  const std::optional<protocol::Usage> final = relay.final_usage();
  if (final) co_return *final;
  protocol::Usage usage = relay.provisional_usage().value_or(protocol::Usage{});
  const std::optional<std::string> trailer = co_await stream.trailer();
  if (!trailer) co_return usage;
  boost::system::error_code ec;
  const auto value = boost::json::parse(*trailer, ec);
  const std::optional<protocol::Usage> reported = ec ? std::nullopt : protocol::parse_usage(value);
  if (reported) {
    usage.prompt_tokens = std::max(usage.prompt_tokens, reported->prompt_tokens);
    usage.completion_tokens = reported->completion_tokens;
  }
  co_return usage;
}

}  // namespace

Result<std::unique_ptr<GatewayHandler>> GatewayHandler::create(GatewayOptions options) {
  if (options.enclaves.empty()) return fail(Errc::invalid_request, "at least one --enclave is needed");
  auto lookups = KeyStore::open(options.db_path, options.store);
  if (!lookups) return std::unexpected(lookups.error());
  store::StoreOptions writer_options = options.store;
  writer_options.pool_size = 1;  // one writer thread
  auto writer = KeyStore::open(options.db_path, writer_options);
  if (!writer) return std::unexpected(writer.error());
  return std::unique_ptr<GatewayHandler>(new GatewayHandler(
      std::move(options), std::move(*lookups), std::make_unique<UsageRecorder>(std::move(*writer))));
}

GatewayHandler::GatewayHandler(GatewayOptions options, KeyStore lookups, std::unique_ptr<UsageRecorder> usage)
    : options_(std::move(options)),
      keys_(std::move(lookups), options_.store_failure),
      usage_(std::move(usage)),
      // A client may attest every enclave: at least two requests per enclave at once.
      attestation_limiter_(options_.attestation_per_minute <= 0
                               ? 0
                               : std::max<std::int64_t>(options_.attestation_per_minute,
                                                        2 * static_cast<std::int64_t>(options_.enclaves.size()))),
      client_(http::ClientOptions{.ca_file = options_.enclave_ca_file}),
      enclaves_(options_.enclaves, client_) {
  if (options_.rate_limiter) limiter_ = options_.rate_limiter.get();
  if (options_.enclave_mux) {
    http::MuxClientOptions mux_options;
    // Head room for the headers the gateway adds.
    constexpr std::size_t kHeadRoom = 16 * 1024;
    mux_options.max_request_bytes = std::max<std::size_t>(mux_options.max_request_bytes, options_.max_body + kHeadRoom);
    if (!options_.enclave_token.empty()) mux_options.authorization = "Bearer " + options_.enclave_token;
    mux_ = std::make_unique<http::MuxClient>(client_, std::move(mux_options));
  }
  started_at_ = unix_now();
  std::vector<RouteKey> route_keys;
  for (const auto& route : routes()) route_keys.push_back({route.path, route.method});
  get_steps_ = {allow_list_step(std::move(route_keys)), header_limit_step(kMaxHeaderBytes), attestation_limit_step(attestation_limiter_, keys_),
                models_key_step(keys_)};
  chat_steps_ = {body_limit_step(options_.max_body), auth_step(keys_, usage_.get()), envelope_step(),
                 stream_limit_step(streams_), rate_limit_step(*limiter_)};
}

GatewayHandler::~GatewayHandler() { stop_background(); }

http::Handler GatewayHandler::handler() {
  return [this](http::Request& request, http::ResponseWriter& writer) { return handle(request, writer); };
}

http::awaitable<void> GatewayHandler::send(RequestContext& context, http::ResponseWriter& writer,
                                           http::Response response) {
  decorate(response.base(), context);
  // Discovery answers publish the largest request body, so clients refuse a prompt that cannot fit
  // before sending it (issue 29).
  if (const auto path = http::target_path(context.request); path == kModelsPath || path == kAttestationPath)
    response.set(protocol::kMaxBodyHeader, std::to_string(options_.max_body));
  if (!response.has_content_length()) response.prepare_payload();
  metrics_.count_response(response.result_int());
  context.status = response.result_int();
  metrics_.add_bytes_out(response.body().size());
  if (context.usage) {
    context.usage->row().status = static_cast<int>(response.result_int());
    context.usage->row().bytes_out = static_cast<std::int64_t>(response.body().size());
  }
  co_await writer.send(std::move(response));
}

http::awaitable<void> GatewayHandler::handle(http::Request& request, http::ResponseWriter& writer) {
  if (!options_.cors.enabled()) co_return co_await dispatch(request, writer);
  if (is_cors_preflight(request)) {
    http::Response preflight = cors_preflight(request, options_.cors);
    co_await writer.send(std::move(preflight));
    co_return;
  }
  const std::string_view origin = request[beast_http::field::origin];
  if (origin.empty() || !options_.cors.allows(origin) || !is_cors_path(http::target_path(request)))
    co_return co_await dispatch(request, writer);
  CorsWriter cors(writer, std::string(origin));
  co_await dispatch(request, cors);
}

http::awaitable<void> GatewayHandler::dispatch(http::Request& request, http::ResponseWriter& writer) {
  RequestContext context(request);
  context.client_address = writer.client_address();
  metrics_.add_bytes_in(request.body().size());
  std::optional<std::string> failure;
  try {
    if (auto response = co_await run_steps(get_steps_, context)) {
      co_await send(context, writer, std::move(*response));
    } else {
      // The allow list let it through: its path and method are in the table.
      const std::string_view path = http::target_path(request);
      const auto route = std::ranges::find_if(
          routes(), [&](const Route& r) { return r.path == path && r.method == request.method(); });
      co_await (this->*(route->serve))(context, writer);
    }
  } catch (const std::exception& e) {
    failure = e.what();
  }
  if (failure) {
    spdlog::error("{}: {}", context.request_id, *failure);
    if (!writer.started())
      co_await send(context, writer, gateway_error(context, Error{Errc::internal_error, "internal gateway error"}));
  }
  if (options_.access_log) log_access(context);
}

std::span<const GatewayHandler::Route> GatewayHandler::routes() noexcept {
  static constexpr Route kRoutes[] = {
      {kChatPath, http::Verb::post, &GatewayHandler::serve_chat},
      {kAttestationPath, http::Verb::get, &GatewayHandler::serve_attestation},
      {kModelsPath, http::Verb::get, &GatewayHandler::serve_models},
      {kHealthPath, http::Verb::get, &GatewayHandler::serve_health},
      {kHealthAliasPath, http::Verb::get, &GatewayHandler::serve_health},
      {kMetricsPath, http::Verb::get, &GatewayHandler::serve_metrics},
  };
  return kRoutes;
}

http::awaitable<void> GatewayHandler::serve_health(RequestContext& context, http::ResponseWriter& writer) {
  co_await send(context, writer, health(context));
}

http::awaitable<void> GatewayHandler::serve_metrics(RequestContext& context, http::ResponseWriter& writer) {
  co_await send(context, writer, metrics_response(context));
}

http::awaitable<void> GatewayHandler::serve_models(RequestContext& context, http::ResponseWriter& writer) {
  if (enclaves_.healthy_count() == 0) co_await enclaves_.refresh_if_stale();  // as routing does
  co_await send(context, writer, models_response(context));
}

void GatewayHandler::log_access(const RequestContext& context) const {
  http::log_access(context.request_id, context.request, context.status, Clock::now() - context.received,
                   context.masked_key);
}

bool GatewayHandler::admin_allowed(const http::Request& request) const {
  if (!options_.admin_token_hash) return true;
  const auto header = request.base().find(beast_http::field::authorization);
  if (header == request.base().end()) return false;
  const auto token = bearer_token(header->value());
  if (!token) return false;
  return crypto::constant_time_equal(crypto::sha256(crypto::as_bytes(*token)), *options_.admin_token_hash);
}

http::Response GatewayHandler::health(const RequestContext& context) const {
  const auto enclaves = enclaves_.snapshot();
  std::size_t up = 0;
  for (const auto& e : enclaves) up += e.healthy ? 1 : 0;
  // A store that cannot be reached still lets cached keys through (for a while): degraded.
  const bool store_up = keys_.store_reachable();
  const char* status = up == enclaves.size() && store_up ? "ok" : up > 0 ? "degraded" : "unavailable";
  const unsigned code = up > 0 ? 200 : 503;
  const bool presented = context.request.base().find(beast_http::field::authorization) != context.request.base().end();
  if (!admin_allowed(context.request)) {
    // A wrong token is an error, not a silently shorter answer; no token is the public answer.
    if (presented) return gateway_error(context, Error{Errc::invalid_api_key, "the admin token is wrong"});
    return http::json_response(code, boost::json::serialize(boost::json::object{{"status", status}}));
  }
  boost::json::array list;
  for (const auto& e : enclaves) {
    boost::json::array models;
    for (const auto& model : e.models) models.emplace_back(model);
    list.push_back(boost::json::object{{"url", e.url.origin()},
                                       {"healthy", e.healthy},
                                       {"keyId", e.key_id ? boost::json::value(to_hex(*e.key_id)) : nullptr},
                                       {"provider", e.provider},
                                       {"models", std::move(models)},
                                       {"inFlight", e.in_flight},
                                       {"capacity", e.capacity ? boost::json::value(*e.capacity) : nullptr},
                                       {"lastError", e.last_error}});
  }
  boost::json::object body{{"status", status},
                           {"store", store_up ? "ok" : "down"},
                           {"enclavesUp", up},
                           {"enclavesTotal", enclaves.size()},
                           {"enclaves", std::move(list)}};
  return http::json_response(code, boost::json::serialize(body));
}

http::Response GatewayHandler::metrics_response(const RequestContext& context) const {
  if (!admin_allowed(context.request))
    return gateway_error(context, Error{Errc::invalid_api_key, "/metrics needs the admin token: send "
                                                               "Authorization: Bearer <admin token>"});
  auto response = http::json_response(
      200, metrics_.render(enclaves_.healthy_count(), options_.enclaves.size()) +
               render_enclave_metrics(enclaves_.snapshot()) + limiter_->metrics_text());
  response.set(beast_http::field::content_type, kPrometheusContentType);
  return response;
}

http::awaitable<Result<http::Response>> GatewayHandler::get_from(const http::Url& url, const std::string& target) {
  http::Timeouts timeouts;
  timeouts.connect = kUpstreamConnectTimeout;
  timeouts.idle = kForwardGetTimeout;
  timeouts.total = kForwardGetTimeout;
  auto upstream = http::make_request(http::Verb::get, url.join(target));
  upstream.set(beast_http::field::accept, http::kJsonContentType);
  auto response = co_await client_.request(url, std::move(upstream), timeouts);
  if (!response && response.error().code == Errc::upstream_error) enclaves_.mark_unhealthy(url, response.error().message);
  co_return response;
}

http::awaitable<void> GatewayHandler::serve_chat(RequestContext& context, http::ResponseWriter& writer) {
  if (auto response = co_await run_steps(chat_steps_, context)) {
    co_await send(context, writer, std::move(*response));
    co_return;
  }
  const std::int64_t used = co_await forward_chat(context, writer);
  const std::int64_t reserved = context.rate ? context.rate->reserved_tokens : 0;
  if (used == reserved) co_return;
  const auto& key = *context.key;
  auto settled = co_await limiter_->settle_tokens(key.id, key.limits, reserved, used);
  if (!settled) spdlog::error("{}: tokens not charged: {}", context.request_id, settled.error().to_string());
}

http::awaitable<std::int64_t> GatewayHandler::forward_chat(RequestContext& context, http::ResponseWriter& writer) {
  const auto& envelope = *context.envelope;
  const auto& key = *context.key;
  std::optional<crypto::KeyId> key_id;
  if (protocol::has_key_id(envelope.version)) key_id = envelope.key_id;
  auto target = co_await enclaves_.route(key_id);
  if (!target) {
    co_await send(context, writer, gateway_error(context, target.error()));
    co_return 0;
  }
  const auto ticket = enclaves_.track(*target);  // in flight until the stream ends

  http::Request upstream{http::Verb::post, target->join(kChatPath), http::kHttp11};
  upstream.set(beast_http::field::host, target->host_header());
  upstream.set(beast_http::field::content_type, http::kJsonContentType);
  upstream.set(beast_http::field::accept, http::kEventStreamContentType);
  upstream.set("X-Rvenc-Tenant", key.id);
  upstream.set("X-Rvenc-Key-Env", env_name(key.env));
  upstream.set("X-Request-Id", context.request_id);
  if (!options_.enclave_token.empty())
    upstream.set(beast_http::field::authorization, "Bearer " + options_.enclave_token);
  upstream.body() = std::move(context.request.body());  // byte for byte
  upstream.prepare_payload();

  http::Timeouts timeouts;
  timeouts.connect = kUpstreamConnectTimeout;
  timeouts.idle = options_.upstream_idle_timeout;
  const auto opened_at = Clock::now();
  // Not a conditional expression: GCC 12 miscompiles a co_await in each of its branches.
  Result<std::unique_ptr<http::ResponseStream>> opened;
  if (mux_) opened = co_await mux_->open(*target, std::move(upstream), timeouts);
  else opened = co_await client_.open(*target, std::move(upstream), timeouts);
  if (!opened) {
    spdlog::warn("{}: enclave {}: {}", context.request_id, target->origin(), opened.error().to_string());
    if (opened.error().code == Errc::upstream_error) enclaves_.mark_unhealthy(*target, opened.error().message);
    co_await send(context, writer, gateway_error(context, upstream_failure(opened.error())));
    co_return 0;
  }
  auto& stream = **opened;
  const auto& head = stream.header();
  const auto content_type = head[beast_http::field::content_type];
  if (head.result_int() == 200 && content_type.starts_with(http::kEventStreamContentType)) {
    const protocol::Usage usage = co_await relay_stream(context, writer, stream, *target, opened_at);
    co_return usage.total_tokens();
  }
  // An answer before any event (an enclave error): passed through with its status and body.
  std::string body;
  for (;;) {
    auto chunk = co_await stream.read_some();
    if (!chunk) {
      co_await send(context, writer, gateway_error(context, upstream_failure(chunk.error())));
      co_return 0;
    }
    if (!*chunk) break;
    body += **chunk;
    if (body.size() > kMaxUpstreamErrorBody) {
      stream.cancel();
      co_await send(context, writer, gateway_error(context, Error{Errc::upstream_error, "the enclave's answer is too large"}));
      co_return 0;
    }
  }
  co_await send(context, writer, pass_through(context.request, head, std::move(body)));
  co_return 0;
}

http::awaitable<protocol::Usage> GatewayHandler::relay_stream(RequestContext& context, http::ResponseWriter& writer,
                                                              http::ResponseStream& stream, const http::Url& target,
                                                              Clock::time_point opened_at) {
  const auto& key = *context.key;
  auto header = http::event_stream_header(200);
  decorate(header, context);
  metrics_.count_response(200);
  context.status = 200;
  metrics_.stream_started();
  struct StreamGauge {
    Metrics& m;
    ~StreamGauge() { m.stream_ended(); }
  } gauge{metrics_};
  auto& row = context.usage->row();
  row.status = 200;
  SseRelay relay;
  StreamView view;  // for --record-traffic
  const auto record_tokens = [&](const protocol::Usage& usage) {
    row.prompt_tokens = usage.prompt_tokens;
    row.completion_tokens = usage.completion_tokens;
  };
  const auto record_view = [&](const protocol::Usage& usage) {
    if (options_.traffic_recorder) options_.traffic_recorder->record(context.request_id, view, usage);
  };
  if (!co_await writer.begin_stream(std::move(header))) {
    stream.cancel();
    row.status = kStatusClientClosed;
    const protocol::Usage usage = co_await billed_usage(relay, stream);
    record_tokens(usage);
    record_view(usage);
    co_return usage;
  }

  std::optional<Error> broken;
  std::optional<Clock::time_point> first_upstream_byte;
  bool first_write = true;
  bool client_gone = false;
  bool provisional_recorded = false;
  const auto delivered = [&](std::size_t bytes) {
    row.bytes_out += static_cast<std::int64_t>(bytes);
    metrics_.add_bytes_out(bytes);
  };
  std::string received;  // the bytes of the last read (what the relay's output may point into)
  // The events from `done` on, held to go out with the end of the stream: a client must not hold
  // a complete answer before its usage row is journaled (a gateway killed in between would lose a
  // row it owes).
  std::string ending;
  for (;;) {
    auto chunk = co_await stream.read_some();
    if (!chunk) {
      broken = chunk.error();
      break;
    }
    if (!*chunk) break;
    if (!first_upstream_byte) first_upstream_byte = Clock::now();
    stream.recycle(std::move(received));  // forwarded (or copied) by now; the next read refills it
    received = std::move(**chunk);
    auto forward = relay.feed(received);
    if (!forward) {
      broken = forward.error();
      stream.cancel();
      break;
    }
    if (options_.traffic_recorder) view.add_events(*forward, seconds_between(context.received, Clock::now()) * 1000.0);
    if (!provisional_recorded && relay.provisional_usage()) {
      // The prompt is owed from now on, whatever happens to the stream (a gateway killed later
      // leaves this row in its journal).
      provisional_recorded = true;
      record_tokens(*relay.provisional_usage());
      context.usage->submit_provisional();
    }
    if (first_write && !forward->empty()) {
      first_write = false;
      const auto now = Clock::now();
      const double added = seconds_between(context.received, now) - seconds_between(opened_at, *first_upstream_byte);
      metrics_.observe_added_latency(std::max(added, 0.0));
    }
    if (relay.saw_done()) {
      ending.append(*forward);
      if (stream.finished() && !relay.has_partial_event()) break;
      continue;
    }
    if (forward->empty()) continue;
    // Without suspending when the socket takes the chunk. Two statements on purpose: GCC 12 runs
    // the co_await of `(!write_now(..) && !co_await write(..)) || ..` even when write_now took it.
    bool taken = writer.write_now(*forward);
    if (!taken) taken = co_await writer.write(*forward);
    if (!taken || writer.client_gone()) {
      client_gone = true;
      stream.cancel();
      break;
    }
    delivered(forward->size());
  }

  if (client_gone) {
    spdlog::info("{}: client went away mid-stream (key {})", context.request_id, key.id);
    row.status = kStatusClientClosed;
  } else if (broken || !relay.saw_done()) {
    spdlog::warn("{}: enclave stream broke: {}", context.request_id,
                 broken ? broken->to_string() : std::string("ended without done"));
    // A connection that died under a stream (not a slow model: that is upstream_timeout) means
    // the enclave is likely gone: /healthz and routing learn it now, not at the next refresh.
    if (broken && broken->code == Errc::upstream_error) enclaves_.mark_unhealthy(target, broken->message);
    if (!ending.empty() && co_await writer.write(ending)) delivered(ending.size());
    const std::string event = upstream_broken_event();
    if (co_await writer.write(event)) delivered(event.size());
    row.status = http_status(Errc::upstream_error);
    co_await writer.end_stream();
  } else {
    // The row goes to the journal before the end of the answer goes out (see `ending`); a client
    // that leaves at this very last write is charged the whole answer.
    delivered(ending.size());
    const protocol::Usage usage = co_await billed_usage(relay, stream);
    record_tokens(usage);
    record_view(usage);
    context.usage->submit();
    co_await writer.end_stream(ending);
    co_return usage;
  }
  const protocol::Usage usage = co_await billed_usage(relay, stream);
  record_tokens(usage);
  record_view(usage);
  co_return usage;
}

void GatewayHandler::start_background(asio::any_io_executor executor) {
  keys_.watch();  // PostgreSQL: key changes pushed (LISTEN/NOTIFY); SQLite: the poll below only
  poll_timer_ = std::make_shared<asio::steady_timer>(executor);
  asio::co_spawn(executor, poll_keys_loop(poll_timer_), asio::detached);
  for (std::size_t i = 0; i < enclaves_.size(); ++i) {
    refresh_timers_.push_back(std::make_shared<asio::steady_timer>(executor));
    asio::co_spawn(executor, refresh_loop(refresh_timers_.back(), i), asio::detached);
  }
}

void GatewayHandler::stop_background() {
  if (stopping_.exchange(true)) return;
  // The handler lets go of the timers: they belong to the executor's io_context, and the handler
  // outlives it (Gateway destroys the server first). The loops and the posted cancels keep them
  // until they end, at the latest while that io_context shuts down.
  auto timers = std::exchange(refresh_timers_, {});
  timers.push_back(std::exchange(poll_timer_, nullptr));
  for (auto& timer : timers)
    if (timer) asio::post(timer->get_executor(), [timer] { timer->cancel(); });
}

http::awaitable<void> GatewayHandler::poll_keys_loop(std::shared_ptr<asio::steady_timer> timer) {
  while (!stopping_) {
    timer->expires_after(kKeysPollInterval);
    boost::system::error_code ec;
    co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopping_) break;
    auto polled = keys_.poll();
    if (!polled) spdlog::warn("key cache poll failed: {}", polled.error().to_string());
  }
}

http::awaitable<void> GatewayHandler::refresh_loop(std::shared_ptr<asio::steady_timer> timer, std::size_t index) {
  while (!stopping_) {
    timer->expires_after(options_.health_interval);
    boost::system::error_code ec;
    co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopping_) break;
    co_await enclaves_.refresh_enclave(index);
  }
}

Result<std::unique_ptr<Gateway>> Gateway::create(GatewayOptions options) {
  std::unique_ptr<Gateway> gateway(new Gateway());
  http::ServerOptions server_options;
  server_options.host = options.host;
  server_options.port = options.port;
  server_options.header_limit = kMaxHeaderBytes;
  server_options.body_limit = options.max_body;
  server_options.read_timeout = options.read_timeout;
  server_options.idle_timeout = options.idle_timeout;
  server_options.first_byte_timeout = options.first_byte_timeout;
  server_options.header_timeout = options.header_timeout;
  server_options.tls = options.tls;
  server_options.tls_handshake_timeout = options.tls_handshake_timeout;
  server_options.max_connections = options.max_connections;
  server_options.max_connections_per_ip = options.max_connections_per_ip;
  server_options.per_ip_cap_loopback = options.per_ip_cap_loopback;
  server_options.trusted_proxies = options.trusted_proxies;
  server_options.server_name = "rvenc-gateway";
  auto handler = GatewayHandler::create(std::move(options));
  if (!handler) return std::unexpected(handler.error());
  gateway->handler_ = std::move(*handler);
  server_options.on_connection_refused = [&metrics = gateway->handler_->metrics()](std::string_view reason) {
    metrics.count_refused_connection(reason);
  };
  auto server = http::Server::create(server_options, gateway->handler_->handler());
  if (!server) return std::unexpected(server.error());
  gateway->server_ = std::move(*server);
  return gateway;
}

Gateway::~Gateway() {
  if (handler_) handler_->stop_background();
  server_.reset();
}

void Gateway::start() {
  handler_->start_background(server_->executor());
  server_->start();
}

void Gateway::refresh_enclaves() {
  asio::co_spawn(server_->executor(), handler_->enclaves().refresh(), asio::use_future).get();
}

void Gateway::stop_on_signals() {
  server_->stop_on_signals([this] { stop(); });
}

void Gateway::stop() {
  handler_->stop_background();
  server_->stop();
}

void Gateway::wait() { server_->wait(); }

}  // namespace rvenc::gateway
