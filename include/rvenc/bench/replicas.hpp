// rvenc bench --enclaves 1,2,4: how completed streams scale with the number of enclave replicas
// behind one gateway, how evenly one client's load spreads over them, and how long a client
// takes to be served again after one replica is killed (issue 28 item 7).
//
// Design: each enclave stands for one GPU: the demo engine at 20 ms per token, 64 tokens per
// answer, `--max-streams 32` (a ceiling of 32 streams per 1.28 s = 25 streams/s per enclave). One
// SDK client (one API key, like the proxy serving a team) offers 1.5x the total capacity: 48
// concurrent workers per enclave, each repeating its request; a request refused with
// enclave_busy waits 100 ms before the worker's next one (as a client honouring Retry-After
// would), so refusals do not turn into a busy loop. Measured per run: completed streams/s, the
// busiest and least busy replica's share (gateway /metrics), the gateway's CPU %. Failover: with
// two replicas, kill -9 one, then send requests until one is served: the time from the kill,
// repeated (the killed replica restarted on its key file each time). Reported, never asserted.
#pragma once

#include <boost/json/object.hpp>

#include "rvenc/bench/bench.hpp"
#include "rvenc/common/error.hpp"

namespace rvenc::bench {

struct ReplicaBenchOptions {
  std::vector<unsigned> enclave_counts;  // e.g. {1, 2, 4}
  std::string rvenc_binary;
  bool quick = false;   // shorter windows and 5 kills instead of 20
  bool keep_temp = false;
};

// Runs the scaling runs and the failover series; progress on stderr. The report JSON.
[[nodiscard]] Result<boost::json::object> run_replica_bench(const ReplicaBenchOptions& options);
// The report as a Markdown table (for bench/README.md).
[[nodiscard]] std::string replica_table(const boost::json::object& report);

}  // namespace rvenc::bench
