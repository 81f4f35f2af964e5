#include <gtest/gtest.h>

#include "rvenc/gateway/rate_limiter.hpp"

namespace rvenc::gateway {
namespace {

using namespace std::chrono_literals;

TEST(TokenBucket, StartsFullAndRefillsOverTheWindow) {
  const auto t0 = Clock::now();
  TokenBucket bucket(60, t0);
  EXPECT_EQ(bucket.remaining(t0), 60);
  EXPECT_TRUE(bucket.try_take(60, t0));
  EXPECT_FALSE(bucket.try_take(1, t0));
  EXPECT_EQ(bucket.time_until(1, t0), 1000ms);
  EXPECT_EQ(bucket.remaining(t0 + 1s), 1);
  EXPECT_EQ(bucket.remaining(t0 + 30s), 30);
  EXPECT_EQ(bucket.remaining(t0 + 10min), 60);  // never above capacity
}

TEST(TokenBucket, ChargeCanGoIntoDebt) {
  const auto t0 = Clock::now();
  TokenBucket bucket(100, t0);
  bucket.charge(150, t0);
  EXPECT_EQ(bucket.remaining(t0), 0);
  EXPECT_EQ(bucket.time_until(1, t0), 30600ms);  // 51 tokens at 100/min
  EXPECT_EQ(bucket.time_until_full(t0), 90000ms);
}

TEST(InMemoryRateLimiter, RequestsPerMinute) {
  InMemoryRateLimiter limiter;
  const KeyLimits limits{2, 0, 0};
  const auto t0 = Clock::now();
  auto first = limiter.acquire_at("k", limits, t0);
  EXPECT_TRUE(first.allowed);
  EXPECT_EQ(first.remaining_requests, 1);
  EXPECT_TRUE(limiter.acquire_at("k", limits, t0).allowed);
  auto third = limiter.acquire_at("k", limits, t0);
  EXPECT_FALSE(third.allowed);
  EXPECT_EQ(third.remaining_requests, 0);
  EXPECT_EQ(third.retry_after, 30000ms);
  EXPECT_TRUE(limiter.acquire_at("other", limits, t0).allowed);  // per key
  EXPECT_TRUE(limiter.acquire_at("k", limits, t0 + 30s).allowed);
}

TEST(InMemoryRateLimiter, TokensPerMinuteChargedAfterwards) {
  InMemoryRateLimiter limiter;
  const KeyLimits limits{0, 100, 0};
  const auto t0 = Clock::now();
  EXPECT_TRUE(limiter.acquire_at("k", limits, t0).allowed);
  limiter.settle_at("k", limits, 0, 100, t0);
  auto refused = limiter.acquire_at("k", limits, t0);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.remaining_tokens, 0);
  EXPECT_EQ(refused.retry_after, 600ms);
  EXPECT_TRUE(limiter.acquire_at("k", limits, t0 + 1s).allowed);
}

// Issue 30 item 2: a request's estimate is reserved at admission, so that requests which are
// still streaming cannot all start on one full bucket; the settlement gives back what was not used.
TEST(InMemoryRateLimiter, ReservesTheEstimateAtAdmissionAndRefundsOnSettle) {
  InMemoryRateLimiter limiter;
  const KeyLimits limits{0, 1000, 0};
  const auto t0 = Clock::now();
  const auto first = limiter.acquire_at("k", limits, t0, 600);
  ASSERT_TRUE(first.allowed);
  EXPECT_EQ(first.reserved_tokens, 600);
  EXPECT_EQ(first.remaining_tokens, 400);
  // A second large request does not fit in what is left: refused, Retry-After until it does.
  const auto second = limiter.acquire_at("k", limits, t0, 600);
  EXPECT_FALSE(second.allowed);
  EXPECT_EQ(second.reserved_tokens, 0);
  EXPECT_EQ(second.retry_after, 12000ms);  // 200 tokens at 1000/min
  EXPECT_TRUE(limiter.acquire_at("k", limits, t0 + 12s, 600).allowed);  // Retry-After was true
  // The first used 100 of its 600: 500 come back (the second took the bucket down to 0).
  limiter.settle_at("k", limits, 600, 100, t0 + 12s);
  EXPECT_EQ(limiter.acquire_at("k", limits, t0 + 12s, 1).remaining_tokens, 499);
}

TEST(InMemoryRateLimiter, RefundNeverFillsBeyondTheBucket) {
  InMemoryRateLimiter limiter;
  const KeyLimits limits{0, 100, 0};
  const auto t0 = Clock::now();
  ASSERT_TRUE(limiter.acquire_at("k", limits, t0, 50).allowed);
  limiter.settle_at("k", limits, 50, 0, t0 + 1min);  // refilled meanwhile: the refund is capped
  EXPECT_EQ(limiter.acquire_at("k", limits, t0 + 1min, 1).remaining_tokens, 99);
}

// A request larger than the bucket waits for a full bucket, then goes into debt at settlement.
TEST(InMemoryRateLimiter, OversizedRequestWaitsForAFullBucketThenGoesIntoDebt) {
  InMemoryRateLimiter limiter;
  const KeyLimits limits{0, 100, 0};
  const auto t0 = Clock::now();
  ASSERT_TRUE(limiter.acquire_at("k", limits, t0, 10).allowed);
  const auto refused = limiter.acquire_at("k", limits, t0, 5000);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after, 6000ms);  // 10 tokens at 100/min: a full bucket again
  const auto admitted = limiter.acquire_at("k", limits, t0 + 6s, 5000);
  ASSERT_TRUE(admitted.allowed);
  EXPECT_EQ(admitted.reserved_tokens, 100);  // at most the bucket
  limiter.settle_at("k", limits, 10, 10, t0 + 6s);
  limiter.settle_at("k", limits, 100, 5000, t0 + 6s);
  const auto in_debt = limiter.acquire_at("k", limits, t0 + 6s, 1);
  EXPECT_FALSE(in_debt.allowed);
  EXPECT_EQ(in_debt.retry_after, 2940600ms);  // 4901 tokens at 100/min
}

TEST(InMemoryRateLimiter, UnlimitedAndChangedLimits) {
  InMemoryRateLimiter limiter;
  const auto t0 = Clock::now();
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(limiter.acquire_at("k", {}, t0).allowed);
  EXPECT_TRUE(limiter.acquire_at("k", {1, 0, 0}, t0).allowed);
  EXPECT_FALSE(limiter.acquire_at("k", {1, 0, 0}, t0).allowed);
  EXPECT_TRUE(limiter.acquire_at("k", {5, 0, 0}, t0).allowed);  // raised limit: new buckets
}

TEST(RateLimitHeaders, NamesAndFormats) {
  RateDecision d;
  d.allowed = false;
  d.limits = {2, 1000, 0};
  d.remaining_requests = 0;
  d.remaining_tokens = 950;
  d.reset_requests = 61000ms;
  d.reset_tokens = 250ms;
  d.retry_after = 1200ms;
  const auto headers = rate_limit_headers(d);
  auto get = [&](const std::string& name) {
    for (const auto& [n, v] : headers)
      if (n == name) return v;
    return std::string("<missing>");
  };
  EXPECT_EQ(get("x-ratelimit-limit-requests"), "2");
  EXPECT_EQ(get("x-ratelimit-remaining-requests"), "0");
  EXPECT_EQ(get("x-ratelimit-reset-requests"), "1m1s");
  EXPECT_EQ(get("x-ratelimit-limit-tokens"), "1000");
  EXPECT_EQ(get("x-ratelimit-remaining-tokens"), "950");
  EXPECT_EQ(get("x-ratelimit-reset-tokens"), "250ms");
  EXPECT_EQ(get("Retry-After"), "2");
  d.allowed = true;
  d.limits = {};
  EXPECT_TRUE(rate_limit_headers(d).empty());
}

TEST(AddressRateLimiter, BurstThenRefillPerAddressAndIpv6By64) {
  AddressRateLimiter limiter(3);
  const auto t0 = Clock::now();
  const auto a = boost::asio::ip::make_address("203.0.113.9");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limiter.acquire(a, t0).count(), 0) << i;
  const auto wait = limiter.acquire(a, t0);
  EXPECT_GT(wait.count(), 0);
  EXPECT_LE(wait, 20000ms);  // one of 3 a minute
  EXPECT_EQ(limiter.acquire(boost::asio::ip::make_address("203.0.113.10"), t0).count(), 0);  // another address
  EXPECT_EQ(limiter.acquire(boost::asio::ip::make_address("::ffff:203.0.113.9"), t0).count() > 0, true);  // same one
  EXPECT_EQ(limiter.acquire(a, t0 + wait).count(), 0);  // refilled

  // Addresses of one /64 share a bucket; the next /64 has its own.
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(limiter.acquire(boost::asio::ip::make_address("2001:db8:1:2::" + std::to_string(i + 1)), t0).count(), 0);
  EXPECT_GT(limiter.acquire(boost::asio::ip::make_address("2001:db8:1:2:ffff::1"), t0).count(), 0);
  EXPECT_EQ(limiter.acquire(boost::asio::ip::make_address("2001:db8:1:3::1"), t0).count(), 0);

  AddressRateLimiter unlimited(0);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(unlimited.acquire(a, t0).count(), 0);
}

}  // namespace
}  // namespace rvenc::gateway
