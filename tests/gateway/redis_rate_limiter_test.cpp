#include <gtest/gtest.h>

#include "redis_server.hpp"
#include "rvenc/gateway/redis_rate_limiter.hpp"

namespace rvenc::gateway {
namespace {

using namespace std::chrono_literals;
using test::eventually;
using test::RedisServer;
using test::run_sync;

RedisRateLimiterOptions limiter_options(const RedisServer& server,
                                        RedisFailurePolicy policy = RedisFailurePolicy::closed) {
  RedisRateLimiterOptions options;
  options.redis = server.options(1);
  options.failure_policy = policy;
  return options;
}

Result<RateDecision> acquire(RedisRateLimiter& limiter, const std::string& key, const KeyLimits& limits,
                             std::int64_t estimated_tokens = 0) {
  return run_sync(limiter.acquire(key, limits, estimated_tokens));
}

bool has_header(const RateDecision& d, const std::string& name) {
  for (const auto& [k, v] : rate_limit_headers(d))
    if (k == name) return true;
  return false;
}

TEST(RedisRateLimiter, FailurePolicyParsing) {
  EXPECT_EQ(parse_failure_policy("open"), RedisFailurePolicy::open);
  EXPECT_EQ(parse_failure_policy("closed"), RedisFailurePolicy::closed);
  EXPECT_FALSE(parse_failure_policy("Open"));
  EXPECT_FALSE(parse_failure_policy(""));
  EXPECT_EQ(to_string(RedisFailurePolicy::open), "open");
}

TEST(RedisRateLimiter, ExactlyTheLimitAcrossTwoGatewaysSharingRedis) {
  RedisServer server;
  ASSERT_TRUE(server.ready());
  // Two limiters, two connections: as two gateway processes would be.
  RedisRateLimiter a(limiter_options(server));
  RedisRateLimiter b(limiter_options(server));
  const KeyLimits limits{5, 0, 0};
  int admitted = 0;
  std::optional<RateDecision> refused;
  for (int i = 0; i < 20; ++i) {
    auto decision = acquire(i % 2 == 0 ? a : b, "key_shared", limits);
    ASSERT_TRUE(decision) << decision.error().message;
    if (decision->allowed) {
      ++admitted;
      EXPECT_EQ(decision->remaining_requests, 5 - admitted);
    } else if (!refused) {
      refused = *decision;
    }
  }
  // One request refills every 12 s: none can come back during the loop above.
  EXPECT_EQ(admitted, 5);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->remaining_requests, 0);
  EXPECT_GT(refused->retry_after.count(), 0);
  EXPECT_LE(refused->retry_after, 12'000ms);
  EXPECT_GT(refused->reset_requests, 12'000ms);
  EXPECT_LE(refused->reset_requests, 60'000ms);
  EXPECT_TRUE(has_header(*refused, "Retry-After"));
  EXPECT_TRUE(has_header(*refused, "x-ratelimit-remaining-requests"));
  EXPECT_FALSE(has_header(*refused, "x-ratelimit-limit-tokens"));
  // Other keys have their own buckets.
  EXPECT_TRUE(acquire(b, "key_other", limits)->allowed);
}

TEST(RedisRateLimiter, TokensChargedOnOneGatewayLimitTheOther) {
  RedisServer server;
  ASSERT_TRUE(server.ready());
  RedisRateLimiter a(limiter_options(server));
  RedisRateLimiter b(limiter_options(server));
  const KeyLimits limits{0, 100, 0};
  auto first = acquire(a, "key_t", limits);
  ASSERT_TRUE(first);
  EXPECT_TRUE(first->allowed);
  EXPECT_EQ(first->remaining_tokens, 100);
  EXPECT_EQ(first->reset_tokens, 0ms);
  // 150 tokens: the bucket goes 50 into debt.
  ASSERT_TRUE(run_sync(b.settle_tokens("key_t", limits, 0, 150)));
  auto refused = acquire(a, "key_t", limits);
  ASSERT_TRUE(refused);
  EXPECT_FALSE(refused->allowed);
  EXPECT_EQ(refused->remaining_tokens, 0);
  // 51 tokens at 100 per minute: about 30.6 s (less whatever time passed since the charge).
  EXPECT_LE(refused->retry_after, 30'600ms);
  EXPECT_GT(refused->retry_after, 20'000ms);
  EXPECT_GT(refused->reset_tokens, 80'000ms);
  EXPECT_TRUE(has_header(*refused, "x-ratelimit-limit-tokens"));
  EXPECT_FALSE(has_header(*refused, "x-ratelimit-limit-requests"));
  // Charges of nothing, or to keys without a token limit, do nothing.
  EXPECT_TRUE(run_sync(b.settle_tokens("key_t", limits, 0, 0)));
  EXPECT_TRUE(run_sync(b.settle_tokens("key_t", KeyLimits{5, 0, 0}, 0, 1000)));
}

// Issue 30 item 2, shared buckets: the same reservation semantics as the in-memory limiter.
TEST(RedisRateLimiter, ReservesTheEstimateAtAdmissionAndRefundsOnSettle) {
  RedisServer server;
  ASSERT_TRUE(server.ready());
  RedisRateLimiter a(limiter_options(server));
  RedisRateLimiter b(limiter_options(server));
  const KeyLimits limits{0, 1000, 0};
  auto first = acquire(a, "key_r", limits, 600);
  ASSERT_TRUE(first) << first.error().message;
  ASSERT_TRUE(first->allowed);
  EXPECT_EQ(first->reserved_tokens, 600);
  EXPECT_EQ(first->remaining_tokens, 400);
  // The other gateway sees the reservation: a second large request does not fit.
  auto second = acquire(b, "key_r", limits, 600);
  ASSERT_TRUE(second);
  EXPECT_FALSE(second->allowed);
  EXPECT_EQ(second->reserved_tokens, 0);
  // About 200 tokens at 1000 per minute (less whatever time passed).
  EXPECT_LE(second->retry_after, 12'000ms);
  EXPECT_GT(second->retry_after, 6'000ms);
  EXPECT_TRUE(has_header(*second, "Retry-After"));
  // The first used 100: 500 come back, and the second fits.
  ASSERT_TRUE(run_sync(a.settle_tokens("key_r", limits, 600, 100)));
  auto third = acquire(b, "key_r", limits, 600);
  ASSERT_TRUE(third);
  EXPECT_TRUE(third->allowed);
  EXPECT_GE(third->remaining_tokens, 300);
  EXPECT_LT(third->remaining_tokens, 400);
}

TEST(RedisRateLimiter, OversizedRequestWaitsForAFullBucketThenGoesIntoDebt) {
  RedisServer server;
  ASSERT_TRUE(server.ready());
  RedisRateLimiter limiter(limiter_options(server));
  const KeyLimits limits{0, 100, 0};
  ASSERT_TRUE(acquire(limiter, "key_big", limits, 40)->allowed);
  auto refused = acquire(limiter, "key_big", limits, 5000);
  ASSERT_TRUE(refused);
  EXPECT_FALSE(refused->allowed);  // waits for a full bucket (40 tokens: about 24 s)
  EXPECT_LE(refused->retry_after, 24'000ms);
  EXPECT_GT(refused->retry_after, 14'000ms);
  // Settled as if refilled: a refund is capped at a full bucket, then the oversized one fits.
  ASSERT_TRUE(run_sync(limiter.settle_tokens("key_big", limits, 40, 0)));
  auto admitted = acquire(limiter, "key_big", limits, 5000);
  ASSERT_TRUE(admitted);
  ASSERT_TRUE(admitted->allowed);
  EXPECT_EQ(admitted->reserved_tokens, 100);
  ASSERT_TRUE(run_sync(limiter.settle_tokens("key_big", limits, 100, 5000)));
  auto in_debt = acquire(limiter, "key_big", limits, 1);
  ASSERT_TRUE(in_debt);
  EXPECT_FALSE(in_debt->allowed);
  EXPECT_GT(in_debt->retry_after, 2'900'000ms);  // 4901 tokens at 100 per minute
}

TEST(RedisRateLimiter, BucketsAreRedisKeysThatExpireWhenIdle) {
  RedisServer server;
  ASSERT_TRUE(server.ready());
  RedisRateLimiter limiter(limiter_options(server));
  RedisClient inspect(server.options(1));
  // Unlimited keys never touch Redis.
  auto unlimited = acquire(limiter, "key_free", KeyLimits{});
  ASSERT_TRUE(unlimited);
  EXPECT_TRUE(unlimited->allowed);
  EXPECT_TRUE(rate_limit_headers(*unlimited).empty());
  EXPECT_EQ(inspect.command_sync({"DBSIZE"})->integer, 0);

  ASSERT_TRUE(acquire(limiter, "key_x", KeyLimits{60, 0, 0}));
  auto ttl = inspect.command_sync({"PTTL", limiter.requests_key("key_x")});
  ASSERT_TRUE(ttl);
  // One request of 60 refills in 1 s, plus the idle grace.
  EXPECT_GT(ttl->integer, 0);
  EXPECT_LE(ttl->integer, (1'000ms + kBucketIdleGrace).count());
  EXPECT_EQ(inspect.command_sync({"EXISTS", limiter.tokens_key("key_x")})->integer, 0);
  EXPECT_NE(limiter.requests_key("key_x").find("{key_x}"), std::string::npos);
}

TEST(RedisRateLimiter, ChangedLimitsStartOverAndLostScriptsAreReloaded) {
  RedisServer server;
  ASSERT_TRUE(server.ready());
  RedisRateLimiter limiter(limiter_options(server));
  EXPECT_TRUE(acquire(limiter, "key_c", KeyLimits{1, 0, 0})->allowed);
  EXPECT_FALSE(acquire(limiter, "key_c", KeyLimits{1, 0, 0})->allowed);
  // The key's limit was raised in the database: a full bucket of the new size.
  auto raised = acquire(limiter, "key_c", KeyLimits{3, 0, 0});
  ASSERT_TRUE(raised);
  EXPECT_TRUE(raised->allowed);
  EXPECT_EQ(raised->remaining_requests, 2);

  RedisClient admin(server.options(1));
  ASSERT_TRUE(admin.command_sync({"SCRIPT", "FLUSH"}));
  auto after_flush = acquire(limiter, "key_c", KeyLimits{3, 0, 0});
  ASSERT_TRUE(after_flush) << after_flush.error().message;
  EXPECT_EQ(after_flush->remaining_requests, 1);
  EXPECT_TRUE(limiter.available());
  EXPECT_EQ(limiter.failures(), 0u);
}

TEST(RedisRateLimiter, ClosedPolicyRefusesWhileRedisIsDownAndRecovers) {
  RedisServer server;
  ASSERT_TRUE(server.ready());
  RedisRateLimiter limiter(limiter_options(server, RedisFailurePolicy::closed));
  const KeyLimits limits{1000, 0, 0};
  ASSERT_TRUE(acquire(limiter, "key_d", limits));
  server.kill();
  for (int i = 0; i < 5; ++i) {
    auto decision = acquire(limiter, "key_d", limits);
    ASSERT_FALSE(decision);
    EXPECT_EQ(decision.error().code, Errc::overloaded);
    EXPECT_EQ(decision.error().message, "rate limiter unavailable");
    EXPECT_EQ(http_status(decision.error().code), 503);
  }
  EXPECT_FALSE(run_sync(limiter.settle_tokens("key_d", KeyLimits{0, 10, 0}, 0, 5)));
  EXPECT_FALSE(limiter.available());
  EXPECT_GE(limiter.failures(), 5u);
  EXPECT_EQ(limiter.fallbacks(), 0u);
  EXPECT_NE(limiter.metrics_text().find("rvenc_gateway_redis_up 0"), std::string::npos);
  // Keys without limits need no Redis.
  EXPECT_TRUE(acquire(limiter, "key_free", KeyLimits{}));

  server.start();
  ASSERT_TRUE(server.ready());
  EXPECT_TRUE(eventually([&] {
    auto decision = acquire(limiter, "key_d", limits);
    return decision && decision->allowed;
  }));
  EXPECT_TRUE(limiter.available());
  EXPECT_NE(limiter.metrics_text().find("rvenc_gateway_redis_up 1"), std::string::npos);
}

TEST(RedisRateLimiter, OpenPolicyFallsBackToInProcessLimits) {
  RedisServer server;
  ASSERT_TRUE(server.ready());
  RedisRateLimiter limiter(limiter_options(server, RedisFailurePolicy::open));
  const KeyLimits limits{3, 0, 0};
  ASSERT_TRUE(acquire(limiter, "key_o", limits));
  server.kill();
  int admitted = 0;
  for (int i = 0; i < 6; ++i) {
    auto decision = acquire(limiter, "key_o", limits);
    ASSERT_TRUE(decision) << decision.error().message;
    admitted += decision->allowed ? 1 : 0;
  }
  // The in-process buckets still limit (fresh: full at 3).
  EXPECT_EQ(admitted, 3);
  EXPECT_TRUE(run_sync(limiter.settle_tokens("key_o", KeyLimits{0, 10, 0}, 0, 5)));
  EXPECT_FALSE(limiter.available());
  EXPECT_GE(limiter.fallbacks(), 7u);
  EXPECT_NE(limiter.metrics_text().find("rvenc_gateway_ratelimit_fallback_total"), std::string::npos);

  server.start();
  ASSERT_TRUE(server.ready());
  EXPECT_TRUE(eventually([&] {
    (void)acquire(limiter, "key_o2", limits);
    return limiter.available();
  }));
}

}  // namespace
}  // namespace rvenc::gateway
