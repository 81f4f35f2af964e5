// The benchmark's load generator: N concurrent streaming requests, each a coroutine that repeats
// its request until the phase ends, all on the generator's own io_context thread(s), timing the
// first token of each request and counting every chunk.
//
// Design: a target is a StreamCall (one complete streaming request that reports each chunk), so
// the same generator drives plain OpenAI SSE against the engine and the rvenc SDK against the
// gateway or nginx. Samples are kept per worker (no locks on the hot path) and merged at the end.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/executor_work_guard.hpp>

#include "rvenc/common/error.hpp"
#include "rvenc/http/client.hpp"
#include "rvenc/http/types.hpp"

namespace rvenc::bench {

// One streaming request: calls on_chunk() as each content chunk arrives; ok at the clean end.
using StreamCall = std::function<http::awaitable<Status>(std::function<void()> on_chunk)>;

// Plain OpenAI streaming against `base` ("http://HOST:PORT", POST /v1/chat/completions with
// `body`): SSE parsed, each chunk's JSON parsed (as a real client would), ends at [DONE].
[[nodiscard]] StreamCall openai_stream_call(std::shared_ptr<http::HttpClient> client, http::Url base, std::string body);
// Plain OpenAI embeddings against `base` (POST /v1/embeddings with `body`): the whole JSON answer
// read and parsed, then on_chunk() once (a "first token" is then the whole answer's latency).
[[nodiscard]] StreamCall openai_embeddings_call(std::shared_ptr<http::HttpClient> client, http::Url base, std::string body);

// The q-quantile (0..1) of `sorted` by linear interpolation; 0 when empty.
[[nodiscard]] double quantile(const std::vector<double>& sorted, double q);

struct PhaseSpec {
  unsigned concurrency = 1;
  std::chrono::milliseconds warmup{500};    // running, not recorded
  std::chrono::milliseconds duration{2000};  // the measured window
  // Worker i starts its first request i/concurrency of this later. Paced streams that all start
  // together stay in lockstep (every request of a round arrives in the same millisecond), which
  // measures a thundering herd rather than users arriving independently; spreading the starts over
  // one request's duration gives evenly spaced arrivals. Zero: all start at once (saturation).
  std::chrono::milliseconds stagger{0};
  // A worker starts its requests at most this often (one request, then it waits out the rest of the
  // period): callers that think between requests, so latency is measured below saturation. Zero:
  // back to back (a closed loop, whose latency is concurrency / throughput).
  std::chrono::milliseconds period{0};
};

// Live counters, for the progress line.
struct Progress {
  std::uint64_t chunks = 0;
  std::uint64_t requests = 0;
  std::uint64_t errors = 0;
  double elapsed_s = 0;  // since the window opened (negative during warm-up)
};

struct PhaseResult {
  unsigned concurrency = 0;
  double window_s = 0;
  std::uint64_t chunks = 0;    // received inside the window
  std::uint64_t requests = 0;  // completed inside the window
  std::uint64_t errors = 0;    // failed at any time in the phase
  std::string first_error;
  std::vector<double> ttft_ms;        // requests started inside the window, sorted
  std::vector<double> cpu_seconds;    // per watched pid, inside the window
  [[nodiscard]] double chunks_per_s() const { return window_s > 0 ? static_cast<double>(chunks) / window_s : 0; }
};

// Two windows of the same path and concurrency as one: counts, samples and CPU times added.
[[nodiscard]] PhaseResult merge(PhaseResult a, const PhaseResult& b);

class LoadGenerator {
 public:
  explicit LoadGenerator(unsigned threads = 1);
  ~LoadGenerator();
  LoadGenerator(const LoadGenerator&) = delete;
  LoadGenerator& operator=(const LoadGenerator&) = delete;

  // Runs the phase; `watch` are pids whose CPU time is sampled at the window's edges; `progress`
  // is called from this thread every few hundred ms. Returns after in-flight requests ended.
  PhaseResult run(const PhaseSpec& spec, const StreamCall& call, const std::vector<int>& watch,
                  const std::function<void(const Progress&)>& progress);

  // Opens `count` streams (one request each); once every one has had its first chunk calls
  // `while_open` (not called when `timeout` passes first: internal_error); then `release` (which
  // must let the streams end, e.g. release the engine) and waits for them to end.
  Status hold_open(unsigned count, const StreamCall& call, std::chrono::milliseconds timeout,
                   const std::function<void()>& while_open, const std::function<void()>& release);

  [[nodiscard]] boost::asio::io_context& context() noexcept { return context_; }

 private:
  boost::asio::io_context context_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::vector<std::thread> threads_;
};

}  // namespace rvenc::bench
