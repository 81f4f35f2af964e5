// rvenc bench: starts engine, enclave, gateway and nginx on 127.0.0.1 and measures the rvenc path
// against direct access and against nginx in place of the gateway (see bench/README.md).
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <boost/json/serialize.hpp>

#include "command.hpp"
#include "rvenc/bench/bench.hpp"
#include "rvenc/bench/replicas.hpp"
#include "rvenc/bench/store.hpp"
#include "rvenc/bench/traffic.hpp"

namespace rvenc::cli {
namespace {

namespace fs = std::filesystem;

struct BenchFlags {
  bool quick = false;
  std::string json;
  std::string plot;
  std::string rvenc;
  std::string nginx = "/usr/sbin/nginx";
  unsigned rate = bench::kDefaultPacedRate;
  bool keep_temp = false;
  bool enclave_http1 = false;
  bool tls = false;
  std::vector<std::string> paths;
  std::vector<unsigned> concurrencies;
  std::size_t chunks = 0;
  std::vector<unsigned> enclaves;  // --enclaves: the replica scaling run instead
  std::string store;      // --store postgres: the gateway on PostgreSQL against SQLite instead
  std::string store_url;  // --store-url: that PostgreSQL (default: a local one the bench starts)
};

// Writes `report` to `path` (--json); the exit code.
int write_json(const boost::json::object& report, const std::string& path) {
  if (path.empty()) return kExitOk;
  std::ofstream out(path, std::ios::trunc);
  out << boost::json::serialize(report) << "\n";
  if (!out) {
    std::cerr << "rvenc bench: cannot write " << path << "\n";
    return kExitFailure;
  }
  std::cerr << "report written to " << path << "\n";
  return kExitOk;
}

// rvenc bench --store postgres: the gateway's store on PostgreSQL against SQLite (store.hpp).
int run_store_bench(const BenchFlags& flags, const bench::BenchOptions& base) {
  bench::StoreBenchOptions options;
  options.base = base;
  options.postgres_url = flags.store_url;
  if (options.base.quick) options.cost_requests = 500;
  auto report = bench::run_store_bench(options);
  if (!report) {
    std::cerr << "rvenc bench: " << report.error().message << "\n";
    return kExitUnavailable;
  }
  std::cout << bench::store_table(*report) << std::flush;
  return write_json(*report, flags.json);
}

// rvenc bench --enclaves 1,2,4: the replica scaling run and failover series (replicas.hpp).
int run_replica_bench(const BenchFlags& flags, const std::string& rvenc_binary) {
  bench::ReplicaBenchOptions options;
  options.enclave_counts = flags.enclaves;
  options.rvenc_binary = rvenc_binary;
  options.quick = flags.quick;
  options.keep_temp = flags.keep_temp;
  auto report = bench::run_replica_bench(options);
  if (!report) {
    std::cerr << "rvenc bench: " << report.error().message << "\n";
    return kExitUnavailable;
  }
  std::cout << bench::replica_table(*report) << std::flush;
  if (!flags.json.empty()) std::ofstream(flags.json, std::ios::trunc) << boost::json::serialize(*report) << "\n";
  return kExitOk;
}

int write_plot(const boost::json::object& report, const std::string& png) {
  char dir_template[] = "/tmp/rvenc-bench-plot-XXXXXX";
  if (!::mkdtemp(dir_template)) {
    std::cerr << "rvenc bench: cannot create a temporary directory for the plot data\n";
    return kExitFailure;
  }
  const fs::path dir(dir_template);
  auto script = bench::write_plot_files(report, dir.string(), fs::absolute(png).string());
  int status = -1;
  if (script) {
    std::ofstream(dir / "plot.gp") << *script;
    status = std::system(("gnuplot '" + (dir / "plot.gp").string() + "' 2>&1").c_str());
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (status != 0) {
    std::cerr << "rvenc bench: gnuplot failed; is the gnuplot-nox package installed?\n";
    return kExitFailure;
  }
  std::cerr << "plot written to " << png << "\n";
  return kExitOk;
}

struct TrafficFlags {
  bool quick = false;
  std::string json;
  std::string svg;
  std::string rvenc;
  std::string harness;
  unsigned concurrency = 8;
  bool keep_temp = false;
};

// rvenc bench traffic: the traffic-analysis attack per shaping mode (bench/traffic.hpp).
int run_traffic(const TrafficFlags& flags) {
  bench::TrafficOptions options;
  std::error_code ec;
  options.rvenc_binary = flags.rvenc.empty() ? fs::read_symlink("/proc/self/exe", ec).string() : flags.rvenc;
  if (options.rvenc_binary.empty() || ::access(options.rvenc_binary.c_str(), X_OK) != 0) {
    std::cerr << "rvenc bench traffic: cannot run the rvenc binary '" << options.rvenc_binary << "' (--rvenc)\n";
    return kExitUsage;
  }
  options.quick = flags.quick;
  options.harness = flags.harness;
  options.svg = flags.svg;
  options.concurrency = flags.concurrency;
  options.keep_temp = flags.keep_temp;
  auto report = bench::run_traffic_bench(options);
  if (!report) {
    std::cerr << "rvenc bench traffic: " << report.error().message << "\n";
    return kExitUnavailable;
  }
  std::cout << report->at("table").as_string().c_str() << std::flush;
  report->erase("table");
  if (!flags.json.empty()) std::ofstream(flags.json, std::ios::trunc) << boost::json::serialize(*report) << "\n";
  return kExitOk;
}

void setup_traffic(CLI::App& bench_cmd, std::function<int()>& run) {
  auto flags = std::make_shared<TrafficFlags>();
  auto* cmd = bench_cmd.add_subcommand(
      "traffic",
      "Traffic analysis: plays a two-class corpus through the real stack in each shaping mode (off, pad, cadence), "
      "records what the gateway sees and reports a classifier's AUC/AUPRC per mode with its cost (needs "
      "scripts/setup_sklearn.sh; see docs/traffic-shaping.md)");
  flag(*cmd, "--quick", flags->quick, "40 answers per class instead of 120 (under 5 minutes)");
  option(*cmd, "--json", flags->json, "Write the report as JSON to FILE")->envname("RVENC_BENCH_JSON");
  option(*cmd, "--svg", flags->svg, "Draw AUC against bandwidth per mode into FILE.svg");
  option(*cmd, "--rvenc", flags->rvenc, "rvenc binary for the enclave, gateway and keys (default: this one)");
  option(*cmd, "--harness", flags->harness, "The classifier harness (default: the source tree's bench/traffic/traffic.py)");
  option(*cmd, "--concurrency", flags->concurrency, "Streams at once")->capture_default_str()->check(CLI::Range(1u, 64u));
  flag(*cmd, "--keep-temp", flags->keep_temp, "Keep the corpus, the records and the logs, and print their directory");
  cmd->callback([&run, flags] { run = [flags] { return run_traffic(*flags); }; });
}

int run_bench(const BenchFlags& flags) {
  bench::BenchOptions options;
  options.quick = flags.quick;
  options.nginx_binary = flags.nginx;
  options.paced_rate = flags.rate;
  options.keep_temp = flags.keep_temp;
  options.enclave_http1 = flags.enclave_http1;
  options.tls = flags.tls;
  options.paths = flags.paths;
  options.concurrencies = flags.concurrencies;
  options.chunks_per_request = flags.chunks;
  options.rvenc_version = RVENC_VERSION;
  std::error_code ec;
  options.rvenc_binary = flags.rvenc.empty() ? fs::read_symlink("/proc/self/exe", ec).string() : flags.rvenc;
  if (options.rvenc_binary.empty() || ::access(options.rvenc_binary.c_str(), X_OK) != 0) {
    std::cerr << "rvenc bench: cannot run the rvenc binary '" << options.rvenc_binary << "' (--rvenc)\n";
    return kExitUsage;
  }
  if (flags.tls && !flags.enclaves.empty()) {
    std::cerr << "rvenc bench: --tls compares the gateway's TLS with nginx's; it does not apply to --enclaves\n";
    return kExitUsage;
  }
  if (!flags.enclaves.empty()) return run_replica_bench(flags, options.rvenc_binary);
  if (::access(options.nginx_binary.c_str(), X_OK) != 0) {
    std::cerr << "rvenc bench: cannot run nginx at '" << options.nginx_binary
              << "' (install the Debian package nginx, or give --nginx)\n";
    return kExitUsage;
  }
  if (options.paced_rate == 0) {
    std::cerr << "rvenc bench: --rate must be positive\n";
    return kExitUsage;
  }

  if (flags.store == "postgres") return run_store_bench(flags, options);
  auto report = bench::run_bench(options);
  if (!report) {
    std::cerr << "rvenc bench: " << report.error().message << "\n";
    return kExitUnavailable;
  }
  std::cout << bench::summary_table(*report) << std::flush;
  if (const auto* dir = report->if_contains("temp_dir"); dir && dir->is_string())
    std::cerr << "kept the temporary directory " << dir->as_string().c_str() << "\n";
  int exit_code = write_json(*report, flags.json);
  if (!flags.plot.empty() && write_plot(*report, flags.plot) != kExitOk) exit_code = kExitFailure;
  return exit_code;
}

void setup(CLI::App& app, std::function<int()>& run) {
  auto flags = std::make_shared<BenchFlags>();
  auto* cmd = app.add_subcommand(
      "bench",
      "Measure rvenc on this machine: direct vs gateway vs nginx in its place (TTFT, throughput, CPU, memory), and "
      "embeddings latency next to two plain nginx hops (what any two-process path costs the machine)");
  flag(*cmd, "--quick", flags->quick, "A short run (under a minute): concurrency 1, 16, 256");
  // RVENC_JSON is a boolean for chat and attest; bench's is a file path, so it has a name of its own.
  option(*cmd, "--json", flags->json, "Write the report as JSON to FILE")->envname("RVENC_BENCH_JSON");
  option(*cmd, "--plot", flags->plot, "Draw TTFT distributions and throughput into FILE.png (gnuplot)");
  option(*cmd, "--rvenc", flags->rvenc, "rvenc binary for the enclave, gateway and keys (default: this one)");
  option(*cmd, "--nginx", flags->nginx, "nginx binary of the baseline proxy")->capture_default_str();
  option(*cmd, "--rate", flags->rate, "Tokens per second per stream of the paced phases")->capture_default_str();
  option(*cmd, "--store", flags->store,
         "postgres: run the gateway's path on a PostgreSQL store and on SQLite, and compare (chunks/s, TTFT p50, "
         "the store's cost per request); sqlite: the usual run")
      ->check(CLI::IsMember({"sqlite", "postgres"}));
  option(*cmd, "--store-url", flags->store_url,
         "With --store postgres: the PostgreSQL to use (postgresql://…; default: a local one started for the run)");
  option(*cmd, "--paths", flags->paths, "Only these paths (direct, rvenc, nginx), e.g. to profile one")
      ->delimiter(',')
      ->check(CLI::IsMember({"direct", "rvenc", "nginx"}));
  option(*cmd, "--concurrency", flags->concurrencies, "Only these concurrencies, e.g. 16,256")
      ->delimiter(',')
      ->check(at_least(1));
  option(*cmd, "--chunks", flags->chunks, "Chunks per request of the load phases (default 32); 1 weighs per-request costs")
      ->check(at_least(1));
  option(*cmd, "--enclaves", flags->enclaves,
         "Instead: the replica scaling run with these enclave counts, e.g. 1,2,4 (each --max-streams 32, 20 ms per "
         "token, 64 tokens, offered load 1.5x capacity), then the failover series (kill -9 of one of two replicas)")
      ->delimiter(',')
      ->check(CLI::Range(1u, 16u));
  flag(*cmd, "--keep-temp", flags->keep_temp, "Keep the temporary directory (configs, logs) and print its path");
  flag(*cmd, "--tls", flags->tls,
       "https between the load generator and both fronts: the gateway's own TLS against nginx terminating TLS, same "
       "certificate (local CA), TLS 1.3 pinned to TLS_AES_128_GCM_SHA256; adds CPU per new TLS connection")
      ->envname("RVENC_BENCH_TLS");
  flag(*cmd, "--enclave-http1", flags->enclave_http1,
       "Gateway to enclave over HTTP/1.1, a connection per stream, as nginx (default: rvenc-mux connections)");
  setup_traffic(*cmd, run);
  cmd->require_subcommand(0, 1);
  // CLI11 runs the subcommand's callback first: `bench` keeps the traffic run it chose.
  cmd->callback([&run, flags, cmd] {
    if (!cmd->got_subcommand("traffic")) run = [flags] { return run_bench(*flags); };
  });
}

const Registrar registrar{{"bench", setup}};

}  // namespace
}  // namespace rvenc::cli
