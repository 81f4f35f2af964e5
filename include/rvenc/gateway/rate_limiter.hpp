// Per-key rate limits: requests per minute and tokens per minute as token buckets.
//
// Design: RateLimiter is the interface the gateway codes against (an in-memory implementation
// here; a shared Redis one can implement the same interface). acquire() takes one request from
// the key's request bucket and a token reservation from its token bucket: min(the request's
// estimate, the bucket's size), admitted when max(1, reservation) tokens are there, so a stream of
// large prompts cannot start faster than the budget refills. settle_tokens() then charges what the
// enclave counted minus the reservation: a refund (up to a full bucket) or more, which may drive
// the bucket below zero (the debt delays the next request; a request larger than the bucket waits
// for a full one and then goes into debt). Limits of 0 mean unlimited. TokenBucket is the pure
// arithmetic, testable with any clock.
// AddressRateLimiter is the same bucket per client address, for what needs no API key (attestation).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "rvenc/gateway/key_store.hpp"
#include "rvenc/http/address.hpp"

namespace rvenc::gateway {

using Clock = std::chrono::steady_clock;

inline constexpr std::chrono::milliseconds kRateWindow{60'000};

// capacity units refill evenly over kRateWindow; starts full.
class TokenBucket {
 public:
  TokenBucket(std::int64_t capacity, Clock::time_point now) noexcept;

  [[nodiscard]] std::int64_t capacity() const noexcept { return capacity_; }
  // Takes `n` units when at least `n` are available.
  bool try_take(double n, Clock::time_point now) noexcept;
  // Takes `n` units unconditionally (the level may go negative); a negative `n` gives units back,
  // up to a full bucket.
  void charge(double n, Clock::time_point now) noexcept;
  // Whole units available now (never negative).
  [[nodiscard]] std::int64_t remaining(Clock::time_point now) noexcept;
  // How long until `n` units are available (0 when they are).
  [[nodiscard]] std::chrono::milliseconds time_until(double n, Clock::time_point now) noexcept;
  // How long until the bucket is full again.
  [[nodiscard]] std::chrono::milliseconds time_until_full(Clock::time_point now) noexcept;

 private:
  void refill(Clock::time_point now) noexcept;
  std::int64_t capacity_;
  double level_;
  Clock::time_point last_;
};

struct RateDecision {
  bool allowed = true;
  KeyLimits limits;  // which limits applied (0 = unlimited: no headers for that dimension)
  std::int64_t remaining_requests = 0;
  std::int64_t remaining_tokens = 0;
  std::chrono::milliseconds reset_requests{0};
  std::chrono::milliseconds reset_tokens{0};
  std::chrono::milliseconds retry_after{0};  // when !allowed
  std::int64_t reserved_tokens = 0;           // taken from the token bucket (when allowed)
};

// The token reservation of a request whose estimate is `estimated_tokens`: at most a full bucket
// (0 when tokens are unlimited).
[[nodiscard]] std::int64_t token_reservation(const KeyLimits& limits, std::int64_t estimated_tokens) noexcept;

// The x-ratelimit-* headers (OpenAI's names; resets like "1s", "250ms", "6m0s") for the limited
// dimensions, plus Retry-After (whole seconds, at least 1) when the request was refused.
[[nodiscard]] std::vector<std::pair<std::string, std::string>> rate_limit_headers(const RateDecision& decision);
// "250ms", "12s", "6m0s".
[[nodiscard]] std::string format_reset(std::chrono::milliseconds duration);

class RateLimiter {
 public:
  virtual ~RateLimiter() = default;
  // One request for `key_id` under `limits`, estimated at `estimated_tokens` (the gateway's guess
  // from the request's size): allowed (counted, its reservation taken) or refused with retry_after.
  virtual boost::asio::awaitable<Result<RateDecision>> acquire(const std::string& key_id, const KeyLimits& limits,
                                                               std::int64_t estimated_tokens) = 0;
  // Settles an admitted request: charges `used` tokens (prompt + completion) less the `reserved`
  // ones acquire() took (a negative difference is given back, up to a full bucket).
  virtual boost::asio::awaitable<Status> settle_tokens(const std::string& key_id, const KeyLimits& limits,
                                                       std::int64_t reserved, std::int64_t used) = 0;
  // Extra Prometheus lines for /metrics (the shared Redis limiter reports its health).
  [[nodiscard]] virtual std::string metrics_text() const { return {}; }
};

// Buckets in this process's memory (one gateway; a shared store is the Redis implementation).
class InMemoryRateLimiter final : public RateLimiter {
 public:
  boost::asio::awaitable<Result<RateDecision>> acquire(const std::string& key_id, const KeyLimits& limits,
                                                       std::int64_t estimated_tokens) override;
  boost::asio::awaitable<Status> settle_tokens(const std::string& key_id, const KeyLimits& limits,
                                               std::int64_t reserved, std::int64_t used) override;

  // The synchronous core of both, with an explicit clock (tests).
  RateDecision acquire_at(const std::string& key_id, const KeyLimits& limits, Clock::time_point now,
                          std::int64_t estimated_tokens = 0);
  void settle_at(const std::string& key_id, const KeyLimits& limits, std::int64_t reserved, std::int64_t used,
                 Clock::time_point now);

 private:
  struct Buckets {
    TokenBucket requests;
    TokenBucket tokens;
  };
  Buckets& buckets_for(const std::string& key_id, const KeyLimits& limits, Clock::time_point now);

  std::mutex mutex_;
  std::map<std::string, Buckets> buckets_;
};

// Requests per minute per client address, in this process's memory: a bucket of `per_minute` per
// address (IPv6 by /64, what one host usually holds), starting full. At most kMaxAddresses
// buckets: when full, buckets that have refilled are dropped (they equal a fresh one), and if
// more than half are still left, all are (one sweep per kMaxAddresses / 2 new addresses at most,
// so a flood from many addresses costs no sweep per request). Thread-safe.
class AddressRateLimiter {
 public:
  static constexpr std::size_t kMaxAddresses = 65'536;

  explicit AddressRateLimiter(std::int64_t per_minute) noexcept : per_minute_(per_minute) {}
  [[nodiscard]] std::int64_t per_minute() const noexcept { return per_minute_; }
  // Takes one request for `address`: 0 ms when allowed, else how long until one is.
  [[nodiscard]] std::chrono::milliseconds acquire(const http::IpAddress& address, Clock::time_point now);

 private:
  void make_room(Clock::time_point now);

  std::int64_t per_minute_;
  std::mutex mutex_;
  std::map<std::string, TokenBucket> buckets_;  // by address (IPv6: its /64)
};

}  // namespace rvenc::gateway
