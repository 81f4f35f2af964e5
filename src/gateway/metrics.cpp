#include "rvenc/gateway/metrics.hpp"

#include <sstream>

namespace rvenc::gateway {

void Metrics::count_response(unsigned status) {
  std::lock_guard lock(mutex_);
  ++responses_[status];
}

void Metrics::observe_added_latency(double seconds) {
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < kLatencyBucketsSeconds.size(); ++i)
    if (seconds <= kLatencyBucketsSeconds[i]) ++latency_buckets_[i];
  ++latency_count_;
  latency_sum_ += seconds;
}

void Metrics::count_refused_connection(std::string_view reason) noexcept {
  ++(reason == "per_ip" ? refused_per_ip_ : refused_max_connections_);
}

std::string Metrics::render(std::size_t enclaves_up, std::size_t enclaves_total) const {
  std::lock_guard lock(mutex_);
  std::ostringstream out;
  auto family = [&out](std::string_view name, std::string_view type, std::string_view help) {
    out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  };
  family("rvenc_gateway_requests_total", "counter", "Responses sent, by HTTP status code.");
  for (const auto& [status, count] : responses_) out << "rvenc_gateway_requests_total{code=\"" << status << "\"} " << count << '\n';
  family("rvenc_gateway_active_streams", "gauge", "Event streams being relayed now.");
  out << "rvenc_gateway_active_streams " << active_streams_.load() << '\n';
  family("rvenc_gateway_bytes_in_total", "counter", "Request body bytes received from clients.");
  out << "rvenc_gateway_bytes_in_total " << bytes_in_.load() << '\n';
  family("rvenc_gateway_bytes_out_total", "counter", "Response body bytes sent to clients.");
  out << "rvenc_gateway_bytes_out_total " << bytes_out_.load() << '\n';
  family("rvenc_gateway_connections_refused_total", "counter",
         "Client connections refused at accept: per_ip (--max-connections-per-ip), max_connections.");
  out << "rvenc_gateway_connections_refused_total{reason=\"per_ip\"} " << refused_per_ip_.load() << '\n';
  out << "rvenc_gateway_connections_refused_total{reason=\"max_connections\"} " << refused_max_connections_.load()
      << '\n';
  family("rvenc_gateway_enclaves_up", "gauge", "Enclaves that answered their last attestation check.");
  out << "rvenc_gateway_enclaves_up " << enclaves_up << '\n';
  family("rvenc_gateway_enclaves", "gauge", "Enclaves configured.");
  out << "rvenc_gateway_enclaves " << enclaves_total << '\n';
  family("rvenc_gateway_added_latency_seconds", "histogram",
         "Time the gateway adds before the first byte it forwards (enclave time excluded).");
  for (std::size_t i = 0; i < kLatencyBucketsSeconds.size(); ++i)
    out << "rvenc_gateway_added_latency_seconds_bucket{le=\"" << kLatencyBucketsSeconds[i] << "\"} "
        << latency_buckets_[i] << '\n';
  out << "rvenc_gateway_added_latency_seconds_bucket{le=\"+Inf\"} " << latency_count_ << '\n';
  out << "rvenc_gateway_added_latency_seconds_sum " << latency_sum_ << '\n';
  out << "rvenc_gateway_added_latency_seconds_count " << latency_count_ << '\n';
  return out.str();
}

namespace {

// A Prometheus label value: backslash, double quote and newline escaped.
std::string label_value(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

std::string render_enclave_metrics(const std::vector<EnclaveState>& enclaves) {
  std::ostringstream out;
  out << "# HELP rvenc_gateway_enclave_requests_total Chat requests this gateway sent to each enclave.\n"
         "# TYPE rvenc_gateway_enclave_requests_total counter\n";
  for (const auto& e : enclaves)
    out << "rvenc_gateway_enclave_requests_total{enclave=\"" << label_value(e.url.origin()) << "\"} " << e.requests << '\n';
  out << "# HELP rvenc_gateway_enclave_in_flight This gateway's chat requests in flight at each enclave.\n"
         "# TYPE rvenc_gateway_enclave_in_flight gauge\n";
  for (const auto& e : enclaves)
    out << "rvenc_gateway_enclave_in_flight{enclave=\"" << label_value(e.url.origin()) << "\"} " << e.in_flight << '\n';
  return out.str();
}

}  // namespace rvenc::gateway
