#include "rvenc/bench/replicas.hpp"

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <iomanip>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/array.hpp>

#include "rvenc/bench/load.hpp"
#include "rvenc/bench/process.hpp"
#include "rvenc/client/client.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "rvenc/http/client.hpp"
#include "stack_setup.hpp"

namespace rvenc::bench {

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

constexpr std::string_view kModel = detail::kBenchModel;
constexpr unsigned kMaxStreams = 32;
constexpr unsigned kTokenDelayMs = 20;
constexpr unsigned kTokens = 64;
constexpr double kOfferedLoad = 1.5;
constexpr double kCeilingPerEnclave = kMaxStreams / (kTokens * kTokenDelayMs / 1000.0);  // 25 streams/s
constexpr auto kBusyBackoff = 100ms;

// N enclaves of the bench model and one gateway over them; stopped in reverse order.
struct ReplicaStack {
  fs::path dir;
  bool keep_dir = false;
  std::vector<std::unique_ptr<ChildProcess>> enclaves;
  std::vector<std::string> enclave_urls;
  std::unique_ptr<ChildProcess> gateway;
  std::string gateway_url, api_key;
  crypto::Ed25519PublicKey platform_public_key{};

  ~ReplicaStack() {
    gateway.reset();
    enclaves.clear();
    std::error_code ec;
    if (!keep_dir && !dir.empty()) fs::remove_all(dir, ec);
  }

  std::vector<std::string> enclave_argv(const std::string& rvenc, std::size_t i, const std::string& listen) const {
    return {rvenc, "enclave", "--listen", listen, "--attestation", "simulated", "--key-file",
            (dir / ("enclave-" + std::to_string(i) + ".key")).string(), "--platform-key", (dir / "platform.key").string(),
            "--gateway-token-file", (dir / "gateway.token").string(), "--demo-model", std::string(kModel),
            "--demo-delay-ms", std::to_string(kTokenDelayMs), "--max-streams", std::to_string(kMaxStreams),
            "--replay-tenant-share", "1000000"};
  }
};

Status start_replicas(ReplicaStack& stack, const ReplicaBenchOptions& options, unsigned count) {
  auto dir = detail::make_temp_dir("rvenc-bench-replicas");
  if (!dir) return std::unexpected(dir.error());
  stack.dir = std::move(*dir);
  stack.keep_dir = options.keep_temp;
  stack.platform_public_key = detail::write_stack_secrets(stack.dir).platform_public_key;
  for (unsigned i = 0; i < count; ++i) {
    stack.enclaves.push_back(std::make_unique<ChildProcess>(stack.enclave_argv(options.rvenc_binary, i, "127.0.0.1:0"),
                                                            stack.dir / ("enclave-" + std::to_string(i) + ".log")));
    auto url = stack.enclaves.back()->wait_for_url();
    if (!url) return std::unexpected(url.error());
    stack.enclave_urls.push_back(*url);
  }
  const std::string db = (stack.dir / "rvenc.db").string();
  auto key = detail::create_api_key(options.rvenc_binary, db, "bench", stack.dir);
  if (!key) return std::unexpected(key.error());
  stack.api_key = std::move(key->api_key);
  std::vector<std::string> argv{options.rvenc_binary, "gateway", "--listen", "127.0.0.1:0", "--db", db,
                                "--enclave-token-file", (stack.dir / "gateway.token").string()};
  for (const auto& url : stack.enclave_urls) argv.insert(argv.end(), {"--enclave", url});
  stack.gateway = std::make_unique<ChildProcess>(argv, stack.dir / "gateway.log");
  auto url = stack.gateway->wait_for_url();
  if (!url) return std::unexpected(url.error());
  stack.gateway_url = *url;
  return {};
}

Result<client::Client> client_of(const ReplicaStack& stack) {
  client::ClientOptions options;
  options.api_key = stack.api_key;
  options.base_url = stack.gateway_url;
  options.attestation.allowed_providers = {"simulated"};
  options.attestation.simulated_platform_key = stack.platform_public_key;
  options.request_timeout = 30s;
  return client::create_client(std::move(options));
}

json::object chat_request(unsigned tokens) {
  return json::object{{"model", kModel},
                      {"messages", json::array{json::object{{"role", "user"}, {"content", "benchmark"}}}},
                      {"stream", true},
                      {"max_tokens", tokens}};
}

// One streaming call; enclave_busy waits kBusyBackoff before the worker's next request.
StreamCall busy_aware_call(client::Client client) {
  return [client = std::move(client)](std::function<void()> on_chunk) -> http::awaitable<Status> {
    auto status = co_await client.chat.completions.async_create(
        chat_request(kTokens), [&on_chunk](const client::Chunk&) -> http::awaitable<Status> {
          on_chunk();
          co_return Status{};
        });
    if (!status && status.error().code == Errc::enclave_busy) {
      boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, kBusyBackoff);
      co_await timer.async_wait(boost::asio::use_awaitable);
    }
    co_return status;
  };
}

// rvenc_gateway_enclave_requests_total per enclave URL.
std::map<std::string, double> enclave_requests(const std::string& gateway_url) {
  std::map<std::string, double> counts;
  auto response = http::fetch("GET", gateway_url + "/metrics");
  if (!response) return counts;
  static const std::regex line(R"re(rvenc_gateway_enclave_requests_total\{enclave="([^"]+)"\} ([0-9.e+]+))re");
  const std::string body = response->body();
  for (std::sregex_iterator it(body.begin(), body.end(), line), end; it != end; ++it)
    counts[(*it)[1]] = std::stod((*it)[2]);
  return counts;
}

Result<json::object> scaling_run(const ReplicaBenchOptions& options, unsigned count) {
  ReplicaStack stack;
  if (auto started = start_replicas(stack, options, count); !started) return std::unexpected(started.error());
  auto client = client_of(stack);
  if (!client) return std::unexpected(client.error());
  if (auto warm = client->chat.completions.create(chat_request(1)); !warm)
    return fail(Errc::internal_error, "the first request failed: " + warm.error().to_string());
  const auto before = enclave_requests(stack.gateway_url);
  LoadGenerator load(2);
  PhaseSpec spec;
  spec.concurrency = static_cast<unsigned>(kOfferedLoad * kMaxStreams * count);
  spec.warmup = options.quick ? 2000ms : 3000ms;
  spec.duration = options.quick ? 5000ms : 10000ms;
  spec.stagger = 1280ms;
  std::cerr << "bench --enclaves: " << count << " enclave(s), " << spec.concurrency << " workers\n";
  const PhaseResult result = load.run(spec, busy_aware_call(*client), {stack.gateway->pid()}, [](const Progress&) {});
  const auto after = enclave_requests(stack.gateway_url);
  std::vector<double> served;
  for (const auto& url : stack.enclave_urls) served.push_back((after.contains(url) ? after.at(url) : 0) -
                                                             (before.contains(url) ? before.at(url) : 0));
  const double busiest = *std::max_element(served.begin(), served.end());
  const double least = *std::min_element(served.begin(), served.end());
  const double streams_per_s = result.window_s > 0 ? static_cast<double>(result.requests) / result.window_s : 0;
  json::object run{{"enclaves", count},
                   {"workers", spec.concurrency},
                   {"window_s", result.window_s},
                   {"completed_streams_per_s", streams_per_s},
                   {"ceiling_streams_per_s", kCeilingPerEnclave * count},
                   {"of_ceiling", streams_per_s / (kCeilingPerEnclave * count)},
                   {"refused_or_failed", result.errors},
                   {"busiest_over_least_busy", least > 0 ? busiest / least : 0.0},
                   {"gateway_cpu_percent", result.cpu_seconds.empty() || result.window_s <= 0
                                               ? 0.0 : 100 * result.cpu_seconds[0] / result.window_s}};
  json::array shares;
  for (double s : served) shares.push_back(s);
  run["requests_per_enclave"] = std::move(shares);
  if (!result.first_error.empty()) run["first_error"] = result.first_error;
  return run;
}

// Kill -9 replica 0 of two, then time until a request is served; restart it; `kills` times.
Result<json::object> failover_series(const ReplicaBenchOptions& options, unsigned kills) {
  ReplicaStack stack;
  if (auto started = start_replicas(stack, options, 2); !started) return std::unexpected(started.error());
  auto client = client_of(stack);
  if (!client) return std::unexpected(client.error());
  std::vector<double> times_ms;
  for (unsigned k = 0; k < kills; ++k) {
    if (auto warm = client->chat.completions.create(chat_request(1)); !warm)
      return fail(Errc::internal_error, "before kill " + std::to_string(k) + ": " + warm.error().to_string());
    const std::size_t victim = k % 2;
    const auto killed_at = std::chrono::steady_clock::now();
    ::kill(stack.enclaves[victim]->pid(), SIGKILL);
    (void)stack.enclaves[victim]->wait_exit(kChildStopGrace);
    for (int attempt = 0; attempt < 100; ++attempt)
      if (client->chat.completions.create(chat_request(1))) break;
    times_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - killed_at).count());
    const std::string listen = stack.enclave_urls[victim].substr(std::string("http://").size());
    stack.enclaves[victim] = std::make_unique<ChildProcess>(stack.enclave_argv(options.rvenc_binary, victim, listen),
                                                            stack.dir / ("enclave-" + std::to_string(victim) + ".log"));
    if (auto url = stack.enclaves[victim]->wait_for_url(); !url) return std::unexpected(url.error());
    std::this_thread::sleep_for(2500ms);  // the gateway's health loop sees it up again
  }
  std::sort(times_ms.begin(), times_ms.end());
  return json::object{{"kills", kills}, {"p50_ms", quantile(times_ms, 0.5)}, {"max_ms", times_ms.back()}};
}

std::string fixed(double value, int digits) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(digits) << value;
  return out.str();
}

}  // namespace

Result<json::object> run_replica_bench(const ReplicaBenchOptions& options) {
  json::array runs;
  for (unsigned count : options.enclave_counts) {
    auto run = scaling_run(options, count);
    if (!run) return std::unexpected(run.error());
    runs.push_back(std::move(*run));
  }
  json::object report{{"max_streams", kMaxStreams}, {"token_delay_ms", kTokenDelayMs}, {"tokens", kTokens},
                      {"offered_load", kOfferedLoad}, {"cpu", cpu_model()}, {"runs", std::move(runs)}};
  if (auto load = load_average()) report["load_average_at_end"] = *load;
  auto failover = failover_series(options, options.quick ? 5 : 20);
  if (!failover) return std::unexpected(failover.error());
  report["failover"] = std::move(*failover);
  return report;
}

std::string replica_table(const json::object& report) {
  std::ostringstream out;
  out << "| enclaves | workers | completed streams/s | of ceiling | vs 1 enclave | busiest / least busy | gateway CPU % | refused or failed |\n"
         "|---|---|---|---|---|---|---|---|\n";
  double one = 0;
  for (const auto& value : report.at("runs").as_array()) {
    const auto& run = value.as_object();
    const double rate = run.at("completed_streams_per_s").to_number<double>();
    if (run.at("enclaves").to_number<double>() == 1) one = rate;
    out << "| " << run.at("enclaves").to_number<std::int64_t>() << " | " << run.at("workers").to_number<std::int64_t>()
        << " | " << fixed(rate, 1) << " | " << fixed(100 * run.at("of_ceiling").to_number<double>(), 0) << " % | "
        << (one > 0 ? fixed(rate / one, 2) : std::string("-")) << " | "
        << fixed(run.at("busiest_over_least_busy").to_number<double>(), 2) << " | "
        << fixed(run.at("gateway_cpu_percent").to_number<double>(), 0) << " | "
        << run.at("refused_or_failed").to_number<std::int64_t>() << " |\n";
  }
  const auto& failover = report.at("failover").as_object();
  out << "\nFailover (kill -9 of one of two replicas to the first request served): "
      << failover.at("kills").to_number<std::int64_t>() << " kills, p50 " << fixed(failover.at("p50_ms").to_number<double>(), 0)
      << " ms, max " << fixed(failover.at("max_ms").to_number<double>(), 0) << " ms\n";
  return out.str();
}

}  // namespace rvenc::bench
