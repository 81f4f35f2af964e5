// The gateway's composition root (services.hpp) and the Gateway that serves a GatewayHandler on
// an http::Server: everything built once per process, nothing of a single request.
#include "services.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <spdlog/spdlog.h>

#include "rvenc/common/clock.hpp"

namespace rvenc::gateway {

namespace asio = boost::asio;

Result<std::unique_ptr<GatewayServices>> GatewayServices::build(GatewayOptions options) {
  if (options.enclaves.empty()) return fail(Errc::invalid_request, "at least one --enclave is needed");
  auto lookups = KeyStore::open(options.db_path, options.store);
  if (!lookups) return std::unexpected(lookups.error());
  store::StoreOptions writer_options = options.store;
  writer_options.pool_size = 1;  // one writer thread
  auto writer = KeyStore::open(options.db_path, writer_options);
  if (!writer) return std::unexpected(writer.error());
  return std::unique_ptr<GatewayServices>(new GatewayServices(
      std::move(options), std::move(*lookups), std::make_unique<UsageRecorder>(std::move(*writer))));
}

GatewayServices::GatewayServices(GatewayOptions options_in, KeyStore lookups, std::unique_ptr<UsageRecorder> usage_in)
    : options(std::move(options_in)),
      keys(std::move(lookups), options.store_failure),
      usage(std::move(usage_in)),
      // A client may attest every enclave: at least two requests per enclave at once.
      attestation_limiter(options.attestation_per_minute <= 0
                              ? 0
                              : std::max<std::int64_t>(options.attestation_per_minute,
                                                       2 * static_cast<std::int64_t>(options.enclaves.size()))),
      client(http::HttpClientOptions{.ca_file = options.enclave_ca_file}),
      enclaves(options.enclaves, client) {
  if (options.rate_limiter) limiter = options.rate_limiter.get();
  if (options.enclave_mux) {
    http::MuxClientOptions mux_options;
    // Head room for the headers the gateway adds.
    constexpr std::size_t kHeadRoom = 16 * 1024;
    mux_options.max_request_bytes = std::max<std::size_t>(mux_options.max_request_bytes, options.max_body + kHeadRoom);
    if (!options.enclave_token.empty()) mux_options.authorization = "Bearer " + options.enclave_token;
    mux = std::make_unique<http::MuxClient>(client, std::move(mux_options));
  }
  started_at = unix_now();
}

GatewayServices::~GatewayServices() { stop_background(); }

void GatewayServices::start_background(asio::any_io_executor executor) {
  keys.watch();  // PostgreSQL: key changes pushed (LISTEN/NOTIFY); SQLite: the poll below only
  poll_timer_ = std::make_shared<asio::steady_timer>(executor);
  asio::co_spawn(executor, poll_keys_loop(poll_timer_), asio::detached);
  for (std::size_t i = 0; i < enclaves.size(); ++i) {
    refresh_timers_.push_back(std::make_shared<asio::steady_timer>(executor));
    asio::co_spawn(executor, refresh_loop(refresh_timers_.back(), i), asio::detached);
  }
}

void GatewayServices::stop_background() {
  if (stopping_.exchange(true)) return;
  // The services let go of the timers: they belong to the executor's io_context, and the services
  // outlive it (Gateway destroys the server first). The loops and the posted cancels keep them
  // until they end, at the latest while that io_context shuts down.
  auto timers = std::exchange(refresh_timers_, {});
  timers.push_back(std::exchange(poll_timer_, nullptr));
  for (auto& timer : timers)
    if (timer) asio::post(timer->get_executor(), [timer] { timer->cancel(); });
}

http::awaitable<void> GatewayServices::poll_keys_loop(std::shared_ptr<asio::steady_timer> timer) {
  while (!stopping_) {
    timer->expires_after(kKeysPollInterval);
    boost::system::error_code ec;
    co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopping_) break;
    auto polled = keys.poll();
    if (!polled) spdlog::warn("key cache poll failed: {}", polled.error().to_string());
  }
}

http::awaitable<void> GatewayServices::refresh_loop(std::shared_ptr<asio::steady_timer> timer, std::size_t index) {
  while (!stopping_) {
    timer->expires_after(options.health_interval);
    boost::system::error_code ec;
    co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopping_) break;
    co_await enclaves.refresh_enclave(index);
  }
}

namespace {

// The listener's settings from the gateway's options.
http::ServerOptions server_options(const GatewayOptions& options) {
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
  return server_options;
}

}  // namespace

Result<std::unique_ptr<Gateway>> Gateway::create(GatewayOptions options) {
  std::unique_ptr<Gateway> gateway(new Gateway());
  http::ServerOptions listener = server_options(options);
  auto handler = GatewayHandler::create(std::move(options));
  if (!handler) return std::unexpected(handler.error());
  gateway->handler_ = std::move(*handler);
  listener.on_connection_refused = [&metrics = gateway->handler_->metrics()](std::string_view reason) {
    metrics.count_refused_connection(reason);
  };
  auto server = http::Server::create(listener, gateway->handler_->handler());
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

void Gateway::run() {
  start();
  wait();
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
