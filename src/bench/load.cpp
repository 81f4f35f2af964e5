#include "rvenc/bench/load.hpp"

#include <algorithm>
#include <cmath>
#include <mutex>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>

#include "rvenc/bench/process.hpp"
#include "rvenc/protocol/sse.hpp"

namespace rvenc::bench {
namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds kErrorBackoff{10};
constexpr std::chrono::milliseconds kProgressEvery{250};
constexpr std::chrono::milliseconds kPoll{10};
// Longest wait for the in-flight requests of a phase once its window closed.
constexpr std::chrono::seconds kDrainTimeout{60};
constexpr std::chrono::milliseconds kStreamIdleTimeout{30'000};
constexpr std::string_view kChatPath = "/v1/chat/completions";

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

struct PhaseState {
  explicit PhaseState(std::size_t workers) : samples(workers) {}
  std::atomic<bool> stop{false};
  std::atomic<bool> recording{false};
  std::atomic<std::uint64_t> chunks{0};
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> opened{0};  // requests that had their first chunk
  std::atomic<unsigned> active{0};
  std::mutex mutex;
  std::string first_error;
  std::vector<std::vector<double>> samples;  // per worker: no sharing on the hot path
};

// `repeat`: loop until stop; otherwise one request.
http::awaitable<void> worker(std::shared_ptr<PhaseState> state, StreamCall call, std::size_t index, bool repeat,
                             std::chrono::nanoseconds start_delay = {}, std::chrono::nanoseconds period = {}) {
  asio::steady_timer backoff(co_await asio::this_coro::executor);
  if (start_delay.count() > 0) {
    backoff.expires_after(start_delay);
    co_await backoff.async_wait(asio::use_awaitable);
  }
  do {
    const auto start = Clock::now();
    const bool record = state->recording.load(std::memory_order_relaxed);
    bool first = true;
    Status status;
    try {
      status = co_await call([&] {
        if (first) {
          first = false;
          state->opened.fetch_add(1, std::memory_order_relaxed);
          if (record) state->samples[index].push_back(ms_since(start));
        }
        state->chunks.fetch_add(1, std::memory_order_relaxed);
      });
    } catch (const std::exception& e) {
      status = fail(Errc::internal_error, e.what());
    }
    if (status) {
      state->requests.fetch_add(1, std::memory_order_relaxed);
      if (period.count() > 0 && Clock::now() < start + period) {
        backoff.expires_at(start + period);
        co_await backoff.async_wait(asio::use_awaitable);
      }
      continue;
    }
    state->errors.fetch_add(1, std::memory_order_relaxed);
    {
      std::lock_guard lock(state->mutex);
      if (state->first_error.empty()) state->first_error = status.error().to_string();
    }
    // A failing target must not turn the generator into a busy loop.
    backoff.expires_after(kErrorBackoff);
    co_await backoff.async_wait(asio::use_awaitable);
  } while (repeat && !state->stop.load(std::memory_order_relaxed));
  state->active.fetch_sub(1);
}

void wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!done() && Clock::now() < deadline) std::this_thread::sleep_for(kPoll);
}

}  // namespace

double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double position = std::clamp(q, 0.0, 1.0) * static_cast<double>(sorted.size() - 1);
  const auto below = static_cast<std::size_t>(std::floor(position));
  const auto above = std::min(below + 1, sorted.size() - 1);
  const double fraction = position - static_cast<double>(below);
  return sorted[below] + (sorted[above] - sorted[below]) * fraction;
}

StreamCall openai_embeddings_call(std::shared_ptr<http::HttpClient> client, http::Url base, std::string body) {
  return [client = std::move(client), base = std::move(base),
          body = std::move(body)](std::function<void()> on_chunk) -> http::awaitable<Status> {
    http::Timeouts timeouts;
    timeouts.idle = kStreamIdleTimeout;
    auto response = co_await client->request(base, http::make_request(http::Verb::post, base.join("/v1/embeddings"), body),
                                             timeouts);
    if (!response) co_return std::unexpected(response.error());
    if (response->result_int() != 200)
      co_return fail(Errc::upstream_error, "the engine answered HTTP " + std::to_string(response->result_int()));
    boost::system::error_code ec;
    const auto parsed = boost::json::parse(response->body(), ec);  // as a real client would
    if (ec || !parsed.is_object()) co_return fail(Errc::upstream_error, "the engine's embeddings are not JSON");
    on_chunk();
    co_return Status{};
  };
}

StreamCall openai_stream_call(std::shared_ptr<http::HttpClient> client, http::Url base, std::string body) {
  return [client = std::move(client), base = std::move(base),
          body = std::move(body)](std::function<void()> on_chunk) -> http::awaitable<Status> {
    auto request = http::make_request(http::Verb::post, base.join(kChatPath), body);
    request.set(boost::beast::http::field::accept, http::kEventStreamContentType);
    http::Timeouts timeouts;
    timeouts.idle = kStreamIdleTimeout;
    auto opened = co_await client->open(base, std::move(request), timeouts);
    if (!opened) co_return std::unexpected(opened.error());
    auto& stream = **opened;
    if (stream.status() != 200)
      co_return fail(Errc::upstream_error, "the engine answered HTTP " + std::to_string(stream.status()));
    protocol::SseParser parser;
    std::vector<protocol::SseEvent> events;
    bool done = false;
    while (true) {
      auto bytes = co_await stream.read_some();
      if (!bytes) co_return std::unexpected(bytes.error());
      if (!*bytes) break;
      if (auto fed = parser.feed(**bytes, events); !fed) co_return std::unexpected(fed.error());
      for (const auto& event : events) {
        if (event.data == "[DONE]") {
          done = true;
          continue;
        }
        boost::system::error_code ec;
        const auto chunk = boost::json::parse(event.data, ec);
        if (ec || !chunk.is_object()) co_return fail(Errc::upstream_error, "the engine sent a chunk that is not JSON");
        on_chunk();
      }
      events.clear();
    }
    if (!done) co_return fail(Errc::truncated_stream, "the engine stream ended before [DONE]");
    co_return Status{};
  };
}

LoadGenerator::LoadGenerator(unsigned threads) : guard_(asio::make_work_guard(context_)) {
  for (unsigned i = 0; i < std::max(1U, threads); ++i) threads_.emplace_back([this] { context_.run(); });
}

LoadGenerator::~LoadGenerator() {
  guard_.reset();
  context_.stop();
  for (auto& thread : threads_) thread.join();
}

PhaseResult LoadGenerator::run(const PhaseSpec& spec, const StreamCall& call, const std::vector<int>& watch,
                               const std::function<void(const Progress&)>& progress) {
  auto state = std::make_shared<PhaseState>(spec.concurrency);
  state->active = spec.concurrency;
  for (std::size_t i = 0; i < spec.concurrency; ++i) {
    const auto delay = std::chrono::nanoseconds(spec.stagger) * static_cast<long long>(i) / spec.concurrency;
    asio::co_spawn(context_, worker(state, call, i, true, delay, spec.period), asio::detached);
  }

  const auto report = [&](double elapsed_s, std::uint64_t chunks0, std::uint64_t requests0) {
    if (progress)
      progress(Progress{state->chunks.load() - chunks0, state->requests.load() - requests0, state->errors.load(),
                        elapsed_s});
  };
  const auto phase_start = Clock::now();
  while (Clock::now() - phase_start < spec.warmup) {
    std::this_thread::sleep_for(std::min<Clock::duration>(kProgressEvery, spec.warmup));
    report(-std::chrono::duration<double>(spec.warmup - (Clock::now() - phase_start)).count(), 0, 0);
  }

  // The window: counters and CPU times are sampled at both edges.
  std::vector<double> cpu_start;
  for (int pid : watch) cpu_start.push_back(process_cpu_seconds(pid).value_or(0));
  const std::uint64_t chunks0 = state->chunks.load();
  const std::uint64_t requests0 = state->requests.load();
  state->recording = true;
  const auto window_start = Clock::now();
  while (Clock::now() - window_start < spec.duration) {
    std::this_thread::sleep_for(std::min<Clock::duration>(kProgressEvery, spec.duration - (Clock::now() - window_start)));
    report(std::chrono::duration<double>(Clock::now() - window_start).count(), chunks0, requests0);
  }
  state->recording = false;
  PhaseResult result;
  result.concurrency = spec.concurrency;
  result.window_s = std::chrono::duration<double>(Clock::now() - window_start).count();
  result.chunks = state->chunks.load() - chunks0;
  result.requests = state->requests.load() - requests0;
  for (std::size_t i = 0; i < watch.size(); ++i) result.cpu_seconds.push_back(process_cpu_seconds(watch[i]).value_or(0) - cpu_start[i]);

  state->stop = true;
  wait_until([&] { return state->active.load() == 0; }, kDrainTimeout);
  result.errors = state->errors.load();
  {
    std::lock_guard lock(state->mutex);
    result.first_error = state->first_error;
  }
  // Only read the samples once every worker has finished (they are written on the io threads).
  if (state->active.load() == 0) {
    for (auto& samples : state->samples) result.ttft_ms.insert(result.ttft_ms.end(), samples.begin(), samples.end());
    std::sort(result.ttft_ms.begin(), result.ttft_ms.end());
  }
  return result;
}

PhaseResult merge(PhaseResult a, const PhaseResult& b) {
  a.window_s += b.window_s;
  a.chunks += b.chunks;
  a.requests += b.requests;
  a.errors += b.errors;
  if (a.first_error.empty()) a.first_error = b.first_error;
  const auto middle = a.ttft_ms.insert(a.ttft_ms.end(), b.ttft_ms.begin(), b.ttft_ms.end());
  std::inplace_merge(a.ttft_ms.begin(), middle, a.ttft_ms.end());
  a.cpu_seconds.resize(std::max(a.cpu_seconds.size(), b.cpu_seconds.size()));
  for (std::size_t i = 0; i < b.cpu_seconds.size(); ++i) a.cpu_seconds[i] += b.cpu_seconds[i];
  return a;
}

Status LoadGenerator::hold_open(unsigned count, const StreamCall& call, std::chrono::milliseconds timeout,
                                const std::function<void()>& while_open, const std::function<void()>& release) {
  auto state = std::make_shared<PhaseState>(count);
  state->active = count;
  for (std::size_t i = 0; i < count; ++i) asio::co_spawn(context_, worker(state, call, i, false), asio::detached);
  wait_until([&] { return state->opened.load() + state->errors.load() >= count; }, timeout);
  const std::uint64_t opened = state->opened.load();
  if (opened == count) while_open();
  release();
  wait_until([&] { return state->active.load() == 0; }, kDrainTimeout);
  if (opened != count) {
    std::lock_guard lock(state->mutex);
    return fail(Errc::internal_error, "only " + std::to_string(opened) + " of " + std::to_string(count) +
                                          " streams opened" +
                                          (state->first_error.empty() ? "" : " (" + state->first_error + ")"));
  }
  return {};
}

}  // namespace rvenc::bench
