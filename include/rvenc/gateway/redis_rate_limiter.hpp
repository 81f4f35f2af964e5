// Rate limits shared by several gateways: the same request and token buckets as
// InMemoryRateLimiter (same RateDecision fields, limits 0 = unlimited), kept in Redis.
//
// Design: each admission is one atomic Lua script (EVALSHA, EVAL after NOSCRIPT) that refills
// and checks both of the key's buckets and takes one request and the token reservation: one round
// trip per request, one per settlement. The scripts read the Redis server's clock (TIME), so the gateways' clocks do
// not matter, and give every bucket key a PEXPIRE so idle keys disappear once full again.
// When Redis cannot answer, the failure policy decides: closed refuses rate-limited requests
// (503 overloaded, "rate limiter unavailable"), open falls back to per-gateway in-process
// buckets. Transitions are logged once each way; recovery is automatic (the client reconnects).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "rvenc/gateway/rate_limiter.hpp"
#include "rvenc/gateway/redis_client.hpp"

namespace rvenc::gateway {

enum class RedisFailurePolicy { closed, open };

// "closed" / "open"; anything else is invalid_request.
[[nodiscard]] Result<RedisFailurePolicy> parse_failure_policy(std::string_view text);
[[nodiscard]] std::string_view to_string(RedisFailurePolicy policy) noexcept;

inline constexpr std::string_view kRateLimitKeyPrefix = "rvenc:ratelimit:";
// A bucket key outlives the moment its bucket is full again by this much (then it is dropped:
// a missing key reads as a full bucket, so nothing is forgotten).
inline constexpr std::chrono::milliseconds kBucketIdleGrace{5'000};

struct RedisRateLimiterOptions {
  RedisOptions redis;
  RedisFailurePolicy failure_policy = RedisFailurePolicy::closed;
  std::string key_prefix = std::string(kRateLimitKeyPrefix);
};

class RedisRateLimiter final : public RateLimiter {
 public:
  // Connects lazily (the first rate-limited request).
  explicit RedisRateLimiter(RedisRateLimiterOptions options);

  boost::asio::awaitable<Result<RateDecision>> acquire(const std::string& key_id, const KeyLimits& limits,
                                                       std::int64_t estimated_tokens) override;
  boost::asio::awaitable<Status> settle_tokens(const std::string& key_id, const KeyLimits& limits,
                                               std::int64_t reserved, std::int64_t used) override;

  // Whether the last Redis call succeeded.
  [[nodiscard]] bool available() const noexcept { return available_; }
  // Redis calls that failed, and decisions the in-process fallback made (open policy).
  [[nodiscard]] std::uint64_t failures() const noexcept { return failures_; }
  [[nodiscard]] std::uint64_t fallbacks() const noexcept { return fallbacks_; }
  // Prometheus text: rvenc_gateway_redis_up, rvenc_gateway_redis_failures_total,
  // rvenc_gateway_ratelimit_fallback_total.
  [[nodiscard]] std::string metrics_text() const override;

  // The two bucket keys of `key_id` (one hash tag, so one cluster slot).
  [[nodiscard]] std::string requests_key(const std::string& key_id) const;
  [[nodiscard]] std::string tokens_key(const std::string& key_id) const;

 private:
  struct Script {
    std::string body;
    std::string sha;  // from SCRIPT LOAD, under sha_mutex_
  };
  boost::asio::awaitable<Result<RedisValue>> run_script(Script& script, std::vector<std::string> keys_and_args,
                                                        std::size_t key_count);
  void note_success();
  void note_failure(const Error& error);

  RedisRateLimiterOptions options_;
  RedisClient client_;
  InMemoryRateLimiter fallback_;
  std::mutex sha_mutex_;
  Script acquire_script_;
  Script charge_script_;
  std::atomic<bool> available_{true};
  std::atomic<std::uint64_t> failures_{0};
  std::atomic<std::uint64_t> fallbacks_{0};
};

}  // namespace rvenc::gateway
