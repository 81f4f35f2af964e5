// Private to rvenc_gateway: the gateway's composition root. GatewayServices holds every
// long-lived part a request uses (the options, the key cache and usage writer over the store, the
// rate limiters, the stream slots, the metrics, the enclave clients and pool) and the background
// loops that keep them fresh (the key-cache poll, one health check per enclave).
//
// Design: built once from GatewayOptions by GatewayServices::build, apart from the request logic
// (GatewayHandler in gateway.cpp and discovery.cpp reads these parts and never builds one), so
// adding a store, a limiter or a timer changes this file, and a rule of the request path changes
// gateway.cpp / middleware.cpp. Not movable: the pool keeps a reference to the client.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "rvenc/gateway/gateway.hpp"

namespace rvenc::gateway {

struct GatewayServices {
  // Opens the store (two handles: lookups and the usage writer) and builds the rest.
  [[nodiscard]] static Result<std::unique_ptr<GatewayServices>> build(GatewayOptions options);
  ~GatewayServices();
  GatewayServices(const GatewayServices&) = delete;
  GatewayServices& operator=(const GatewayServices&) = delete;

  // Starts the key-cache poll and the attestation refresh loops on `executor`.
  void start_background(boost::asio::any_io_executor executor);
  // Cancels them (thread-safe; they end on their executor).
  void stop_background();

  GatewayOptions options;
  KeyCache keys;
  std::unique_ptr<UsageRecorder> usage;
  InMemoryRateLimiter local_limiter;
  AddressRateLimiter attestation_limiter;
  RateLimiter* limiter = &local_limiter;  // options.rate_limiter when given
  StreamSlots streams;
  Metrics metrics;
  http::HttpClient client;
  std::unique_ptr<http::MuxClient> mux;  // null: HTTP/1.1 only (GatewayOptions::enclave_mux)
  EnclavePool enclaves;
  std::int64_t started_at = 0;  // seconds since the epoch: "created" of the models listed

 private:
  GatewayServices(GatewayOptions options, KeyStore lookups, std::unique_ptr<UsageRecorder> usage);
  http::awaitable<void> poll_keys_loop(std::shared_ptr<boost::asio::steady_timer> timer);
  // Checks enclave `index` every GatewayOptions::health_interval.
  http::awaitable<void> refresh_loop(std::shared_ptr<boost::asio::steady_timer> timer, std::size_t index);

  std::atomic<bool> stopping_{false};
  std::shared_ptr<boost::asio::steady_timer> poll_timer_;
  std::vector<std::shared_ptr<boost::asio::steady_timer>> refresh_timers_;  // one per enclave
};

}  // namespace rvenc::gateway
