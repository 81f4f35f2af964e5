#include "rvenc/gateway/rate_limiter.hpp"

#include <algorithm>
#include <cmath>

namespace rvenc::gateway {
namespace {

constexpr double kWindowMs = static_cast<double>(kRateWindow.count());

std::chrono::milliseconds ceil_ms(double ms) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(std::max(ms, 0.0))));
}

}  // namespace

TokenBucket::TokenBucket(std::int64_t capacity, Clock::time_point now) noexcept
    : capacity_(capacity), level_(static_cast<double>(capacity)), last_(now) {}

void TokenBucket::refill(Clock::time_point now) noexcept {
  if (now <= last_) return;
  const double elapsed_ms = std::chrono::duration<double, std::milli>(now - last_).count();
  level_ = std::min(static_cast<double>(capacity_), level_ + elapsed_ms * static_cast<double>(capacity_) / kWindowMs);
  last_ = now;
}

bool TokenBucket::try_take(double n, Clock::time_point now) noexcept {
  refill(now);
  if (level_ < n) return false;
  level_ -= n;
  return true;
}

void TokenBucket::charge(double n, Clock::time_point now) noexcept {
  refill(now);
  level_ = std::min(level_ - n, static_cast<double>(capacity_));
}

std::int64_t TokenBucket::remaining(Clock::time_point now) noexcept {
  refill(now);
  return static_cast<std::int64_t>(std::floor(std::max(level_, 0.0)));
}

std::chrono::milliseconds TokenBucket::time_until(double n, Clock::time_point now) noexcept {
  refill(now);
  if (level_ >= n || capacity_ <= 0) return std::chrono::milliseconds(0);
  return ceil_ms((n - level_) * kWindowMs / static_cast<double>(capacity_));
}

std::chrono::milliseconds TokenBucket::time_until_full(Clock::time_point now) noexcept {
  return time_until(static_cast<double>(capacity_), now);
}

std::string format_reset(std::chrono::milliseconds duration) {
  const std::int64_t ms = std::max<std::int64_t>(duration.count(), 0);
  if (ms < 1000) return std::to_string(ms) + "ms";
  const std::int64_t seconds = (ms + 999) / 1000;
  if (seconds < 60) return std::to_string(seconds) + "s";
  return std::to_string(seconds / 60) + "m" + std::to_string(seconds % 60) + "s";
}

std::vector<std::pair<std::string, std::string>> rate_limit_headers(const RateDecision& d) {
  std::vector<std::pair<std::string, std::string>> headers;
  if (d.limits.requests_per_minute > 0) {
    headers.emplace_back("x-ratelimit-limit-requests", std::to_string(d.limits.requests_per_minute));
    headers.emplace_back("x-ratelimit-remaining-requests", std::to_string(d.remaining_requests));
    headers.emplace_back("x-ratelimit-reset-requests", format_reset(d.reset_requests));
  }
  if (d.limits.tokens_per_minute > 0) {
    headers.emplace_back("x-ratelimit-limit-tokens", std::to_string(d.limits.tokens_per_minute));
    headers.emplace_back("x-ratelimit-remaining-tokens", std::to_string(d.remaining_tokens));
    headers.emplace_back("x-ratelimit-reset-tokens", format_reset(d.reset_tokens));
  }
  if (!d.allowed) {
    const auto seconds = std::max<std::int64_t>(1, (d.retry_after.count() + 999) / 1000);
    headers.emplace_back("Retry-After", std::to_string(seconds));
  }
  return headers;
}

std::int64_t token_reservation(const KeyLimits& limits, std::int64_t estimated_tokens) noexcept {
  if (limits.tokens_per_minute <= 0) return 0;
  return std::clamp<std::int64_t>(estimated_tokens, 0, limits.tokens_per_minute);
}

InMemoryRateLimiter::Buckets& InMemoryRateLimiter::buckets_for(const std::string& key_id, const KeyLimits& limits,
                                                               Clock::time_point now) {
  auto it = buckets_.find(key_id);
  // New key, or its limits were changed in the database: start over with full buckets.
  if (it == buckets_.end() || it->second.requests.capacity() != limits.requests_per_minute ||
      it->second.tokens.capacity() != limits.tokens_per_minute) {
    it = buckets_.insert_or_assign(key_id, Buckets{TokenBucket(limits.requests_per_minute, now),
                                                   TokenBucket(limits.tokens_per_minute, now)})
             .first;
  }
  return it->second;
}

RateDecision InMemoryRateLimiter::acquire_at(const std::string& key_id, const KeyLimits& limits,
                                             Clock::time_point now, std::int64_t estimated_tokens) {
  std::lock_guard lock(mutex_);
  RateDecision d;
  d.limits = limits;
  if (limits.requests_per_minute <= 0 && limits.tokens_per_minute <= 0) return d;
  auto& b = buckets_for(key_id, limits, now);
  const bool requests_ok = limits.requests_per_minute <= 0 || b.requests.time_until(1, now).count() == 0;
  // The reservation must be there (at least one token: a budget in debt refuses requests until
  // it is positive again); one larger than the bucket waits for a full bucket.
  const std::int64_t reserve = token_reservation(limits, estimated_tokens);
  const double need = static_cast<double>(std::max<std::int64_t>(1, reserve));
  const bool tokens_ok = limits.tokens_per_minute <= 0 || b.tokens.time_until(need, now).count() == 0;
  d.allowed = requests_ok && tokens_ok;
  if (d.allowed && limits.requests_per_minute > 0) b.requests.try_take(1, now);
  if (d.allowed && reserve > 0) b.tokens.charge(static_cast<double>(reserve), now);
  if (d.allowed) d.reserved_tokens = reserve;
  if (!d.allowed) {
    if (!requests_ok) d.retry_after = std::max(d.retry_after, b.requests.time_until(1, now));
    if (!tokens_ok) d.retry_after = std::max(d.retry_after, b.tokens.time_until(need, now));
  }
  d.remaining_requests = b.requests.remaining(now);
  d.remaining_tokens = b.tokens.remaining(now);
  d.reset_requests = b.requests.time_until_full(now);
  d.reset_tokens = b.tokens.time_until_full(now);
  return d;
}

void InMemoryRateLimiter::settle_at(const std::string& key_id, const KeyLimits& limits, std::int64_t reserved,
                                    std::int64_t used, Clock::time_point now) {
  const double delta = static_cast<double>(std::max<std::int64_t>(used, 0)) - static_cast<double>(reserved);
  if (limits.tokens_per_minute <= 0 || delta == 0) return;
  std::lock_guard lock(mutex_);
  buckets_for(key_id, limits, now).tokens.charge(delta, now);
}

boost::asio::awaitable<Result<RateDecision>> InMemoryRateLimiter::acquire(const std::string& key_id,
                                                                           const KeyLimits& limits,
                                                                           std::int64_t estimated_tokens) {
  co_return acquire_at(key_id, limits, Clock::now(), estimated_tokens);
}

boost::asio::awaitable<Status> InMemoryRateLimiter::settle_tokens(const std::string& key_id, const KeyLimits& limits,
                                                                   std::int64_t reserved, std::int64_t used) {
  settle_at(key_id, limits, reserved, used, Clock::now());
  co_return Status{};
}

namespace {

// The bucket key of an address: IPv4 whole, IPv6 by its /64.
std::string address_key(const http::IpAddress& address) {
  const http::IpAddress normal = http::normalize_address(address);
  if (normal.is_v4()) return normal.to_string();
  constexpr std::size_t kPrefixBytes = 8;
  auto bytes = normal.to_v6().to_bytes();
  std::fill(bytes.begin() + kPrefixBytes, bytes.end(), 0);
  return boost::asio::ip::address_v6(bytes).to_string() + "/64";
}

}  // namespace

std::chrono::milliseconds AddressRateLimiter::acquire(const http::IpAddress& address, Clock::time_point now) {
  if (per_minute_ <= 0) return std::chrono::milliseconds(0);
  const std::string key = address_key(address);
  std::lock_guard lock(mutex_);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    make_room(now);
    it = buckets_.emplace(key, TokenBucket(per_minute_, now)).first;
  }
  if (it->second.try_take(1, now)) return std::chrono::milliseconds(0);
  return std::max(it->second.time_until(1, now), std::chrono::milliseconds(1));
}

void AddressRateLimiter::make_room(Clock::time_point now) {
  if (buckets_.size() < kMaxAddresses) return;
  for (auto it = buckets_.begin(); it != buckets_.end();)
    it = it->second.remaining(now) >= it->second.capacity() ? buckets_.erase(it) : std::next(it);
  if (buckets_.size() > kMaxAddresses / 2) buckets_.clear();
}

}  // namespace rvenc::gateway
