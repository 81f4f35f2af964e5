// Enforces a deadline on each of a long series of small socket operations (a stream's chunk
// writes, an upstream stream's reads) with about one timer wake-up per deadline period, instead
// of arming and cancelling a timer around every operation as beast::basic_stream does: that
// costs more than the operation itself when a chunk is a few hundred bytes.
//
// Use from the socket's executor only (one thread or one strand): begin() before each operation,
// end() after it. When an operation has been pending for `limit` (or the optional hard end has
// passed), on_expire() is called once, which should close the socket so the operation fails.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

namespace rvenc::http::detail {

class OperationWatchdog {
 public:
  using Clock = std::chrono::steady_clock;

  OperationWatchdog(const boost::asio::any_io_executor& executor, std::chrono::milliseconds limit,
                    std::function<void()> on_expire)
      : state_(std::make_shared<State>(executor, limit, std::move(on_expire))) {}
  ~OperationWatchdog() { stop(); }
  OperationWatchdog(const OperationWatchdog&) = delete;
  OperationWatchdog& operator=(const OperationWatchdog&) = delete;

  // An operation starts now; it may last until `limit` from now (or `hard_end`, if earlier).
  void begin(std::optional<Clock::time_point> hard_end = std::nullopt) { begin_for(state_->limit, hard_end); }
  // The same with a limit of its own (one watchdog for several kinds of operation in turn).
  void begin_for(std::chrono::milliseconds limit, std::optional<Clock::time_point> hard_end = std::nullopt) {
    State& s = *state_;
    s.pending = true;
    s.deadline = Clock::now() + limit;
    if (hard_end && *hard_end < s.deadline) s.deadline = *hard_end;
    // An armed timer that fires before the deadline re-arms itself; one that would fire after it
    // (a shorter hard end) is moved forward.
    if (!s.armed || s.deadline < s.timer.expiry()) arm(state_);
  }
  void end() noexcept { state_->pending = false; }
  [[nodiscard]] bool expired() const noexcept { return state_->expired; }
  // Between operations, lets go of the timer (a pending wait keeps its io_context running); the
  // next begin() arms it again.
  void disarm() noexcept {
    State& s = *state_;
    if (!s.armed) return;
    ++s.generation;
    s.armed = false;
    s.timer.cancel();
  }
  // No on_expire() after this (the destructor calls it).
  void stop() noexcept {
    state_->stopped = true;
    state_->timer.cancel();
  }

 private:
  struct State {
    State(const boost::asio::any_io_executor& executor, std::chrono::milliseconds l, std::function<void()> f)
        : timer(executor), limit(l), on_expire(std::move(f)) {}
    boost::asio::steady_timer timer;
    std::chrono::milliseconds limit;
    std::function<void()> on_expire;
    Clock::time_point deadline;
    unsigned generation = 0;  // of the latest arm(): older waits are stale
    bool pending = false;
    bool armed = false;
    bool expired = false;
    bool stopped = false;
  };

  static void arm(const std::shared_ptr<State>& state) {
    state->armed = true;
    state->timer.expires_at(state->deadline);
    state->timer.async_wait([state, generation = ++state->generation](const boost::system::error_code& ec) {
      if (generation != state->generation || state->stopped) return;
      state->armed = false;
      if (ec || !state->pending) return;  // idle: the next begin() arms again
      if (Clock::now() >= state->deadline) {
        state->expired = true;
        state->on_expire();
        return;
      }
      arm(state);
    });
  }

  std::shared_ptr<State> state_;
};

}  // namespace rvenc::http::detail
