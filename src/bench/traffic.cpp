#include "rvenc/bench/traffic.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "rvenc/bench/process.hpp"
#include "rvenc/client/client.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "rvenc/enclave/engine.hpp"
#include "stack_setup.hpp"

namespace rvenc::bench {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kQuickPerClass = 40;
constexpr std::size_t kFullPerClass = 120;
constexpr auto kHarnessTimeout = 300'000ms;
constexpr std::array<protocol::ShapingMode, 3> kModes = {protocol::ShapingMode::off, protocol::ShapingMode::pad,
                                                         protocol::ShapingMode::cadence};

struct TrafficStack {
  fs::path dir;
  bool keep_dir = false;
  std::unique_ptr<ChildProcess> enclave;
  std::unique_ptr<ChildProcess> gateway;
  std::string gateway_url, api_key;
  crypto::Ed25519PublicKey platform_public_key{};

  ~TrafficStack() {
    gateway.reset();
    enclave.reset();
    std::error_code ec;
    if (keep_dir) std::cerr << "rvenc bench traffic: kept " << dir.string() << "\n";
    if (!keep_dir && !dir.empty()) fs::remove_all(dir, ec);
  }
};

// Runs the harness with `args` to its end; its output, or internal_error quoting it.
Result<std::string> run_harness(const TrafficOptions& options, const fs::path& dir, std::vector<std::string> args,
                                const std::string& name) {
  std::vector<std::string> argv{"/usr/bin/python3", options.harness};  // the one setup_sklearn.sh serves
  argv.insert(argv.end(), args.begin(), args.end());
  ChildProcess harness(argv, dir / (name + ".log"));
  const auto status = harness.wait_exit(kHarnessTimeout);
  if (status != 0)
    return fail(Errc::internal_error, "the traffic harness (" + name + ") failed:\n" + harness.output());
  return harness.output();
}

Status start_stack(TrafficStack& stack, const TrafficOptions& options, const fs::path& corpus) {
  const std::string& rvenc = options.rvenc_binary;
  stack.platform_public_key = detail::write_stack_secrets(stack.dir).platform_public_key;
  stack.enclave = std::make_unique<ChildProcess>(
      std::vector<std::string>{rvenc, "enclave", "--listen", "127.0.0.1:0", "--attestation", "simulated",
                               "--key-file", (stack.dir / "enclave.key").string(), "--platform-key",
                               (stack.dir / "platform.key").string(), "--gateway-token-file",
                               (stack.dir / "gateway.token").string(), "--demo-replay", corpus.string(),
                               "--shaping-allow", "off,pad,cadence", "--replay-tenant-share", "1000000"},
      stack.dir / "enclave.log");
  auto enclave_url = stack.enclave->wait_for_url();
  if (!enclave_url) return std::unexpected(enclave_url.error());
  const std::string db = (stack.dir / "rvenc.db").string();
  auto key = detail::create_api_key(rvenc, db, "traffic", stack.dir);
  if (!key) return std::unexpected(key.error());
  stack.api_key = std::move(key->api_key);
  stack.gateway = std::make_unique<ChildProcess>(
      std::vector<std::string>{rvenc, "gateway", "--listen", "127.0.0.1:0", "--db", db, "--enclave", *enclave_url,
                               "--enclave-token-file", (stack.dir / "gateway.token").string(), "--quiet",
                               "--record-traffic", (stack.dir / "traffic.jsonl").string()},
      stack.dir / "gateway.log");
  auto gateway_url = stack.gateway->wait_for_url();
  if (!gateway_url) return std::unexpected(gateway_url.error());
  stack.gateway_url = *gateway_url;
  return {};
}

// What the client saw of one stream: a line of streams.jsonl.
json::object play(const client::Client& client, protocol::ShapingMode mode, std::size_t answer) {
  const json::object request{
      {"model", enclave::kDefaultDemoModel},
      {"messages", json::array{json::object{{"role", "user"}, {"content", std::string(enclave::kReplayPrefix) +
                                                                              std::to_string(answer)}}}},
      {"stream", true},
      {protocol::kShapingMember, protocol::shaping_member(mode)}};
  std::string request_id;
  std::optional<Clock::time_point> first, last;
  const auto start = Clock::now();
  client::CallOptions call;
  call.on_response = [&](const client::ResponseMeta& meta) { request_id = meta.header("x-request-id").value_or(""); };
  const auto status = client.chat.completions.create(
      request,
      [&](const client::Chunk& chunk) -> Status {
        const auto* choices = chunk.object.if_contains("choices");
        if (!choices || !choices->is_array() || choices->get_array().empty()) return {};
        const auto* delta = choices->get_array()[0].as_object().if_contains("delta");
        const auto* content = delta && delta->is_object() ? delta->get_object().if_contains("content") : nullptr;
        if (content && content->is_string() && !content->get_string().empty()) {
          last = Clock::now();
          if (!first) first = last;
        }
        return {};
      },
      call);
  const auto ms = [&](std::optional<Clock::time_point> t) {
    return t ? std::chrono::duration<double, std::milli>(*t - start).count() : 0.0;
  };
  return json::object{{"requestId", request_id},     {"mode", protocol::shaping_mode_name(mode)},
                      {"answer", answer},             {"ok", status.has_value() && first.has_value()},
                      {"ttftMs", ms(first)},          {"lastTokenMs", ms(last)},
                      {"doneMs", ms(Clock::now())},   {"error", status ? "" : status.error().to_string()}};
}

// Every answer once per mode, `concurrency` streams at once (modes interleaved, so load drifts
// hit them alike); one line per stream into streams.jsonl.
Status play_all(const TrafficStack& stack, const TrafficOptions& options, std::size_t answers) {
  client::ClientOptions client_options;
  client_options.api_key = stack.api_key;
  client_options.base_url = stack.gateway_url;
  client_options.attestation.allowed_providers = {"simulated"};
  client_options.attestation.simulated_platform_key = stack.platform_public_key;
  client_options.request_timeout = 60s;
  auto first = client::create_client(client_options);
  if (!first) return std::unexpected(first.error());
  auto keys = first->generate_encryption_keys();
  if (!keys) return std::unexpected(keys.error());
  client_options.encryption_keys = *keys;

  std::ofstream out(stack.dir / "streams.jsonl", std::ios::trunc);
  std::mutex out_mutex;
  std::atomic<std::size_t> next{0}, failed{0};
  const std::size_t jobs = answers * kModes.size();
  auto worker = [&] {
    auto client = client::create_client(client_options);
    if (!client) {
      failed += jobs;
      return;
    }
    for (std::size_t job = next++; job < jobs; job = next++) {
      const auto line = play(*client, kModes[job % kModes.size()], job / kModes.size());
      const std::scoped_lock lock(out_mutex);
      if (!line.at("ok").as_bool()) ++failed;
      out << json::serialize(line) << "\n";
      if (job % 30 == 0) std::cerr << "rvenc bench traffic: " << job << "/" << jobs << " streams\n";
    }
  };
  std::vector<std::jthread> workers;
  for (unsigned i = 0; i < std::max(1U, options.concurrency); ++i) workers.emplace_back(worker);
  workers.clear();
  out.flush();
  if (failed > jobs / 10)
    return fail(Errc::internal_error, std::to_string(failed.load()) + " of " + std::to_string(jobs) +
                                          " streams failed; see " + (stack.dir / "streams.jsonl").string());
  return {};
}

}  // namespace

Result<json::object> run_traffic_bench(const TrafficOptions& given) {
  TrafficOptions options = given;
  if (options.harness.empty()) options.harness = std::string(RVENC_SOURCE_DIR) + "/bench/traffic/traffic.py";
  if (::access(options.harness.c_str(), R_OK) != 0)
    return fail(Errc::internal_error, "cannot read the traffic harness " + options.harness + " (--harness)");
  TrafficStack stack;
  auto dir = detail::make_temp_dir("rvenc-bench-traffic");
  if (!dir) return std::unexpected(dir.error());
  stack.dir = std::move(*dir);
  stack.keep_dir = options.keep_temp;

  const std::size_t per_class = options.quick ? kQuickPerClass : kFullPerClass;
  const fs::path corpus = stack.dir / "corpus.jsonl";
  std::cerr << "rvenc bench traffic: corpus of " << 2 * per_class << " answers (seed " << options.seed << ")\n";
  if (auto made = run_harness(options, stack.dir,
                              {"corpus", "--seed", std::to_string(options.seed), "--per-class",
                               std::to_string(per_class), "--out", corpus.string()},
                              "corpus");
      !made)
    return std::unexpected(made.error());
  if (auto started = start_stack(stack, options, corpus); !started) return std::unexpected(started.error());
  std::cerr << "rvenc bench traffic: playing every answer in modes off, pad, cadence\n";
  if (auto played = play_all(stack, options, 2 * per_class); !played) return std::unexpected(played.error());
  // The gateway writes a stream's line when it has relayed its end: stop it so every line is out.
  stack.gateway->stop();

  std::cerr << "rvenc bench traffic: attacking the gateway's view (scikit-learn)\n";
  const fs::path report_file = stack.dir / "report.json";
  std::vector<std::string> args{"classify", "--dir", stack.dir.string(), "--json", report_file.string()};
  if (!options.svg.empty()) args.insert(args.end(), {"--svg", options.svg});
  auto table = run_harness(options, stack.dir, args, "classify");
  if (!table) return std::unexpected(table.error());
  std::ifstream in(report_file);
  std::stringstream text;
  text << in.rdbuf();
  boost::system::error_code ec;
  auto report = json::parse(text.str(), ec);
  if (ec || !report.is_object()) return fail(Errc::internal_error, "the traffic harness wrote no report");
  report.as_object()["table"] = *table;
  return std::move(report.as_object());
}

}  // namespace rvenc::bench
