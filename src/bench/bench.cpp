#include "rvenc/bench/bench.hpp"

#include <sodium.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "rvenc/bench/engine.hpp"
#include "rvenc/bench/load.hpp"
#include "rvenc/bench/process.hpp"
#include "rvenc/bench/tls.hpp"
#include "rvenc/client/client.hpp"
#include "rvenc/client/response.hpp"
#include "rvenc/common/clock.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "rvenc/enclave/key.hpp"
#include "rvenc/enclave/replay.hpp"
#include "rvenc/protocol/envelope.hpp"
#include "rvenc/protocol/sealing.hpp"
#include "stack_setup.hpp"

namespace rvenc::bench {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

constexpr std::string_view kModel = detail::kBenchModel;
constexpr std::string_view kRvencChatPath = "/rvenc/chat/completions";
// End-to-end fresh/reused comparison: one-chunk requests from this many concurrent streams.
constexpr unsigned kE2eConcurrency = 16;
constexpr std::chrono::milliseconds kHoldTimeout{60'000};
// After the last held stream opened: let the gateway settle before reading its RSS.
constexpr std::chrono::milliseconds kRssSettle{500};
constexpr std::size_t kQuantileSteps = 100;  // the report keeps TTFT at every percentile
// The concurrency of the headline figures (and of the per-request/per-chunk CPU split).
constexpr unsigned kHeadlineConcurrency = 256;
// Mode of the phases with one-chunk answers that split a proxy's CPU into per request and per chunk.
constexpr std::string_view kOneChunkMode = "one_chunk";

// How long and how wide a run is.
struct Plan {
  std::vector<unsigned> concurrencies;  // saturated phases
  std::vector<unsigned> paced_concurrencies;
  std::chrono::milliseconds saturated_warmup, saturated_window, paced_warmup, paced_window;
  std::size_t saturated_chunks;  // chunks per request
  std::size_t paced_chunks;
  unsigned rss_streams;
  unsigned crypto_cached_iterations, crypto_fresh_iterations;
  std::chrono::milliseconds e2e_window;
  bool one_chunk_phases;  // a one-chunk phase per proxy at kHeadlineConcurrency (split_proxy_cpu)
  unsigned tls_handshakes;  // --tls: new connections (full handshakes) measured per front
};

Plan make_plan(bool quick) {
  if (quick)
    return Plan{{1, 16, 256}, {256}, 800ms, 1800ms, 700ms, 2500ms, 32, 32, 256, 2000, 200, 1500ms, false, 300};
  return Plan{{1, 16, 256, 1024}, {1, 16, 256, 1024}, 1500ms, 5000ms, 1500ms, 6000ms, 32, 32, 1000, 10000, 1000, 4000ms,
              true, 2000};
}

std::string chat_body(std::size_t chunks) {
  return json::serialize(json::object{{"model", kModel},
                                      {"messages", json::array{json::object{{"role", "user"}, {"content", "benchmark"}}}},
                                      {"stream", true},
                                      {"max_tokens", chunks}});
}

// The progress line: overwritten in place on a terminal; elsewhere (logs) only the steps and
// the result of each phase, one line each.
class ProgressLine {
 public:
  ProgressLine() : tty_(::isatty(STDERR_FILENO) == 1) {}
  void show(const std::string& text, bool step = true) {
    if (tty_) {
      std::cerr << "\r\033[K" << text << std::flush;
    } else if (step && text != last_) {
      std::cerr << text << "\n";
    }
    last_ = text;
  }
  void finish_line() {
    if (tty_ && !last_.empty()) std::cerr << "\n";
    last_.clear();
  }
  [[nodiscard]] bool tty() const { return tty_; }

 private:
  bool tty_;
  std::string last_;
};

// Everything the run starts; destroyed (stopped) in reverse order.
struct Stack {
  fs::path dir;
  bool keep_dir = false;
  std::unique_ptr<FastEngine> engine;
  std::unique_ptr<ChildProcess> enclave;
  std::unique_ptr<ChildProcess> gateway;
  std::unique_ptr<ChildProcess> nginx;
  std::string enclave_url, gateway_url, nginx_url;
  std::string api_key;
  crypto::Ed25519PublicKey platform_public_key{};
  std::optional<BenchTlsFiles> tls;  // --tls: what both fronts serve and the clients trust

  ~Stack() {
    nginx.reset();
    gateway.reset();
    enclave.reset();
    engine.reset();
    std::error_code ec;
    if (!keep_dir && !dir.empty()) fs::remove_all(dir, ec);
  }
};

Status start_stack(Stack& stack, const BenchOptions& options) {
  auto dir = detail::make_temp_dir("rvenc-bench");
  if (!dir) return std::unexpected(dir.error());
  stack.dir = std::move(*dir);
  stack.keep_dir = options.keep_temp;

  auto engine = FastEngine::start();
  if (!engine) return std::unexpected(engine.error());
  stack.engine = std::move(*engine);

  // Keys the enclave would otherwise create; the platform public key is what the SDK trusts.
  const auto secrets = detail::write_stack_secrets(stack.dir);
  stack.platform_public_key = secrets.platform_public_key;
  const std::string& gateway_token = secrets.gateway_token;

  const std::string& rvenc = options.rvenc_binary;
  stack.enclave = std::make_unique<ChildProcess>(
      std::vector<std::string>{rvenc, "enclave", "--listen", "127.0.0.1:0", "--key-file",
                               (stack.dir / "enclave.key").string(), "--platform-key",
                               (stack.dir / "platform.key").string(), "--attestation", "simulated",
                               "--gateway-token-file", (stack.dir / "gateway.token").string(), "--upstream",
                               std::string(kModel) + "=" + stack.engine->url() + "/v1",
                               // One API key carries the whole load: it may use the whole replay cache.
                               "--replay-tenant-share", std::to_string(enclave::kDefaultReplayCacheEntries)},
      stack.dir / "enclave.log");
  auto enclave_url = stack.enclave->wait_for_url();
  if (!enclave_url) return std::unexpected(enclave_url.error());
  stack.enclave_url = *enclave_url;

  const std::string db = options.gateway_db.empty() ? (stack.dir / "rvenc.db").string() : options.gateway_db;
  auto key = detail::create_api_key(rvenc, db, "bench", stack.dir);
  if (!key) return std::unexpected(key.error());
  stack.api_key = key->api_key;

  std::vector<std::string> gateway_argv{rvenc,  "gateway", "--listen", "127.0.0.1:0", "--enclave", stack.enclave_url,
                                        "--db", db,        "--enclave-token-file", (stack.dir / "gateway.token").string(),
                                        "--usage-journal-dir", stack.dir.string()};
  if (options.enclave_http1) gateway_argv.emplace_back("--enclave-http1");
  std::map<std::string, std::string> gateway_env;
  if (options.tls) {
    auto tls = prepare_bench_tls(stack.dir / "tls", kPinnedTlsSuite);
    if (!tls) return std::unexpected(tls.error());
    stack.tls = *tls;
    for (const auto& arg : {std::string("--tls-cert"), tls->cert_file.string(), std::string("--tls-key"), tls->key_file.string()})
      gateway_argv.push_back(arg);
    gateway_env["OPENSSL_CONF"] = tls->openssl_conf.string();  // the suite pin (tls.hpp)
  }
  stack.gateway = std::make_unique<ChildProcess>(gateway_argv, stack.dir / "gateway.log", gateway_env);
  auto gateway_url = stack.gateway->wait_for_url();
  if (!gateway_url) return std::unexpected(gateway_url.error());
  stack.gateway_url = *gateway_url;

  auto enclave_parsed = http::parse_url(stack.enclave_url);
  auto nginx_port = free_port();
  if (!enclave_parsed || !nginx_port) return fail(Errc::internal_error, "cannot prepare the nginx configuration");
  NginxConfig config;
  config.dir = stack.dir / "nginx";
  config.listen_port = *nginx_port;
  config.enclave_port = enclave_parsed->port;
  config.gateway_token = gateway_token;
  config.tenant = key->key_id;
  config.key_env = "live";
  if (stack.tls) {
    config.tls_cert_file = stack.tls->cert_file.string();
    config.tls_key_file = stack.tls->key_file.string();
    config.tls_suite = std::string(kPinnedTlsSuite);
  }
  auto nginx = start_nginx(options.nginx_binary, config.dir, render_nginx_config(config), *nginx_port);
  if (!nginx) return std::unexpected(nginx.error());
  stack.nginx = std::move(*nginx);
  stack.nginx_url = std::string(stack.tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(*nginx_port);
  return {};
}

StreamCall sdk_stream_call(client::Client client, json::object request) {
  return [client = std::move(client), request = std::move(request)](std::function<void()> on_chunk)
             -> http::awaitable<Status> {
    co_return co_await client.chat.completions.async_create(
        request, [&on_chunk](const client::Chunk&) -> http::awaitable<Status> {
          on_chunk();
          co_return Status{};
        });
  };
}

// Embeddings through the SDK (client.embeddings): on_chunk() once, when the list arrived.
StreamCall sdk_embeddings_call(client::Client client, json::object request) {
  return [client = std::move(client), request = std::move(request)](std::function<void()> on_chunk)
             -> http::awaitable<Status> {
    auto list = co_await client.embeddings.async_create(request);
    if (!list) co_return std::unexpected(list.error());
    on_chunk();
    co_return Status{};
  };
}

// --- embeddings: batches of kEngineEmbeddingBatch inputs, direct and through gateway + enclave --

constexpr unsigned kEmbeddingsConcurrency = 64;

double round_to(double value, int digits);

std::string embeddings_body() {
  json::array input;
  for (std::size_t i = 0; i < kEngineEmbeddingBatch; ++i) input.push_back(json::string("benchmark input " + std::to_string(i)));
  return json::serialize(json::object{{"model", kModel}, {"input", std::move(input)}, {"encoding_format", "float"}});
}

// The floor: the same request with "dimensions": 1, which the engine answers with one number. Its
// added latency is what the extra hops cost this machine at this pace whatever the answer's size.
std::string embeddings_floor_body() {
  return json::serialize(json::object{{"model", kModel}, {"input", json::array{"floor"}}, {"dimensions", 1},
                                      {"encoding_format", "float"}});
}

// Each of the paced phase's callers sends one batch per this period (64 batches a second in all,
// a fraction of what either path serves): latency below saturation, as users see it.
constexpr auto kEmbeddingsPeriod = 1000ms;

// One path of an embeddings measurement: its name in the report and its call.
struct LatencyPath {
  std::string name;
  StreamCall call;
};

// One phase of kEmbeddingsConcurrency callers on each path, the first being the baseline
// (direct): each path's latency distribution and what it adds to the baseline's p50 / p99
// ("added_latency_*" for rvenc, "<name>_added_latency_*" for the others). `period` zero: a closed
// loop (saturation), whose latency is concurrency / throughput and so measures CPU per request;
// non-zero: callers that pause between batches.
json::object embeddings_latencies(LoadGenerator& load, std::chrono::milliseconds window, std::chrono::milliseconds period,
                                  const std::vector<LatencyPath>& paths) {
  json::object out;
  double base_p50 = 0;
  double base_p99 = 0;
  for (std::size_t i = 0; i < paths.size(); ++i) {
    const PhaseSpec spec{kEmbeddingsConcurrency, 500ms, window, period, period};
    const auto r = load.run(spec, paths[i].call, {}, {});
    const double p50 = quantile(r.ttft_ms, 0.5);
    const double p99 = quantile(r.ttft_ms, 0.99);
    json::object phase{{"requests", r.requests},
                       {"errors", r.errors},
                       {"requests_per_s", round_to(static_cast<double>(r.requests) / r.window_s, 1)},
                       {"latency_p50_ms", round_to(p50, 3)},
                       {"latency_p99_ms", round_to(p99, 3)}};
    if (!r.first_error.empty()) phase["first_error"] = r.first_error;
    out[paths[i].name] = std::move(phase);
    if (i == 0) {
      base_p50 = p50;
      base_p99 = p99;
      continue;
    }
    const std::string prefix = paths[i].name == "rvenc" ? std::string() : paths[i].name + "_";
    out[prefix + "added_latency_p50_ms"] = round_to(p50 - base_p50, 3);
    out[prefix + "added_latency_p99_ms"] = round_to(p99 - base_p99, 3);
  }
  return out;
}

// The paced phase (the target: added latency as callers see it) and the saturated one (throughput
// of each path; its "added latency" is queueing behind the extra CPU of sealing a large answer).
// Paths after direct and rvenc (the two nginx hops) run paced only.
json::object embeddings_phase(LoadGenerator& load, std::chrono::milliseconds window, const std::vector<LatencyPath>& paths) {
  json::object out{{"batch", kEngineEmbeddingBatch},
                   {"dimensions", kEngineEmbeddingDimensions},
                   {"concurrency", kEmbeddingsConcurrency},
                   {"period_ms", kEmbeddingsPeriod.count()}};
  auto paced = embeddings_latencies(load, std::max<std::chrono::milliseconds>(window, 3s), kEmbeddingsPeriod, paths);
  out["added_latency_p50_ms"] = paced.at("added_latency_p50_ms");
  out["added_latency_p99_ms"] = paced.at("added_latency_p99_ms");
  out["paced"] = std::move(paced);
  out["saturated"] = embeddings_latencies(load, window, 0ms, {paths.begin(), paths.begin() + 2});
  return out;
}

// One request sealed here, like the SDK does, with `reused` keys or (null) a fresh encapsulation
// to `public_key` per request; decrypted and authenticated to the end like the SDK.
StreamCall sealed_stream_call(std::shared_ptr<http::HttpClient> http_client, http::Url gateway, std::string api_key,
                              crypto::XWingPublicKey public_key, std::shared_ptr<const crypto::Encapsulation> reused,
                              std::string plaintext) {
  return [=](std::function<void()> on_chunk) -> http::awaitable<Status> {
    std::optional<crypto::Encapsulation> fresh;
    if (!reused) {
      auto made = crypto::xwing_encapsulate(public_key);
      if (!made) co_return std::unexpected(made.error());
      fresh = std::move(*made);
    }
    const crypto::Encapsulation& keys = reused ? *reused : *fresh;
    protocol::SealInput input;
    input.shared_secret = &keys.shared_secret;
    input.cipher_text = &keys.cipher_text;
    input.key_id = crypto::key_id(public_key);
    input.nonce = crypto::random_nonce();
    input.timestamp = unix_now();
    auto request = http::make_request(http::Verb::post, gateway.join(kRvencChatPath),
                                      protocol::serialize_envelope(protocol::seal_request(input, plaintext)));
    request.set(boost::beast::http::field::authorization, "Bearer " + api_key);
    auto opened = co_await http_client->open(gateway, std::move(request));
    if (!opened) co_return std::unexpected(opened.error());
    auto& stream = **opened;
    if (stream.status() != 200) {
      auto body = co_await stream.read_all();
      co_return std::unexpected(client::error_from_http(stream.status(), body ? *body : std::string()));
    }
    client::ResponseDecoder decoder(input.version, keys.shared_secret, input.nonce);
    std::vector<client::Chunk> chunks;
    while (true) {
      auto bytes = co_await stream.read_some();
      if (!bytes) co_return std::unexpected(bytes.error());
      if (!*bytes) break;
      auto fed = decoder.feed(**bytes, chunks);
      for (std::size_t i = 0; i < chunks.size(); ++i) on_chunk();
      chunks.clear();
      if (!fed) co_return std::unexpected(fed.error());
    }
    co_return decoder.finish();
  };
}

// --- crypto: a request with fresh encryption keys against one with reused keys ---------------

// The request-side crypto of one request, client and enclave: (encapsulation when fresh), seal,
// serialize, parse, decapsulation (a cache hit when reused), open. CPU microseconds per request.
Result<double> request_crypto_us(enclave::EnclaveKey& key, bool fresh, unsigned iterations) {
  const std::string plaintext = chat_body(16);
  auto reused = crypto::xwing_encapsulate(key.public_key());
  if (!reused) return std::unexpected(reused.error());
  if (auto warm = key.decapsulate(reused->cipher_text); !warm) return std::unexpected(warm.error());
  const auto timestamp = unix_now();
  const double start = thread_cpu_seconds();
  for (unsigned i = 0; i < iterations; ++i) {
    std::optional<crypto::Encapsulation> made;
    if (fresh) {
      auto encapsulated = crypto::xwing_encapsulate(key.public_key());
      if (!encapsulated) return std::unexpected(encapsulated.error());
      made = std::move(*encapsulated);
    }
    const crypto::Encapsulation& keys = made ? *made : *reused;
    protocol::SealInput input;
    input.shared_secret = &keys.shared_secret;
    input.cipher_text = &keys.cipher_text;
    input.key_id = key.key_id();
    input.nonce = crypto::random_nonce();
    input.timestamp = timestamp;
    const std::string body = protocol::serialize_envelope(protocol::seal_request(input, plaintext));
    auto envelope = protocol::parse_envelope(body);
    if (!envelope) return std::unexpected(envelope.error());
    auto secret = key.decapsulate(envelope->cipher_text);
    if (!secret) return std::unexpected(secret.error());
    auto opened = protocol::open_request(*envelope, *secret);
    if (!opened) return std::unexpected(opened.error());
  }
  return (thread_cpu_seconds() - start) * 1e6 / iterations;
}

// --- report ----------------------------------------------------------------------------------

double round_to(double value, int digits) {
  const double scale = std::pow(10.0, digits);
  return std::round(value * scale) / scale;
}

json::object phase_json(const std::string& target, const std::string& mode, unsigned rate, const PhaseResult& r,
                        std::optional<double> proxy_cpu_s, double enclave_cpu_s, double bench_cpu_s) {
  json::object o{{"target", target},
                 {"mode", mode},
                 {"concurrency", r.concurrency},
                 {"tokens_per_s_per_stream", rate},
                 {"window_s", round_to(r.window_s, 3)},
                 {"chunks", r.chunks},
                 {"requests", r.requests},
                 {"errors", r.errors},
                 {"chunks_per_s", round_to(r.chunks_per_s(), 1)},
                 {"ttft_samples", r.ttft_ms.size()},
                 {"ttft_p50_ms", round_to(quantile(r.ttft_ms, 0.50), 3)},
                 {"ttft_p90_ms", round_to(quantile(r.ttft_ms, 0.90), 3)},
                 {"ttft_p99_ms", round_to(quantile(r.ttft_ms, 0.99), 3)},
                 {"ttft_max_ms", round_to(r.ttft_ms.empty() ? 0 : r.ttft_ms.back(), 3)}};
  if (!r.first_error.empty()) o["first_error"] = r.first_error;
  const double chunks = r.chunks > 0 ? static_cast<double>(r.chunks) : 1;
  if (proxy_cpu_s) {
    o["proxy_cpu_s"] = round_to(*proxy_cpu_s, 3);
    o["proxy_cpu_us_per_chunk"] = round_to(*proxy_cpu_s * 1e6 / chunks, 3);
  }
  o["enclave_cpu_us_per_chunk"] = round_to(enclave_cpu_s * 1e6 / chunks, 3);
  o["bench_cpu_us_per_chunk"] = round_to(bench_cpu_s * 1e6 / chunks, 3);
  json::array quantiles;
  for (std::size_t i = 0; i <= kQuantileSteps; ++i)
    quantiles.push_back(round_to(quantile(r.ttft_ms, static_cast<double>(i) / kQuantileSteps), 3));
  o["ttft_percentiles_ms"] = std::move(quantiles);
  return o;
}

const json::object* find_phase(const json::array& phases, std::string_view target, std::string_view mode,
                               unsigned concurrency) {
  for (const auto& p : phases) {
    const auto& o = p.as_object();
    if (o.at("target").as_string() == target && o.at("mode").as_string() == mode &&
        o.at("concurrency").to_number<unsigned>() == concurrency)
      return &o;
  }
  return nullptr;
}

double number(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_number() ? v->to_number<double>() : std::nan("");
}

std::string format_number(double v) {
  if (std::isnan(v)) return "n/a";
  std::ostringstream out;
  out << std::fixed << std::setprecision(std::fabs(v) >= 100 ? 0 : (std::fabs(v) >= 10 ? 1 : 3)) << v;
  return out.str();
}

// The headline figures, derived from the phases.
void add_headline(json::object& report, const json::array& phases, unsigned paced_rate) {
  // Saturation: the best throughput each target reached over the concurrencies.
  for (const char* target : {"direct", "rvenc", "nginx"}) {
    double best = 0;
    unsigned at = 0;
    for (const auto& p : phases) {
      const auto& o = p.as_object();
      if (o.at("target").as_string() != target || o.at("mode").as_string() != "saturated") continue;
      if (number(o, "chunks_per_s") > best) {
        best = number(o, "chunks_per_s");
        at = o.at("concurrency").to_number<unsigned>();
      }
    }
    const std::string name = std::string(target) == "rvenc" ? "gateway" : target;
    report[name + "_chunks_per_s"] = round_to(best, 1);
    report[name + "_saturation_concurrency"] = at;
  }
  const double gateway = number(report, "gateway_chunks_per_s"), nginx = number(report, "nginx_chunks_per_s");
  report["gateway_vs_nginx"] = nginx > 0 ? round_to(gateway / nginx, 3) : 0.0;

  const auto* rvenc_sat = find_phase(phases, "rvenc", "saturated", kHeadlineConcurrency);
  const auto* nginx_sat = find_phase(phases, "nginx", "saturated", kHeadlineConcurrency);
  const auto* direct_sat = find_phase(phases, "direct", "saturated", kHeadlineConcurrency);
  if (rvenc_sat && nginx_sat) {
    report["gateway_cpu_us_per_chunk"] = number(*rvenc_sat, "proxy_cpu_us_per_chunk");
    report["nginx_cpu_us_per_chunk"] = number(*nginx_sat, "proxy_cpu_us_per_chunk");
    const double n = number(*nginx_sat, "proxy_cpu_us_per_chunk");
    report["gateway_vs_nginx_cpu_per_chunk"] =
        n > 0 ? round_to(number(*rvenc_sat, "proxy_cpu_us_per_chunk") / n, 3) : 0.0;
  }
  for (const char* target : {"rvenc", "nginx"}) {
    const std::string who = std::string(target) == "rvenc" ? "gateway" : target;
    const auto* short_answers = find_phase(phases, target, kOneChunkMode, kHeadlineConcurrency);
    const auto* long_answers = find_phase(phases, target, "saturated", kHeadlineConcurrency);
    if (!short_answers || !long_answers) continue;
    const auto split = split_proxy_cpu(*short_answers, *long_answers);
    if (!split) continue;
    report[who + "_cpu_us_per_request_fixed"] = round_to(split->fixed_us_per_request, 2);
    report[who + "_cpu_us_per_relayed_chunk"] = round_to(split->us_per_chunk, 3);
  }
  if (rvenc_sat && direct_sat && nginx_sat) {
    for (const char* q : {"p50", "p99"}) {
      const std::string key = std::string("ttft_") + q + "_ms";
      report[std::string("saturated_direct_") + key] = number(*direct_sat, key);
      report[std::string("saturated_rvenc_") + key] = number(*rvenc_sat, key);
      report[std::string("saturated_nginx_") + key] = number(*nginx_sat, key);
      report[std::string("saturated_added_") + key] = round_to(number(*rvenc_sat, key) - number(*direct_sat, key), 3);
    }
  }
  const auto* rvenc_paced = find_phase(phases, "rvenc", "paced", kHeadlineConcurrency);
  const auto* nginx_paced = find_phase(phases, "nginx", "paced", kHeadlineConcurrency);
  const auto* direct_paced = find_phase(phases, "direct", "paced", kHeadlineConcurrency);
  report["paced_streams"] = kHeadlineConcurrency;
  report["paced_tokens_per_s_per_stream"] = paced_rate;
  if (rvenc_paced && direct_paced && nginx_paced) {
    for (const char* q : {"p50", "p99"}) {
      const std::string key = std::string("ttft_") + q + "_ms";
      report["direct_" + key] = number(*direct_paced, key);
      report["rvenc_" + key] = number(*rvenc_paced, key);
      report["nginx_" + key] = number(*nginx_paced, key);
      report["added_" + key] = round_to(number(*rvenc_paced, key) - number(*direct_paced, key), 3);
      // What the gateway adds over a plain proxy on the same encrypted path.
      report["gateway_added_" + key + "_vs_nginx"] =
          round_to(number(*rvenc_paced, key) - number(*nginx_paced, key), 3);
    }
    report["paced_gateway_cpu_us_per_chunk"] = number(*rvenc_paced, "proxy_cpu_us_per_chunk");
    report["paced_nginx_cpu_us_per_chunk"] = number(*nginx_paced, "proxy_cpu_us_per_chunk");
  }
}

// --tls: each front's CPU for a new connection with a full TLS handshake (tls.hpp) and what it
// negotiated, into report["tls"] and the headline keys `<front>_tls_handshake_cpu_us`.
void add_tls_handshakes(json::object& report, const Stack& stack, unsigned count, ProgressLine& progress) {
  json::object tls{{"pinned_suite", kPinnedTlsSuite},
                   {"handshakes_per_front", count},
                   {"certificate", stack.tls->cert_file.filename().string() + " from the local CA (http/local_ca.hpp)"}};
  const std::vector<std::tuple<std::string, std::string, int>> fronts{
      {"gateway", stack.gateway_url, stack.gateway->pid()}, {"nginx", stack.nginx_url, stack.nginx->pid()}};
  for (const auto& [who, url, pid] : fronts) {
    progress.show("rvenc bench: " + who + ": " + std::to_string(count) + " new TLS connections (full handshakes)");
    auto parsed = http::parse_url(url);
    auto cost = parsed ? measure_full_handshakes(parsed->port, stack.tls->ca_file.string(), count, pid)
                       : Result<HandshakeCost>(std::unexpected(parsed.error()));
    if (!cost) {
      tls[who + "_error"] = cost.error().to_string();
      continue;
    }
    tls[who] = json::object{{"protocol", cost->protocol},
                            {"cipher", cost->cipher},
                            {"pinned", cost->cipher == kPinnedTlsSuite},
                            {"server_cpu_us_per_handshake", round_to(cost->server_cpu_us, 1)},
                            {"probe_cpu_us_per_handshake", round_to(cost->client_cpu_us, 1)}};
    report[who + "_tls_handshake_cpu_us"] = round_to(cost->server_cpu_us, 1);
    progress.show("rvenc bench: " + who + ": " + cost->protocol + " " + cost->cipher + ", " +
                  format_number(cost->server_cpu_us) + " us of CPU per new TLS connection");
    progress.finish_line();
  }
  const double gateway = number(report, "gateway_tls_handshake_cpu_us"), nginx = number(report, "nginx_tls_handshake_cpu_us");
  if (gateway > 0 && nginx > 0) report["gateway_vs_nginx_tls_handshake_cpu"] = round_to(gateway / nginx, 3);
  report["tls"] = std::move(tls);
}

std::string iso_time_utc() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

std::optional<ProxyCpuSplit> split_proxy_cpu(const json::object& short_answers, const json::object& long_answers) {
  const auto per_request = [](const json::object& o, std::string_view key) {
    return number(o, key) / std::max(number(o, "requests"), 1.0);
  };
  const double chunks_short = per_request(short_answers, "chunks");
  const double chunks_long = per_request(long_answers, "chunks");
  if (!(chunks_long > chunks_short)) return std::nullopt;
  const double cpu_short = per_request(short_answers, "proxy_cpu_s") * 1e6;
  const double cpu_long = per_request(long_answers, "proxy_cpu_s") * 1e6;
  const double per_chunk = (cpu_long - cpu_short) / (chunks_long - chunks_short);
  return ProxyCpuSplit{cpu_short - per_chunk * chunks_short, per_chunk};
}

const std::vector<Target>& targets(bool tls) {
  // Issue 20 item 6: with TLS on both fronts.
  static const std::vector<Target> kTlsTargets{
      {"gateway_vs_nginx", "gateway throughput / nginx at saturation, TLS", true, 1.0},
      {"gateway_rss_kib_per_stream", "gateway RSS per open TLS stream (KiB)", false, 64},
  };
  if (tls) return kTlsTargets;
  static const std::vector<Target> kTargets{
      {"gateway_vs_nginx", "gateway throughput / nginx at saturation", true, 1.0},
      {"added_ttft_p50_ms", "added TTFT p50, 256 streams x 50 tok/s (ms)", false, 0.5},
      {"added_ttft_p99_ms", "added TTFT p99, 256 streams x 50 tok/s (ms)", false, 2.0},
      {"gateway_rss_kib_per_stream", "gateway RSS per open stream (KiB)", false, 32},
      {"fresh_vs_cached_request_cost", "fresh / reused encryption keys, request cost", true, 10},
      {"embeddings_added_latency_p50_ms", "added latency p50, embeddings x16, 64 callers at 1/s (ms)", false, 0.5},
  };
  return kTargets;
}

const std::vector<Target>& targets_of(const json::object& report) {
  const auto* tls = report.if_contains("tls");
  return targets(tls != nullptr && tls->is_object());
}

namespace {

// The report's head: when, how, on what, with which versions.
json::object report_head(const BenchOptions& options, const Plan& plan) {
  json::object report;
  report["date"] = iso_time_utc();
  report["mode"] = options.quick ? "quick" : "full";
  report["chunks_per_request"] = plan.saturated_chunks;
  report["gateway_enclave_link"] = options.enclave_http1 ? "http1" : "rvenc-mux";
  report["client_link"] = options.tls ? "https" : "http";
  const std::string nginx_version = command_output(options.nginx_binary + " -v");
  report["machine"] = json::object{{"cores", std::thread::hardware_concurrency()},
                                   {"cpu_model", cpu_model()},
                                   {"load_average_at_start", load_average().value_or(-1)}};
  report["versions"] = json::object{{"rvenc", options.rvenc_version},
                                    {"nginx", nginx_version},
                                    {"libsodium", sodium_version_string()}};
  return report;
}

// The SDK clients of a run: one through the gateway, one through nginx, sharing the encryption
// keys made once (verified attestation, one encapsulation) and reused by every request.
struct BenchClients {
  client::Client gateway;
  client::Client nginx;
  client::EncryptionKeys keys;
};

Result<BenchClients> make_clients(const Stack& stack, std::size_t most_streams) {
  client::ClientOptions client_options;
  client_options.max_idle_connections = most_streams;
  client_options.api_key = stack.api_key;
  client_options.base_url = stack.gateway_url;
  client_options.attestation.allowed_providers = {"simulated"};
  client_options.attestation.simulated_platform_key = stack.platform_public_key;
  if (stack.tls) client_options.ca_file = stack.tls->ca_file.string();
  auto gateway_client = client::create_client(client_options);
  if (!gateway_client) return std::unexpected(gateway_client.error());
  auto keys = gateway_client->generate_encryption_keys();
  if (!keys) return std::unexpected(keys.error());
  client_options.base_url = stack.nginx_url;
  client_options.encryption_keys = *keys;
  auto nginx_client = client::create_client(client_options);
  if (!nginx_client) return std::unexpected(nginx_client.error());
  return BenchClients{std::move(*gateway_client), std::move(*nginx_client), std::move(*keys)};
}

// One path a request can take (direct to the engine, through rvenc, through nginx), and the pid
// of the proxy on it (-1: none).
struct Way {
  std::string name;
  std::function<StreamCall(std::size_t)> call;
  int proxy_pid;
};

// Memory per open stream of each proxy: RSS idle and with plan.rss_streams held open.
json::object measure_memory(json::object& report, Stack& stack, const std::vector<Way>& ways, LoadGenerator& load,
                            const Plan& plan, ProgressLine& progress) {
  json::object memory;
  for (const auto& way : ways) {
    if (way.proxy_pid < 0) continue;
    const std::string who = way.name == "rvenc" ? "gateway" : way.name;
    progress.show("rvenc bench: " + who + " memory with " + std::to_string(plan.rss_streams) + " open streams");
    std::this_thread::sleep_for(kRssSettle);
    const auto idle = process_rss_kib(way.proxy_pid).value_or(0);
    std::uint64_t loaded = 0;
    stack.engine->set_rate(0);
    stack.engine->set_hold(true);
    auto held = load.hold_open(
        plan.rss_streams, way.call(2), kHoldTimeout,
        [&] {
          std::this_thread::sleep_for(kRssSettle);
          loaded = process_rss_kib(way.proxy_pid).value_or(0);
        },
        [&] { stack.engine->set_hold(false); });
    if (!held) {
      memory[who + "_error"] = held.error().to_string();
      continue;
    }
    memory[who + "_idle_rss_kib"] = idle;
    memory[who + "_loaded_rss_kib"] = loaded;
    const double per_stream =
        (static_cast<double>(loaded) - static_cast<double>(idle)) / static_cast<double>(plan.rss_streams);
    memory[who + "_rss_kib_per_stream"] = round_to(per_stream, 2);
    report[who + "_rss_kib_per_stream"] = round_to(per_stream, 2);
    progress.show("rvenc bench: " + who + " RSS " + std::to_string(idle) + " KiB idle, " + std::to_string(loaded) +
                  " KiB with " + std::to_string(plan.rss_streams) + " open streams: " + format_number(per_stream) +
                  " KiB per stream");
    progress.finish_line();
  }
  memory["open_streams"] = plan.rss_streams;
  return memory;
}

// What a phase measures: its mode in the report, paced or saturated, chunks per answer.
struct PhaseKind {
  std::string mode;
  bool paced;
  std::size_t chunks;
};

// Throughput and latency: the paths side by side at each concurrency, each phase a row of `phases`.
class PhaseRunner {
 public:
  PhaseRunner(const BenchOptions& options, const Plan& plan, Stack& stack, const std::vector<Way>& ways,
              LoadGenerator& load, ProgressLine& progress)
      : options_(options), plan_(plan), stack_(stack), ways_(ways), load_(load), progress_(progress) {}

  [[nodiscard]] const Way* find_way(std::string_view name) const {
    const auto it = std::ranges::find(ways_, name, &Way::name);
    return it == ways_.end() ? nullptr : &*it;
  }

  json::array run() {
    const PhaseKind saturated{"saturated", false, plan_.saturated_chunks};
    const PhaseKind paced{"paced", true, plan_.paced_chunks};
    // The same saturated load with one-chunk answers: each proxy's CPU then splits into what it
    // spends per request and per chunk relayed (split_proxy_cpu).
    const PhaseKind one_chunk{std::string(kOneChunkMode), false, 1};
    const bool split_cpu = plan_.one_chunk_phases && gateway_ && nginx_ && plan_.saturated_chunks > 1 &&
                           std::ranges::find(plan_.concurrencies, kHeadlineConcurrency) != plan_.concurrencies.end();
    total_phases_ = plan_.concurrencies.size() * ways_.size() + plan_.paced_concurrencies.size() * ways_.size() +
                    (split_cpu ? 2 : 0);
    for (unsigned c : plan_.concurrencies) {
      if (const Way* direct = find_way("direct")) run_phase(*direct, saturated, c);
      if (gateway_ && nginx_) {
        run_proxies(saturated, c);
      } else {
        for (const Way* way : {gateway_, nginx_})
          if (way) run_phase(*way, saturated, c);
      }
    }
    if (split_cpu) run_proxies(one_chunk, kHeadlineConcurrency);
    for (unsigned c : plan_.paced_concurrencies)
      for (const auto& way : ways_) run_phase(way, paced, c);
    stack_.engine->set_rate(0);
    return std::move(phases_);
  }

 private:
  // One measured window of `way`, shown on the progress line as `label`.
  PhaseResult measure(const Way& way, const PhaseKind& kind, unsigned concurrency, std::chrono::milliseconds window,
                      const std::string& label) {
    const unsigned rate = kind.paced ? options_.paced_rate : 0;
    stack_.engine->set_rate(rate);
    PhaseSpec spec{concurrency, kind.paced ? plan_.paced_warmup : plan_.saturated_warmup, window};
    if (kind.paced && rate > 0) {
      // Arrivals spread over one request's duration, and the window opens once all have started.
      spec.stagger = std::chrono::milliseconds(1000 * (kind.chunks - 1) / rate);
      spec.warmup += spec.stagger;
    }
    std::vector<int> watch{way.proxy_pid > 0 ? way.proxy_pid : self_, stack_.enclave->pid(), self_};
    return load_.run(spec, way.call(kind.chunks), watch, [&](const Progress& p) { show_progress(label, p); });
  }

  void show_progress(const std::string& label, const Progress& p) {
    std::ostringstream line;
    line << label << "  ";
    if (p.elapsed_s < 0) {
      line << "warming up";
    } else {
      line << std::fixed << std::setprecision(0)
           << (p.elapsed_s > 0 ? static_cast<double>(p.chunks) / p.elapsed_s : 0) << " chunks/s, " << p.requests
           << " requests";
    }
    if (p.errors > 0) line << ", " << p.errors << " errors";
    progress_.show(line.str(), false);
  }

  [[nodiscard]] std::string label_for(const Way& way, const PhaseKind& kind, unsigned concurrency,
                                      std::size_t number) const {
    std::ostringstream label;
    label << "[" << number << "/" << total_phases_ << "] " << std::setw(6) << std::left << way.name << " "
          << (kind.paced ? std::to_string(options_.paced_rate) + " tok/s" : std::string("saturated")) << " x "
          << concurrency << (kind.mode == kOneChunkMode ? ", 1-chunk answers" : "");
    return label.str();
  }

  void record(const Way& way, const PhaseKind& kind, const std::string& label, const PhaseResult& result) {
    std::optional<double> proxy_cpu;
    if (way.proxy_pid > 0) proxy_cpu = result.cpu_seconds[0];
    auto phase = phase_json(way.name, kind.mode, kind.paced ? options_.paced_rate : 0, result, proxy_cpu,
                            result.cpu_seconds[1], result.cpu_seconds[2]);
    std::ostringstream done;
    done << label << "  " << format_number(result.chunks_per_s()) << " chunks/s, TTFT p50 "
         << format_number(quantile(result.ttft_ms, 0.5)) << " ms p99 " << format_number(quantile(result.ttft_ms, 0.99))
         << " ms" << (result.errors ? ", " + std::to_string(result.errors) + " errors" : std::string());
    progress_.show(done.str());
    if (progress_.tty()) progress_.finish_line();
    phases_.push_back(std::move(phase));
  }

  void run_phase(const Way& way, const PhaseKind& kind, unsigned concurrency) {
    const auto label = label_for(way, kind, concurrency, ++phase_number_);
    record(way, kind, label,
           measure(way, kind, concurrency, kind.paced ? plan_.paced_window : plan_.saturated_window, label));
  }

  // Gateway, nginx, gateway (A B B A): the gateway's window is split around nginx's, so a drift
  // of the machine during the phase (other load, CPU clocks) weighs on both paths alike.
  void run_proxies(const PhaseKind& kind, unsigned c) {
    const auto label = label_for(*gateway_, kind, c, phase_number_ + 2);
    const auto half = plan_.saturated_window / 2;
    PhaseResult first = measure(*gateway_, kind, c, half, label + " (1/2)");
    run_phase(*nginx_, kind, c);
    ++phase_number_;
    record(*gateway_, kind, label, merge(std::move(first), measure(*gateway_, kind, c, half, label + " (2/2)")));
  }

  const BenchOptions& options_;
  const Plan& plan_;
  Stack& stack_;
  const std::vector<Way>& ways_;
  LoadGenerator& load_;
  ProgressLine& progress_;
  const Way* gateway_ = find_way("rvenc");
  const Way* nginx_ = find_way("nginx");
  const int self_ = static_cast<int>(::getpid());
  std::size_t total_phases_ = 0;
  std::size_t phase_number_ = 0;
  json::array phases_;
};

// Request cost with fresh keys against reused ones, in-process (the same code as SDK and enclave).
Status add_crypto_comparison(json::object& report, const Plan& plan) {
  auto seed_bytes = crypto::random_array<crypto::kXWingSeedBytes>();
  const crypto::XWingSeed seed{std::span<const std::uint8_t, crypto::kXWingSeedBytes>(seed_bytes)};
  crypto::secure_wipe(seed_bytes.data(), seed_bytes.size());
  auto key = std::make_unique<enclave::EnclaveKey>(seed, unix_now() + 3600);
  auto cached = request_crypto_us(*key, false, plan.crypto_cached_iterations);
  auto fresh = request_crypto_us(*key, true, plan.crypto_fresh_iterations);
  if (!cached || !fresh) return std::unexpected(cached ? fresh.error() : cached.error());
  report["cached_request_crypto_us"] = round_to(*cached, 2);
  report["fresh_request_crypto_us"] = round_to(*fresh, 2);
  report["fresh_vs_cached_request_cost"] = round_to(*fresh / *cached, 2);
  return {};
}

// One end-to-end window of sealed one-chunk requests: CPU of each process per request.
json::object e2e_window(LoadGenerator& load, const StreamCall& call, const Stack& stack, const Plan& plan) {
  const int self = static_cast<int>(::getpid());
  const auto r = load.run(PhaseSpec{kE2eConcurrency, 300ms, plan.e2e_window}, call,
                          {stack.gateway->pid(), stack.enclave->pid(), self}, {});
  const double requests = r.requests > 0 ? static_cast<double>(r.requests) : 1;
  const double total = r.cpu_seconds[0] + r.cpu_seconds[1] + r.cpu_seconds[2];
  json::object window{{"requests", r.requests},
                      {"errors", r.errors},
                      {"requests_per_s", round_to(static_cast<double>(r.requests) / r.window_s, 1)},
                      {"gateway_cpu_us_per_request", round_to(r.cpu_seconds[0] * 1e6 / requests, 1)},
                      {"enclave_cpu_us_per_request", round_to(r.cpu_seconds[1] * 1e6 / requests, 1)},
                      {"client_cpu_us_per_request", round_to(r.cpu_seconds[2] * 1e6 / requests, 1)},
                      {"total_cpu_us_per_request", round_to(total * 1e6 / requests, 1)},
                      {"ttft_p50_ms", round_to(quantile(r.ttft_ms, 0.5), 3)}};
  if (!r.first_error.empty()) window["first_error"] = r.first_error;
  return window;
}

// The fresh/reused comparison end to end through gateway and enclave.
Status add_e2e_comparison(json::object& report, const Stack& stack, const BenchClients& clients, LoadGenerator& load,
                          const Plan& plan, ProgressLine& progress) {
  auto gateway_base = http::parse_url(stack.gateway_url);
  auto document = clients.gateway.attest();
  if (!gateway_base || !document) return fail(Errc::internal_error, "cannot prepare the end-to-end key comparison");
  auto reused = std::make_shared<const crypto::Encapsulation>(
      crypto::Encapsulation{clients.keys.cipher_text, clients.keys.shared_secret});
  auto sealed_http = std::make_shared<http::HttpClient>(
      http::HttpClientOptions{.ca_file = stack.tls ? stack.tls->ca_file.string() : std::string()});
  json::object e2e;
  for (const bool fresh : {false, true}) {
    const std::string name = fresh ? "fresh" : "reused";
    progress.show("rvenc bench: end-to-end requests with " + name + " encryption keys");
    auto call = sealed_stream_call(sealed_http, *gateway_base, stack.api_key, document->public_key,
                                   fresh ? nullptr : reused, chat_body(1));
    e2e[name] = e2e_window(load, call, stack, plan);
  }
  const auto per = [&](const char* which, const char* key) { return number(e2e.at(which).as_object(), key); };
  if (per("reused", "total_cpu_us_per_request") > 0)
    report["fresh_vs_cached_e2e_cpu"] =
        round_to(per("fresh", "total_cpu_us_per_request") / per("reused", "total_cpu_us_per_request"), 2);
  if (per("reused", "enclave_cpu_us_per_request") > 0)
    report["fresh_vs_cached_enclave_cpu"] =
        round_to(per("fresh", "enclave_cpu_us_per_request") / per("reused", "enclave_cpu_us_per_request"), 2);
  report["e2e_key_comparison"] = std::move(e2e);
  return {};
}

// Each target of the run (targets()) with the run's value and whether it was met.
json::array target_results(const json::object& report, bool tls) {
  json::array results;
  for (const auto& t : targets(tls)) {
    const double v = number(report, t.key);
    const bool met = !std::isnan(v) && (t.at_least ? v >= t.bound : v <= t.bound);
    results.push_back(json::object{{"key", t.key},
                                   {"value", std::isnan(v) ? json::value(nullptr) : json::value(v)},
                                   {"bound", t.bound},
                                   {"at_least", t.at_least},
                                   {"met", met}});
  }
  return results;
}

// The paths of a run (--paths keeps some): direct to the engine, through rvenc, through nginx.
std::vector<Way> make_ways(const BenchOptions& options, const Stack& stack, const BenchClients& clients,
                           std::shared_ptr<http::HttpClient> direct_http, const http::Url& engine_base) {
  const auto request_for = [](std::size_t chunks) { return json::parse(chat_body(chunks)).as_object(); };
  std::vector<Way> ways{
      {"direct",
       [direct_http, engine_base](std::size_t k) { return openai_stream_call(direct_http, engine_base, chat_body(k)); },
       -1},
      {"rvenc", [&clients, request_for](std::size_t k) { return sdk_stream_call(clients.gateway, request_for(k)); },
       stack.gateway->pid()},
      {"nginx", [&clients, request_for](std::size_t k) { return sdk_stream_call(clients.nginx, request_for(k)); },
       stack.nginx->pid()},
  };
  if (!options.paths.empty())
    std::erase_if(ways, [&](const Way& way) { return std::ranges::find(options.paths, way.name) == options.paths.end(); });
  return ways;
}

// Embeddings at kEmbeddingsConcurrency callers, direct, through rvenc and through two plain nginx
// hops: the added latency, and the floor (paced, a one-number answer) that tells the hops' fixed
// cost from the answer's. Without the relays (nginx failed to start) the rest is still measured.
void add_embeddings(json::object& report, LoadGenerator& load, const Plan& plan, const Stack& stack,
                    const BenchOptions& options, const std::shared_ptr<http::HttpClient>& direct_http,
                    const http::Url& engine_base, const client::Client& gateway) {
  // What any design with the gateway and the enclave in separate processes costs this machine.
  auto relays = start_nginx_relays(options.nginx_binary, stack.dir, engine_base.port);
  if (!relays) report["embeddings_relay_error"] = relays.error().message;
  http::Url relay_base = engine_base;
  if (relays) relay_base.port = relays->port;
  const auto paths = [&](const std::string& body) {
    std::vector<LatencyPath> out{{"direct", openai_embeddings_call(direct_http, engine_base, body)},
                                 {"rvenc", sdk_embeddings_call(gateway, json::parse(body).as_object())}};
    if (relays) out.push_back({"two_nginx_hops", openai_embeddings_call(direct_http, relay_base, body)});
    return out;
  };
  auto embeddings = embeddings_phase(load, plan.e2e_window, paths(embeddings_body()));
  auto floor = embeddings_latencies(load, std::max<std::chrono::milliseconds>(plan.e2e_window, 3s), kEmbeddingsPeriod,
                                    paths(embeddings_floor_body()));
  report["embeddings_added_latency_p50_ms"] = embeddings.at("added_latency_p50_ms");
  report["embeddings_floor_added_latency_p50_ms"] = floor.at("added_latency_p50_ms");
  if (relays) {
    report["embeddings_two_nginx_hops_added_latency_p50_ms"] =
        embeddings.at("paced").as_object().at("two_nginx_hops_added_latency_p50_ms");
    report["embeddings_floor_two_nginx_hops_added_latency_p50_ms"] = floor.at("two_nginx_hops_added_latency_p50_ms");
  }
  embeddings["floor"] = std::move(floor);
  report["embeddings"] = std::move(embeddings);
}

// Every path answers (and fails the run early if not).
Status warm_up(const std::vector<Way>& ways, LoadGenerator& load, ProgressLine& progress) {
  for (const auto& way : ways) {
    progress.show("rvenc bench: warm-up " + way.name);
    auto warm = load.run(PhaseSpec{1, 0ms, 300ms}, way.call(4), {}, {});
    if (warm.requests == 0 || warm.errors > 0)
      return fail(Errc::internal_error, "warm-up through " + way.name + " failed: " +
                                            (warm.first_error.empty() ? "no request completed" : warm.first_error));
  }
  return {};
}

}  // namespace

// The run, top to bottom: stack, clients, warm-up, memory, throughput phases, crypto, embeddings.
Result<json::object> run_bench(const BenchOptions& options) {
  Plan plan = make_plan(options.quick);
  if (!options.concurrencies.empty()) plan.concurrencies = plan.paced_concurrencies = options.concurrencies;
  if (options.chunks_per_request != 0) plan.saturated_chunks = plan.paced_chunks = options.chunks_per_request;
  ProgressLine progress;
  const auto run_started = std::chrono::steady_clock::now();
  json::object report = report_head(options, plan);

  progress.show("rvenc bench: starting engine, enclave, gateway and nginx on 127.0.0.1 ...");
  Stack stack;
  if (auto started = start_stack(stack, options); !started) {
    progress.finish_line();
    return std::unexpected(started.error());
  }

  // The load generator keeps a connection per stream, as clients that stream at that concurrency
  // do: the phases measure streaming, not connections opened and closed per request.
  std::size_t most_streams = plan.rss_streams;
  for (const auto& concurrencies : {plan.concurrencies, plan.paced_concurrencies})
    for (unsigned c : concurrencies) most_streams = std::max<std::size_t>(most_streams, c);
  auto clients = make_clients(stack, most_streams);
  if (!clients) return std::unexpected(clients.error());

  auto engine_base = http::parse_url(stack.engine->url());
  if (!engine_base) return std::unexpected(engine_base.error());
  auto direct_http = std::make_shared<http::HttpClient>(http::HttpClientOptions{.max_idle_per_host = most_streams});
  const std::vector<Way> ways = make_ways(options, stack, *clients, direct_http, *engine_base);
  report["paths"] = json::object{{"engine", stack.engine->url()},
                                 {"enclave", stack.enclave_url},
                                 {"gateway", stack.gateway_url},
                                 {"nginx", stack.nginx_url}};

  LoadGenerator load(1);
  if (auto warm = warm_up(ways, load, progress); !warm) return std::unexpected(warm.error());
  // Memory per open stream, first (before the big phases leave freed memory in the allocators).
  report["memory"] = measure_memory(report, stack, ways, load, plan, progress);
  if (stack.tls) add_tls_handshakes(report, stack, plan.tls_handshakes, progress);

  PhaseRunner runner(options, plan, stack, ways, load, progress);
  json::array phases = runner.run();

  progress.show("rvenc bench: request crypto, fresh vs reused encryption keys");
  if (auto crypto = add_crypto_comparison(report, plan); !crypto) return std::unexpected(crypto.error());
  if (auto e2e = add_e2e_comparison(report, stack, *clients, load, plan, progress); !e2e)
    return std::unexpected(e2e.error());
  if (runner.find_way("direct") != nullptr && runner.find_way("rvenc") != nullptr) {
    progress.show("rvenc bench: embeddings, batches of " + std::to_string(kEngineEmbeddingBatch) + " inputs at " +
                  std::to_string(kEmbeddingsConcurrency) + " callers, direct, through rvenc and through two nginx hops");
    add_embeddings(report, load, plan, stack, options, direct_http, *engine_base, clients->gateway);
  }
  progress.finish_line();

  add_headline(report, phases, options.paced_rate);
  report["phases"] = std::move(phases);
  report["machine"].as_object()["load_average_at_end"] = load_average().value_or(-1);
  report["duration_s"] =
      round_to(std::chrono::duration<double>(std::chrono::steady_clock::now() - run_started).count(), 1);
  report["targets"] = target_results(report, options.tls);
  if (options.keep_temp) report["temp_dir"] = stack.dir.string();
  return report;
}

std::string summary_table(const json::object& report) {
  std::ostringstream out;
  const auto row = [&](const std::string& name, const std::string& value) {
    out << "  " << std::left << std::setw(52) << name << std::right << std::setw(12) << value << "\n";
  };
  out << "rvenc bench (" << (report.contains("mode") ? std::string(report.at("mode").as_string()) : "") << ", "
      << (report.contains("date") ? std::string(report.at("date").as_string()) : "") << ")\n";
  if (const auto* machine = report.if_contains("machine"); machine && machine->is_object()) {
    const auto& m = machine->as_object();
    out << "  machine: " << json::serialize(m.at("cores")) << " cores, " << json::serialize(m.at("cpu_model"))
        << ", load average " << format_number(number(m, "load_average_at_start")) << " -> "
        << format_number(number(m, "load_average_at_end")) << "\n";
  }
  if (const auto* link = report.if_contains("gateway_enclave_link"); link && link->is_string())
    out << "  gateway to enclave: " << std::string(link->as_string()) << " (nginx: HTTP/1.1, a connection per stream)\n";
  if (const auto* tls = report.if_contains("tls"); tls && tls->is_object()) {
    out << "  load generator to gateway and to nginx: https, suite pinned to "
        << json::serialize(tls->as_object().at("pinned_suite"));
    for (const char* front : {"gateway", "nginx"})
      if (const auto* f = tls->as_object().if_contains(front); f && f->is_object())
        out << "; " << front << " negotiated " << json::serialize(f->as_object().at("cipher"));
    out << " (direct: plain http to the engine)\n";
  }
  out << "\n";
  for (const auto& [key, name] : std::vector<std::pair<std::string, std::string>>{
           {"direct_chunks_per_s", "direct chunks/s (saturated, best concurrency)"},
           {"gateway_chunks_per_s", "rvenc via gateway chunks/s"},
           {"nginx_chunks_per_s", "rvenc via nginx chunks/s"},
           {"gateway_cpu_us_per_chunk", "gateway CPU us/chunk (saturated, 256)"},
           {"nginx_cpu_us_per_chunk", "nginx CPU us/chunk (saturated, 256)"},
           {"gateway_cpu_us_per_request_fixed", "gateway CPU us per request, fixed part (256)"},
           {"nginx_cpu_us_per_request_fixed", "nginx CPU us per request, fixed part (256)"},
           {"gateway_cpu_us_per_relayed_chunk", "gateway CPU us per relayed chunk (256)"},
           {"nginx_cpu_us_per_relayed_chunk", "nginx CPU us per relayed chunk (256)"},
           {"direct_ttft_p50_ms", "direct TTFT p50 ms (256 x 50 tok/s)"},
           {"rvenc_ttft_p50_ms", "rvenc TTFT p50 ms (256 x 50 tok/s)"},
           {"nginx_ttft_p50_ms", "nginx path TTFT p50 ms (256 x 50 tok/s)"},
           {"direct_ttft_p99_ms", "direct TTFT p99 ms (256 x 50 tok/s)"},
           {"rvenc_ttft_p99_ms", "rvenc TTFT p99 ms (256 x 50 tok/s)"},
           {"nginx_ttft_p99_ms", "nginx path TTFT p99 ms (256 x 50 tok/s)"},
           {"saturated_added_ttft_p50_ms", "added TTFT p50 ms (saturated, 256)"},
           {"saturated_added_ttft_p99_ms", "added TTFT p99 ms (saturated, 256)"},
           {"nginx_rss_kib_per_stream", "nginx RSS KiB per open stream"},
           {"gateway_tls_handshake_cpu_us", "gateway CPU us per new TLS connection"},
           {"nginx_tls_handshake_cpu_us", "nginx CPU us per new TLS connection"},
           {"cached_request_crypto_us", "request crypto us, reused keys"},
           {"fresh_request_crypto_us", "request crypto us, fresh keys"},
           {"fresh_vs_cached_e2e_cpu", "fresh / reused keys, CPU of a whole request"},
           {"fresh_vs_cached_enclave_cpu", "fresh / reused keys, enclave CPU per request"},
           {"embeddings_floor_added_latency_p50_ms", "embeddings added p50 ms, 1-number answer (floor)"},
           {"embeddings_two_nginx_hops_added_latency_p50_ms", "embeddings: two nginx hops add p50 ms"},
           {"embeddings_floor_two_nginx_hops_added_latency_p50_ms", "embeddings floor: two nginx hops add p50 ms"}})
    row(name, format_number(number(report, key)));
  out << "\n  targets\n";
  for (const auto& t : targets_of(report)) {
    const double v = number(report, t.key);
    const bool met = !std::isnan(v) && (t.at_least ? v >= t.bound : v <= t.bound);
    std::ostringstream bound;
    bound << (t.at_least ? ">= " : "<= ") << format_number(t.bound);
    out << "  " << std::left << std::setw(46) << t.description << std::right << std::setw(10) << format_number(v)
        << "  " << std::left << std::setw(10) << bound.str() << " " << (met ? "met" : "NOT MET") << "\n";
  }
  return out.str();
}

Result<std::string> write_plot_files(const json::object& report, const std::string& data_dir, const std::string& png) {
  const auto* phases_value = report.if_contains("phases");
  if (!phases_value || !phases_value->is_array()) return fail(Errc::invalid_request, "the report has no phases");
  const auto& phases = phases_value->as_array();
  const fs::path dir(data_dir);
  const std::vector<std::string> names{"direct", "rvenc", "nginx"};
  // TTFT distribution files: percentile -> ms, for the 256-stream phases (paced and saturated).
  for (const char* mode : {"paced", "saturated"}) {
    for (const auto& name : names) {
      std::ofstream out(dir / (std::string("ttft_") + mode + "_" + name + ".dat"));
      if (const auto* p = find_phase(phases, name, mode, 256)) {
        const auto& q = p->at("ttft_percentiles_ms").as_array();
        for (std::size_t i = 0; i < q.size(); ++i) out << i << " " << q[i].to_number<double>() << "\n";
      }
    }
  }
  // Throughput and proxy CPU per concurrency (saturated).
  for (const auto& name : names) {
    std::ofstream out(dir / ("throughput_" + name + ".dat"));
    for (const auto& p : phases) {
      const auto& o = p.as_object();
      if (o.at("target").as_string() != name || o.at("mode").as_string() != "saturated") continue;
      out << o.at("concurrency").to_number<unsigned>() << " " << number(o, "chunks_per_s") << " "
          << (o.contains("proxy_cpu_us_per_chunk") ? number(o, "proxy_cpu_us_per_chunk") : 0.0) << "\n";
    }
  }
  const auto file = [&](const std::string& name) { return "'" + (dir / name).string() + "'"; };
  std::ostringstream s;
  s << "set terminal pngcairo size 1400,1000 font 'sans,10'\n"
    << "set output '" << png << "'\n"
    << "set multiplot layout 2,2 title 'rvenc bench " << (report.contains("date") ? std::string(report.at("date").as_string()) : "")
    << " (" << (report.contains("mode") ? std::string(report.at("mode").as_string()) : "") << ")'\n"
    << "set grid\nset key left top\nset logscale x\n"
    << "set xlabel 'time to first token (ms)'\nset ylabel 'percentile'\n"
    << "set title 'TTFT distribution, 256 streams x " << number(report, "paced_tokens_per_s_per_stream") << " tok/s'\n"
    << "plot " << file("ttft_paced_direct.dat") << " using 2:1 with lines lw 2 title 'direct', "
    << file("ttft_paced_rvenc.dat") << " using 2:1 with lines lw 2 title 'rvenc (gateway)', "
    << file("ttft_paced_nginx.dat") << " using 2:1 with lines lw 2 title 'nginx in place of gateway'\n"
    << "set title 'TTFT distribution, 256 streams saturated'\n"
    << "plot " << file("ttft_saturated_direct.dat") << " using 2:1 with lines lw 2 title 'direct', "
    << file("ttft_saturated_rvenc.dat") << " using 2:1 with lines lw 2 title 'rvenc (gateway)', "
    << file("ttft_saturated_nginx.dat") << " using 2:1 with lines lw 2 title 'nginx in place of gateway'\n"
    << "set logscale x 2\nset xlabel 'concurrent streams'\nset ylabel 'chunks/s'\n"
    << "set title 'Throughput at saturation'\n"
    << "plot " << file("throughput_direct.dat") << " using 1:2 with linespoints lw 2 title 'direct', "
    << file("throughput_rvenc.dat") << " using 1:2 with linespoints lw 2 title 'rvenc (gateway)', "
    << file("throughput_nginx.dat") << " using 1:2 with linespoints lw 2 title 'nginx in place of gateway'\n"
    << "set ylabel 'proxy CPU us per chunk'\nset title 'Proxy CPU per chunk at saturation'\n"
    << "plot " << file("throughput_rvenc.dat") << " using 1:3 with linespoints lw 2 title 'gateway', "
    << file("throughput_nginx.dat") << " using 1:3 with linespoints lw 2 title 'nginx'\n"
    << "unset multiplot\n";
  return s.str();
}

}  // namespace rvenc::bench
