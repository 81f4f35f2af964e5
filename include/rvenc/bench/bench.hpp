// rvenc bench: the whole path measured on one machine, in one run, side by side.
//
//   direct  load generator -> engine                                 (plain OpenAI SSE)
//   rvenc   load generator (SDK v2, reused keys) -> gateway -> enclave -> engine
//   nginx   load generator (SDK v2, reused keys) -> nginx   -> enclave -> engine
//
// The engine (FastEngine) runs in-process; the enclave and gateway are real `rvenc` processes and
// nginx a child process with a generated config, all on 127.0.0.1. Measured: time to first token
// (p50/p99), chunks per second at saturation, CPU time per chunk of the gateway and of nginx
// (/proc/<pid>/stat), at several concurrencies, saturated and at a realistic token rate; resident
// memory per open stream of the gateway (and nginx); the crypto cost of a request with fresh
// encryption keys against reused ones. Figures are reported against targets, never asserted.
//
// With `tls` (rvenc bench --tls) the load generator reaches both fronts over https: the gateway's
// own TLS (--tls-cert/--tls-key) and nginx terminating TLS, with the same certificate, the same
// pinned TLS 1.3 suite and keep-alive (bench/tls.hpp); the run adds the CPU of a new connection
// with a full handshake on each front, and memory per open stream is then per open TLS stream.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <boost/json/object.hpp>

#include "rvenc/common/error.hpp"

namespace rvenc::bench {

inline constexpr unsigned kDefaultPacedRate = 50;  // tokens per second per stream, a realistic pace

struct BenchOptions {
  bool quick = false;              // under a minute: fewer concurrencies, shorter windows
  std::string rvenc_binary;        // the rvenc executable that runs enclave, gateway and keys
  std::string nginx_binary = "/usr/sbin/nginx";
  std::string rvenc_version;       // recorded in the report
  unsigned paced_rate = kDefaultPacedRate;
  bool keep_temp = false;          // keep the temp dir (configs, logs, database) for inspection
  // The gateway talks HTTP/1.1 to the enclave, a connection per stream, as nginx does (its
  // default, rvenc-mux connections, is what the gateway brings that nginx cannot).
  bool enclave_http1 = false;
  // Narrow a run to profile one part (headline figures that need the missing phases are left out):
  std::vector<std::string> paths;     // of "direct", "rvenc", "nginx"; empty: all three
  std::vector<unsigned> concurrencies;  // saturated and paced phases; empty: the plan's
  std::size_t chunks_per_request = 0;   // of every load phase; 0: the plan's (32)
  bool tls = false;                     // https between the load generator and both fronts
  // The gateway's store (its --db: a path or postgresql://…); empty: a SQLite file in the temp dir.
  std::string gateway_db;
};

// One target of the summary: `key` of the report compared with `bound`.
struct Target {
  std::string key;
  std::string description;
  bool at_least = true;  // value >= bound (else value <= bound)
  double bound = 0;
};
// The targets of a plain run, or of a --tls run (its own memory bound: a TLS stream also holds
// the TLS connection's state).
[[nodiscard]] const std::vector<Target>& targets(bool tls = false);
// The targets that apply to `report` (its "tls" key says which run it was).
[[nodiscard]] const std::vector<Target>& targets_of(const boost::json::object& report);

// A proxy's CPU per request modelled as fixed + per_chunk x chunks relayed.
struct ProxyCpuSplit {
  double fixed_us_per_request = 0;
  double us_per_chunk = 0;
};
// From two phase reports of one proxy that differ only in the answers' length (their chunks,
// requests and proxy_cpu_s as counted, so requests cut at a window's edges do not skew it).
// nullopt unless the second has more chunks per request than the first.
[[nodiscard]] std::optional<ProxyCpuSplit> split_proxy_cpu(const boost::json::object& short_answers,
                                                           const boost::json::object& long_answers);

// Runs everything; progress goes to stderr. The report (see bench/README.md for its keys).
// Errors: internal_error when a part cannot start (the message names it and quotes its log).
[[nodiscard]] Result<boost::json::object> run_bench(const BenchOptions& options);

// The table printed at the end: key figures, then each target with its value and met / not met.
[[nodiscard]] std::string summary_table(const boost::json::object& report);

// The gnuplot script that draws `report` (TTFT distributions, throughput per concurrency) into
// `png`, reading the data files it names inside `data_dir`; writes those data files.
[[nodiscard]] Result<std::string> write_plot_files(const boost::json::object& report, const std::string& data_dir,
                                                   const std::string& png);

}  // namespace rvenc::bench
