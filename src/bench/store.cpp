#include "rvenc/bench/store.hpp"

#include <stdlib.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <sstream>

#include <boost/json.hpp>

#include "rvenc/bench/postgres.hpp"
#include "rvenc/bench/process.hpp"
#include "rvenc/store/store.hpp"
#include "stack_setup.hpp"

namespace rvenc::bench {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

constexpr std::size_t kCostBatchRows = 256;  // rows per record_usage call, as a busy writer batches
constexpr unsigned kPacedConcurrency = 256;   // the headline concurrency of bench.cpp
constexpr double kTargetRatio = 0.95;
constexpr double kTargetAddedTtftMs = 0.2;

double number_of(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_number() ? v->to_number<double>() : 0.0;
}

double round3(double v) { return std::round(v * 1000) / 1000; }

// The phase of `report` (the rvenc way) with this mode at `concurrency`, or null.
const json::object* phase(const json::object& report, std::string_view mode, unsigned concurrency) {
  const auto* phases = report.if_contains("phases");
  if (!phases || !phases->is_array()) return nullptr;
  for (const auto& p : phases->as_array()) {
    const auto& o = p.as_object();
    if (o.at("mode").as_string() == mode && o.at("concurrency").to_number<unsigned>() == concurrency) return &o;
  }
  return nullptr;
}

// Per-request cost of `location`: a key lookup, and a usage row in batches.
Result<json::object> store_cost(const std::string& location, unsigned requests) {
  auto store = store::KeyStore::open(location);
  if (!store) return std::unexpected(store.error());
  auto key = store->create_key("bench-cost", store::KeyEnv::live, {});
  if (!key) return std::unexpected(key.error());
  const auto hash = store::hash_api_key(key->key);
  using Clock = std::chrono::steady_clock;
  const auto lookups_started = Clock::now();
  for (unsigned i = 0; i < requests; ++i)
    if (auto found = store->find_by_hash(hash); !found || !*found)
      return fail(Errc::internal_error, "store bench: the key lookup failed on " + store->path());
  const auto lookups_took = Clock::now() - lookups_started;
  std::vector<store::UsageRow> batch;
  const auto rows_started = Clock::now();
  for (unsigned i = 0; i < requests; ++i) {
    batch.push_back({"req_bench_" + std::to_string(i), key->record.id, 1'700'000'000'000 + i, "/rvenc/chat/completions",
                     200, 10, 32, 1000, 4000, 5, true});
    if (batch.size() == kCostBatchRows || i + 1 == requests) {
      if (auto ok = store->record_usage(batch); !ok) return std::unexpected(ok.error());
      batch.clear();
    }
  }
  const auto rows_took = Clock::now() - rows_started;
  const auto us = [&](Clock::duration d) {
    return round3(std::chrono::duration<double, std::micro>(d).count() / std::max(1u, requests));
  };
  return json::object{{"lookup_us", us(lookups_took)}, {"usage_row_us", us(rows_took)}};
}

// The local server, when no URL was given: started in `dir`, a database made; its URL.
struct LocalServer {
  std::unique_ptr<ChildProcess> server;
};

Result<std::string> start_local_postgres(const fs::path& dir, LocalServer& local) {
  auto port = free_port();
  if (!port) return std::unexpected(port.error());
  auto commands = prepare_local_postgres(dir, *port);
  if (!commands) return std::unexpected(commands.error());
  ChildProcess init(commands->initdb, dir / "initdb.log");
  const auto status = init.wait_exit(std::chrono::minutes(2));
  if (status != 0) return fail(Errc::internal_error, "initdb failed: " + init.output());
  local.server = std::make_unique<ChildProcess>(commands->postgres, dir / "postgres.log");
  if (auto ready = local.server->wait_for("(" + commands->ready_line + ")"); !ready)
    return std::unexpected(ready.error());
  ChildProcess createdb(commands->createdb("rvenc_bench"), dir / "createdb.log");
  if (createdb.wait_exit(std::chrono::minutes(1)) != 0)
    return fail(Errc::internal_error, "createdb failed: " + createdb.output());
  return commands->url("rvenc_bench");
}

// One store: the full path's figures and the store's own cost.
Result<json::object> measure_store(const StoreBenchOptions& options, const std::string& db,
                                   const std::string& cost_location) {
  BenchOptions run = options.base;
  run.paths = {"rvenc"};
  run.gateway_db = db;
  auto report = run_bench(run);
  if (!report) return std::unexpected(report.error());
  auto cost = store_cost(cost_location, options.cost_requests);
  if (!cost) return std::unexpected(cost.error());
  json::object out = *cost;
  out["chunks_per_s"] = number_of(*report, "gateway_chunks_per_s");
  out["saturation_concurrency"] = number_of(*report, "gateway_saturation_concurrency");
  const auto* paced = phase(*report, "paced", kPacedConcurrency);
  out["ttft_p50_ms"] = paced ? number_of(*paced, "ttft_p50_ms") : 0.0;
  return out;
}

}  // namespace

Result<json::object> run_store_bench(const StoreBenchOptions& options) {
  auto made = detail::make_temp_dir("rvenc-store-bench");
  if (!made) return std::unexpected(made.error());
  const fs::path dir = std::move(*made);
  LocalServer local;
  std::string url = options.postgres_url;
  if (url.empty()) {
    std::cerr << "rvenc bench --store: starting a local PostgreSQL ...\n";
    auto started = start_local_postgres(dir, local);
    if (!started) return std::unexpected(started.error());
    url = *started;
  }
  json::object report;
  std::cerr << "rvenc bench --store: the gateway on SQLite ...\n";
  auto sqlite = measure_store(options, "", (dir / "cost.db").string());
  if (!sqlite) return std::unexpected(sqlite.error());
  std::cerr << "rvenc bench --store: the gateway on PostgreSQL ...\n";
  auto postgres = measure_store(options, url, url);
  if (!postgres) return std::unexpected(postgres.error());
  const double ratio = number_of(*sqlite, "chunks_per_s") > 0
                           ? number_of(*postgres, "chunks_per_s") / number_of(*sqlite, "chunks_per_s")
                           : 0.0;
  const double added = number_of(*postgres, "ttft_p50_ms") - number_of(*sqlite, "ttft_p50_ms");
  report["sqlite"] = std::move(*sqlite);
  report["postgres"] = std::move(*postgres);
  report["store_chunks_ratio"] = round3(ratio);
  report["store_added_ttft_p50_ms"] = round3(added);
  report["targets"] = json::object{{"store_chunks_ratio_at_least", kTargetRatio},
                                   {"store_added_ttft_p50_ms_at_most", kTargetAddedTtftMs}};
  report["quick"] = options.base.quick;
  local.server.reset();
  std::error_code ec;
  if (!options.base.keep_temp) fs::remove_all(dir, ec);
  return report;
}

std::string store_table(const json::object& report) {
  std::ostringstream out;
  out << "| store | chunks/s (saturated) | TTFT p50 paced (ms) | key lookup (µs) | usage row (µs) |\n"
      << "|---|---|---|---|---|\n";
  for (const char* name : {"sqlite", "postgres"}) {
    const auto* o = report.if_contains(name);
    if (!o || !o->is_object()) continue;
    const auto& s = o->as_object();
    out << "| " << name << " | " << number_of(s, "chunks_per_s") << " | " << number_of(s, "ttft_p50_ms") << " | "
        << number_of(s, "lookup_us") << " | " << number_of(s, "usage_row_us") << " |\n";
  }
  const double ratio = number_of(report, "store_chunks_ratio");
  const double added = number_of(report, "store_added_ttft_p50_ms");
  out << "\nPostgreSQL / SQLite chunks/s: " << ratio << " (target >= " << kTargetRatio << ": "
      << (ratio >= kTargetRatio ? "met" : "not met") << ")\n"
      << "added TTFT p50: " << added << " ms (target <= " << kTargetAddedTtftMs << ": "
      << (added <= kTargetAddedTtftMs ? "met" : "not met") << ")\n";
  return out.str();
}

}  // namespace rvenc::bench
