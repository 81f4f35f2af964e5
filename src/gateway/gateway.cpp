#include "rvenc/gateway/gateway.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include "forwarding.hpp"
#include "services.hpp"
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
  auto services = GatewayServices::build(std::move(options));
  if (!services) return std::unexpected(services.error());
  return std::unique_ptr<GatewayHandler>(new GatewayHandler(std::move(*services)));
}

// The checks in the order they run (middleware.hpp): GETs, then chat's admission.
GatewayHandler::GatewayHandler(std::unique_ptr<GatewayServices> services) : services_(std::move(services)) {
  auto& s = *services_;
  std::vector<RouteKey> route_keys;
  for (const auto& route : routes()) route_keys.push_back({route.path, route.method});
  get_steps_ = {allow_list_step(std::move(route_keys)), header_limit_step(kMaxHeaderBytes),
                attestation_limit_step(s.attestation_limiter, s.keys), models_key_step(s.keys)};
  chat_steps_ = {body_limit_step(s.options.max_body), auth_step(s.keys, s.usage.get()), envelope_step(),
                 stream_limit_step(s.streams), rate_limit_step(*s.limiter)};
}

GatewayHandler::~GatewayHandler() { stop_background(); }

void GatewayHandler::start_background(asio::any_io_executor executor) {
  services_->start_background(std::move(executor));
}
void GatewayHandler::stop_background() { services_->stop_background(); }
EnclavePool& GatewayHandler::enclaves() noexcept { return services_->enclaves; }
KeyCache& GatewayHandler::keys() noexcept { return services_->keys; }
Metrics& GatewayHandler::metrics() noexcept { return services_->metrics; }
UsageRecorder& GatewayHandler::usage() noexcept { return *services_->usage; }
const GatewayOptions& GatewayHandler::options() const noexcept { return services_->options; }

http::Handler GatewayHandler::handler() {
  return [this](http::Request& request, http::ResponseWriter& writer) { return handle(request, writer); };
}

http::awaitable<void> GatewayHandler::send(RequestContext& context, http::ResponseWriter& writer,
                                           http::Response response) {
  decorate(response.base(), context);
  // Discovery answers publish the largest request body, so clients refuse a prompt that cannot fit
  // before sending it (issue 29).
  if (const auto path = http::target_path(context.request); path == kModelsPath || path == kAttestationPath)
    response.set(protocol::kMaxBodyHeader, std::to_string(services_->options.max_body));
  if (!response.has_content_length()) response.prepare_payload();
  services_->metrics.count_response(response.result_int());
  context.status = response.result_int();
  services_->metrics.add_bytes_out(response.body().size());
  if (context.usage) {
    context.usage->row().status = static_cast<int>(response.result_int());
    context.usage->row().bytes_out = static_cast<std::int64_t>(response.body().size());
  }
  co_await writer.send(std::move(response));
}

http::awaitable<void> GatewayHandler::handle(http::Request& request, http::ResponseWriter& writer) {
  if (!services_->options.cors.enabled()) co_return co_await dispatch(request, writer);
  if (is_cors_preflight(request)) {
    http::Response preflight = cors_preflight(request, services_->options.cors);
    co_await writer.send(std::move(preflight));
    co_return;
  }
  const std::string_view origin = request[beast_http::field::origin];
  if (origin.empty() || !services_->options.cors.allows(origin) || !is_cors_path(http::target_path(request)))
    co_return co_await dispatch(request, writer);
  CorsWriter cors(writer, std::string(origin));
  co_await dispatch(request, cors);
}

http::awaitable<void> GatewayHandler::dispatch(http::Request& request, http::ResponseWriter& writer) {
  RequestContext context(request);
  context.client_address = writer.client_address();
  services_->metrics.add_bytes_in(request.body().size());
  std::optional<std::string> failure;
  try {
    if (auto response = co_await run_steps(get_steps_, context)) {
      co_await send(context, writer, std::move(*response));
    } else {
      // The allow list let it through: its path and method should be in the table.
      const std::string_view path = http::target_path(request);
      const auto table = routes();
      const auto route =
          std::ranges::find_if(table, [&](const Route& r) { return r.path == path && r.method == request.method(); });
      // Not relying on the allow list's place in get_steps_: no route is a 404, never a jump.
      if (route == table.end())
        co_await send(context, writer, gateway_error(context, Error{Errc::not_found, "unknown path"}));
      else
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
  if (services_->options.access_log) log_access(context);
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
  if (services_->enclaves.healthy_count() == 0) co_await services_->enclaves.refresh_if_stale();  // as routing does
  co_await send(context, writer, models_response(context));
}

void GatewayHandler::log_access(const RequestContext& context) const {
  http::log_access(context.request_id, context.request, context.status, Clock::now() - context.received,
                   context.masked_key);
}

bool GatewayHandler::admin_allowed(const http::Request& request) const {
  if (!services_->options.admin_token_hash) return true;
  const auto header = request.base().find(beast_http::field::authorization);
  if (header == request.base().end()) return false;
  const auto token = bearer_token(header->value());
  if (!token) return false;
  return crypto::constant_time_equal(crypto::sha256(crypto::as_bytes(*token)), *services_->options.admin_token_hash);
}

http::Response GatewayHandler::health(const RequestContext& context) const {
  const auto enclaves = services_->enclaves.snapshot();
  std::size_t up = 0;
  for (const auto& e : enclaves) up += e.healthy ? 1 : 0;
  // A store that cannot be reached still lets cached keys through (for a while): degraded.
  const bool store_up = services_->keys.store_reachable();
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
      200, services_->metrics.render(services_->enclaves.healthy_count(), services_->options.enclaves.size()) +
               render_enclave_metrics(services_->enclaves.snapshot()) + services_->limiter->metrics_text());
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
  auto response = co_await services_->client.request(url, std::move(upstream), timeouts);
  if (!response && response.error().code == Errc::upstream_error) services_->enclaves.mark_unhealthy(url, response.error().message);
  co_return response;
}

// --- POST /rvenc/chat/completions: admit -> open upstream -> relay -> settle ----------------------

// An open enclave stream for one chat request.
struct GatewayHandler::Upstream {
  http::Url target;
  std::optional<EnclavePool::Ticket> ticket;  // in flight until the stream ends
  std::unique_ptr<http::ResponseStream> stream;
  Clock::time_point opened_at;
};

// One event stream being relayed to its client, and what the relay learned on the way.
struct GatewayHandler::Relay {
  RequestContext& context;
  http::ResponseWriter& writer;
  http::ResponseStream& stream;
  const http::Url& target;
  Clock::time_point opened_at;
  UsageRow& row;
  SseRelay events{};
  StreamView view{};  // for --record-traffic
  std::optional<Error> broken;  // the enclave's stream failed (or sent an event too large)
  std::optional<Clock::time_point> first_upstream_byte;
  bool first_write = true;
  bool client_gone = false;
  bool provisional_recorded = false;
  std::string received;  // the bytes of the last read (what the relay's output may point into)
  // The events from `done` on, held to go out with the end of the stream: a client must not hold
  // a complete answer before its usage row is journaled (a gateway killed in between would lose a
  // row it owes).
  std::string ending;
};

http::awaitable<void> GatewayHandler::serve_chat(RequestContext& context, http::ResponseWriter& writer) {
  if (auto refused = co_await admit_chat(context)) {
    co_await send(context, writer, std::move(*refused));
    co_return;
  }
  std::int64_t used = 0;
  {  // the enclave stream and its in-flight ticket end here, before the charge is settled
    Upstream upstream;
    if (co_await open_upstream(context, writer, upstream)) used = co_await relay_chat(context, writer, upstream);
  }
  co_await settle_charge(context, used);
}

http::awaitable<StepResult> GatewayHandler::admit_chat(RequestContext& context) {
  co_return co_await run_steps(chat_steps_, context);
}

namespace {

// The request to the enclave: the client's envelope byte for byte, and who sent it.
http::Request upstream_request(RequestContext& context, const http::Url& target, const std::string& enclave_token) {
  const auto& key = *context.key;
  http::Request upstream{http::Verb::post, target.join(kChatPath), http::kHttp11};
  upstream.set(beast_http::field::host, target.host_header());
  upstream.set(beast_http::field::content_type, http::kJsonContentType);
  upstream.set(beast_http::field::accept, http::kEventStreamContentType);
  upstream.set("X-Rvenc-Tenant", key.id);
  upstream.set("X-Rvenc-Key-Env", env_name(key.env));
  upstream.set("X-Request-Id", context.request_id);
  if (!enclave_token.empty()) upstream.set(beast_http::field::authorization, "Bearer " + enclave_token);
  upstream.body() = std::move(context.request.body());  // byte for byte
  upstream.prepare_payload();
  return upstream;
}

}  // namespace

http::awaitable<bool> GatewayHandler::open_upstream(RequestContext& context, http::ResponseWriter& writer,
                                                    Upstream& upstream) {
  auto& s = *services_;
  std::optional<crypto::KeyId> key_id;
  if (protocol::has_key_id(context.envelope->version)) key_id = context.envelope->key_id;
  auto target = co_await s.enclaves.route(key_id);
  if (!target) {
    co_await send(context, writer, gateway_error(context, target.error()));
    co_return false;
  }
  upstream.target = *target;
  upstream.ticket.emplace(s.enclaves, upstream.target);
  http::Request request = upstream_request(context, upstream.target, s.options.enclave_token);
  http::Timeouts timeouts;
  timeouts.connect = kUpstreamConnectTimeout;
  timeouts.idle = s.options.upstream_idle_timeout;
  upstream.opened_at = Clock::now();
  // Not a conditional expression: GCC 12 miscompiles a co_await in each of its branches.
  Result<std::unique_ptr<http::ResponseStream>> opened;
  if (s.mux) opened = co_await s.mux->open(upstream.target, std::move(request), timeouts);
  else opened = co_await s.client.open(upstream.target, std::move(request), timeouts);
  if (!opened) {
    spdlog::warn("{}: enclave {}: {}", context.request_id, upstream.target.origin(), opened.error().to_string());
    if (opened.error().code == Errc::upstream_error) s.enclaves.mark_unhealthy(upstream.target, opened.error().message);
    co_await send(context, writer, gateway_error(context, upstream_failure(opened.error())));
    co_return false;
  }
  upstream.stream = std::move(*opened);
  co_return true;
}

http::awaitable<std::int64_t> GatewayHandler::relay_chat(RequestContext& context, http::ResponseWriter& writer,
                                                         Upstream& upstream) {
  const auto& head = upstream.stream->header();
  if (head.result_int() == 200 && head[beast_http::field::content_type].starts_with(http::kEventStreamContentType)) {
    const protocol::Usage usage = co_await relay_stream(context, writer, upstream);
    co_return usage.total_tokens();
  }
  co_await pass_refusal(context, writer, *upstream.stream);
  co_return 0;
}

http::awaitable<void> GatewayHandler::pass_refusal(RequestContext& context, http::ResponseWriter& writer,
                                                   http::ResponseStream& stream) {
  std::string body;
  for (;;) {
    auto chunk = co_await stream.read_some();
    if (!chunk) {
      co_await send(context, writer, gateway_error(context, upstream_failure(chunk.error())));
      co_return;
    }
    if (!*chunk) break;
    body += **chunk;
    if (body.size() > kMaxUpstreamErrorBody) {
      stream.cancel();
      co_await send(context, writer, gateway_error(context, Error{Errc::upstream_error, "the enclave's answer is too large"}));
      co_return;
    }
  }
  co_await send(context, writer, pass_through(context.request, stream.header(), std::move(body)));
}

http::awaitable<protocol::Usage> GatewayHandler::relay_stream(RequestContext& context, http::ResponseWriter& writer,
                                                              Upstream& upstream) {
  auto& metrics = services_->metrics;
  auto header = http::event_stream_header(200);
  decorate(header, context);
  metrics.count_response(200);
  context.status = 200;
  metrics.stream_started();
  struct StreamGauge {
    Metrics& m;
    ~StreamGauge() { m.stream_ended(); }
  } gauge{metrics};
  Relay relay{.context = context, .writer = writer, .stream = *upstream.stream, .target = upstream.target,
              .opened_at = upstream.opened_at, .row = context.usage->row()};
  relay.row.status = 200;
  if (!co_await writer.begin_stream(std::move(header))) {
    relay.stream.cancel();
    relay.row.status = kStatusClientClosed;
    co_return co_await record_usage(relay);
  }
  co_await relay_events(relay);
  co_return co_await end_relay(relay);
}

http::awaitable<void> GatewayHandler::relay_events(Relay& relay) {
  for (;;) {
    auto chunk = co_await relay.stream.read_some();
    if (!chunk) {
      relay.broken = chunk.error();
      co_return;
    }
    if (!*chunk) co_return;
    if (!relay.first_upstream_byte) relay.first_upstream_byte = Clock::now();
    relay.stream.recycle(std::move(relay.received));  // forwarded (or copied) by now; the next read refills it
    relay.received = std::move(**chunk);
    auto forward = relay.events.feed(relay.received);
    if (!forward) {
      relay.broken = forward.error();
      relay.stream.cancel();
      co_return;
    }
    note_progress(relay, *forward);
    if (relay.events.saw_done()) {
      relay.ending.append(*forward);
      if (relay.stream.finished() && !relay.events.has_partial_event()) co_return;
      continue;
    }
    if (forward->empty()) continue;
    // Without suspending when the socket takes the chunk. Two statements on purpose: GCC 12 runs
    // the co_await of `(!write_now(..) && !co_await write(..)) || ..` even when write_now took it.
    bool taken = relay.writer.write_now(*forward);
    if (!taken) taken = co_await relay.writer.write(*forward);
    if (!taken || relay.writer.client_gone()) {
      relay.client_gone = true;
      relay.stream.cancel();
      co_return;
    }
    relay.row.bytes_out += static_cast<std::int64_t>(forward->size());
    services_->metrics.add_bytes_out(forward->size());
  }
}

// What one read told: the traffic record, the provisional usage row, the added latency.
void GatewayHandler::note_progress(Relay& relay, std::string_view forward) {
  auto& context = relay.context;
  if (services_->options.traffic_recorder)
    relay.view.add_events(forward, seconds_between(context.received, Clock::now()) * 1000.0);
  if (!relay.provisional_recorded && relay.events.provisional_usage()) {
    // The prompt is owed from now on, whatever happens to the stream (a gateway killed later
    // leaves this row in its journal).
    relay.provisional_recorded = true;
    relay.row.prompt_tokens = relay.events.provisional_usage()->prompt_tokens;
    relay.row.completion_tokens = relay.events.provisional_usage()->completion_tokens;
    context.usage->submit_provisional();
  }
  if (relay.first_write && !forward.empty()) {
    relay.first_write = false;
    const double added = seconds_between(context.received, Clock::now()) -
                         seconds_between(relay.opened_at, *relay.first_upstream_byte);
    services_->metrics.observe_added_latency(std::max(added, 0.0));
  }
}

http::awaitable<protocol::Usage> GatewayHandler::end_relay(Relay& relay) {
  auto& context = relay.context;
  auto& writer = relay.writer;
  const auto delivered = [&](std::size_t bytes) {
    relay.row.bytes_out += static_cast<std::int64_t>(bytes);
    services_->metrics.add_bytes_out(bytes);
  };
  if (relay.client_gone) {
    spdlog::info("{}: client went away mid-stream (key {})", context.request_id, context.key->id);
    relay.row.status = kStatusClientClosed;
  } else if (relay.broken || !relay.events.saw_done()) {
    spdlog::warn("{}: enclave stream broke: {}", context.request_id,
                 relay.broken ? relay.broken->to_string() : std::string("ended without done"));
    // A connection that died under a stream (not a slow model: that is upstream_timeout) means
    // the enclave is likely gone: /healthz and routing learn it now, not at the next refresh.
    if (relay.broken && relay.broken->code == Errc::upstream_error)
      services_->enclaves.mark_unhealthy(relay.target, relay.broken->message);
    if (!relay.ending.empty() && co_await writer.write(relay.ending)) delivered(relay.ending.size());
    const std::string event = upstream_broken_event();
    if (co_await writer.write(event)) delivered(event.size());
    relay.row.status = http_status(Errc::upstream_error);
    co_await writer.end_stream();
  } else {
    // The row goes to the journal before the end of the answer goes out (see Relay::ending); a
    // client that leaves at this very last write is charged the whole answer.
    delivered(relay.ending.size());
    const protocol::Usage usage = co_await record_usage(relay);
    context.usage->submit();
    co_await writer.end_stream(relay.ending);
    co_return usage;
  }
  co_return co_await record_usage(relay);
}

http::awaitable<protocol::Usage> GatewayHandler::record_usage(Relay& relay) {
  const protocol::Usage usage = co_await billed_usage(relay.events, relay.stream);
  relay.row.prompt_tokens = usage.prompt_tokens;
  relay.row.completion_tokens = usage.completion_tokens;
  if (services_->options.traffic_recorder)
    services_->options.traffic_recorder->record(relay.context.request_id, relay.view, usage);
  co_return usage;
}

http::awaitable<void> GatewayHandler::settle_charge(RequestContext& context, std::int64_t used) {
  const std::int64_t reserved = context.rate ? context.rate->reserved_tokens : 0;
  if (used == reserved) co_return;
  const auto& key = *context.key;
  auto settled = co_await services_->limiter->settle_tokens(key.id, key.limits, reserved, used);
  if (!settled) spdlog::error("{}: tokens not charged: {}", context.request_id, settled.error().to_string());
}

}  // namespace rvenc::gateway
