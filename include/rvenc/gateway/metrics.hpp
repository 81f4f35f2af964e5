// The gateway's Prometheus metrics (GET /metrics, text format 0.0.4): responses by status code,
// active streams, bytes in/out, and a histogram of the latency the gateway adds (time from
// receiving a request to forwarding the first byte, minus the enclave's time to its response head),
// and connections refused at accept by reason (per_ip cap, max_connections); per enclave, the
// requests this gateway sent it and those in flight (render_enclave_metrics).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "rvenc/gateway/enclave_pool.hpp"

namespace rvenc::gateway {

inline constexpr std::array<double, 12> kLatencyBucketsSeconds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                                 0.01,   0.025,   0.05,   0.1,   0.25,   1.0};

// rvenc_gateway_enclave_requests_total{enclave="URL"} and rvenc_gateway_enclave_in_flight{enclave="URL"}.
[[nodiscard]] std::string render_enclave_metrics(const std::vector<EnclaveState>& enclaves);

class Metrics {
 public:
  void count_response(unsigned status);
  void add_bytes_in(std::uint64_t n) noexcept { bytes_in_ += n; }
  void add_bytes_out(std::uint64_t n) noexcept { bytes_out_ += n; }
  void stream_started() noexcept { ++active_streams_; }
  void stream_ended() noexcept { --active_streams_; }
  void observe_added_latency(double seconds);
  // A connection refused at accept: "per_ip" or "max_connections" (http::ServerOptions).
  void count_refused_connection(std::string_view reason) noexcept;

  [[nodiscard]] std::string render(std::size_t enclaves_up, std::size_t enclaves_total) const;

 private:
  mutable std::mutex mutex_;
  std::map<unsigned, std::uint64_t> responses_;
  std::array<std::uint64_t, kLatencyBucketsSeconds.size()> latency_buckets_{};
  std::uint64_t latency_count_ = 0;
  double latency_sum_ = 0;
  std::atomic<std::uint64_t> bytes_in_{0};
  std::atomic<std::uint64_t> bytes_out_{0};
  std::atomic<std::int64_t> active_streams_{0};
  std::atomic<std::uint64_t> refused_per_ip_{0};
  std::atomic<std::uint64_t> refused_max_connections_{0};
};

}  // namespace rvenc::gateway
