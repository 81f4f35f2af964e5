// rvenc bench --store postgres: the gateway on a PostgreSQL store against the same gateway on
// its SQLite store, in one run (issue 23 item 5).
//
// Design: a throw-away local PostgreSQL (bench/postgres.hpp) unless a URL is given. Two figures:
// (1) the full rvenc path (bench.hpp, the "rvenc" way only) once per store: saturated chunks/s at
// the best concurrency, and TTFT p50 of the paced phase, PostgreSQL's against SQLite's; (2) each
// store's own cost per request, measured in this process on the calls a request makes: a key
// lookup (a key-cache miss; the gateway caches keys, so most requests make none) and the
// request's usage row written in batches (the gateway's writer thread). Reported against the
// issue's targets (ratio >= 0.95, added TTFT p50 <= 0.2 ms), never asserted.
#pragma once

#include <string>

#include <boost/json/object.hpp>

#include "rvenc/bench/bench.hpp"
#include "rvenc/common/error.hpp"

namespace rvenc::bench {

struct StoreBenchOptions {
  BenchOptions base;        // the load run's options (its paths and gateway_db are set here)
  std::string postgres_url;  // empty: start a local PostgreSQL in the temp dir
  unsigned cost_requests = 2000;  // requests of the per-request cost measurement, per store
};

// Keys: sqlite/postgres {chunks_per_s, saturation_concurrency, ttft_p50_ms, lookup_us,
// usage_row_us}, store_chunks_ratio, store_added_ttft_p50_ms, targets. internal_error when a part
// cannot start.
[[nodiscard]] Result<boost::json::object> run_store_bench(const StoreBenchOptions& options);
// The report as a Markdown table (for bench/README.md).
[[nodiscard]] std::string store_table(const boost::json::object& report);

}  // namespace rvenc::bench
