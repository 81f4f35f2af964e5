#include "rvenc/gateway/redis_rate_limiter.hpp"

#include <spdlog/spdlog.h>

namespace rvenc::gateway {
namespace {

// Shared by both scripts: the server's clock and the TokenBucket arithmetic of rate_limiter.cpp.
// A bucket is a hash {level, ts, cap}; a missing key, or one made for other limits, is full.
// ARGV[1] is the window in ms, ARGV[2] the idle grace in ms.
constexpr std::string_view kBucketLua = R"lua(
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local window = tonumber(ARGV[1])
local grace = tonumber(ARGV[2])

local function load(key, cap)
  if cap <= 0 then return nil end
  local v = redis.call('HMGET', key, 'level', 'ts', 'cap')
  local level, ts, c = tonumber(v[1]), tonumber(v[2]), tonumber(v[3])
  if level == nil or ts == nil or c ~= cap then return {level = cap, ts = now, cap = cap} end
  if now > ts then
    level = math.min(cap, level + (now - ts) * cap / window)
    ts = now
  end
  return {level = level, ts = ts, cap = cap}
end

local function wait_ms(b, n)
  if b == nil or b.level >= n then return 0 end
  return math.ceil((n - b.level) * window / b.cap)
end

local function store(key, b)
  redis.call('HSET', key, 'level', b.level, 'ts', b.ts, 'cap', b.cap)
  redis.call('PEXPIRE', key, wait_ms(b, b.cap) + grace)
end

local function remaining(b)
  if b == nil then return 0 end
  return math.floor(math.max(b.level, 0))
end
)lua";

// KEYS: requests bucket, tokens bucket. ARGV[3], ARGV[4]: requests and tokens per minute; ARGV[5]:
// the token reservation (token_reservation(): at most the bucket's size).
// Returns {allowed, remaining requests, remaining tokens, reset requests ms, reset tokens ms, retry ms,
// reserved tokens}.
constexpr std::string_view kAcquireLua = R"lua(
local r = load(KEYS[1], tonumber(ARGV[3]))
local k = load(KEYS[2], tonumber(ARGV[4]))
local reserve = 0
if k ~= nil then reserve = tonumber(ARGV[5]) end
-- The reservation must be there (at least one token: a budget in debt refuses requests until it
-- is positive again); one as large as the bucket waits for a full bucket.
local need = math.max(1, reserve)
local requests_ok = r == nil or r.level >= 1
local tokens_ok = k == nil or k.level >= need
local allowed = requests_ok and tokens_ok
if allowed and r ~= nil then r.level = r.level - 1 end
if allowed and k ~= nil then k.level = k.level - reserve else reserve = 0 end
local retry = 0
if not requests_ok then retry = math.max(retry, wait_ms(r, 1)) end
if not tokens_ok then retry = math.max(retry, wait_ms(k, need)) end
if r ~= nil then store(KEYS[1], r) end
if k ~= nil then store(KEYS[2], k) end
local rfull, kfull = 0, 0
if r ~= nil then rfull = wait_ms(r, r.cap) end
if k ~= nil then kfull = wait_ms(k, k.cap) end
return {allowed and 1 or 0, remaining(r), remaining(k), rfull, kfull, retry, reserve}
)lua";

// KEYS: tokens bucket. ARGV[3]: tokens per minute, ARGV[4]: tokens to charge (the level may go
// negative); a negative charge gives tokens back, up to a full bucket.
constexpr std::string_view kChargeLua = R"lua(
local k = load(KEYS[1], tonumber(ARGV[3]))
k.level = math.min(k.cap, k.level - tonumber(ARGV[4]))
store(KEYS[1], k)
return remaining(k)
)lua";

constexpr std::size_t kAcquireReplySize = 7;

Result<RateDecision> decision_from(const RedisValue& reply, const KeyLimits& limits) {
  if (reply.type != RedisValue::Type::array || reply.elements.size() != kAcquireReplySize)
    return fail(Errc::internal_error, "unexpected reply from the rate limit script");
  for (const auto& element : reply.elements)
    if (element.type != RedisValue::Type::integer)
      return fail(Errc::internal_error, "unexpected reply from the rate limit script");
  RateDecision d;
  d.limits = limits;
  d.allowed = reply.elements[0].integer == 1;
  d.remaining_requests = reply.elements[1].integer;
  d.remaining_tokens = reply.elements[2].integer;
  d.reset_requests = std::chrono::milliseconds(reply.elements[3].integer);
  d.reset_tokens = std::chrono::milliseconds(reply.elements[4].integer);
  d.retry_after = std::chrono::milliseconds(reply.elements[5].integer);
  d.reserved_tokens = reply.elements[6].integer;
  return d;
}

}  // namespace

Result<RedisFailurePolicy> parse_failure_policy(std::string_view text) {
  if (text == "closed") return RedisFailurePolicy::closed;
  if (text == "open") return RedisFailurePolicy::open;
  return fail(Errc::invalid_request, "the Redis failure policy must be 'open' or 'closed'");
}

std::string_view to_string(RedisFailurePolicy policy) noexcept {
  return policy == RedisFailurePolicy::open ? "open" : "closed";
}

RedisRateLimiter::RedisRateLimiter(RedisRateLimiterOptions options)
    : options_(std::move(options)),
      client_(options_.redis),
      acquire_script_{std::string(kBucketLua) + std::string(kAcquireLua), {}},
      charge_script_{std::string(kBucketLua) + std::string(kChargeLua), {}} {}

std::string RedisRateLimiter::requests_key(const std::string& key_id) const {
  return options_.key_prefix + "{" + key_id + "}:requests";
}

std::string RedisRateLimiter::tokens_key(const std::string& key_id) const {
  return options_.key_prefix + "{" + key_id + "}:tokens";
}

boost::asio::awaitable<Result<RedisValue>> RedisRateLimiter::run_script(Script& script,
                                                                        std::vector<std::string> keys_and_args,
                                                                        std::size_t key_count) {
  std::string sha;
  {
    std::lock_guard lock(sha_mutex_);
    sha = script.sha;
  }
  if (sha.empty()) {
    std::vector<std::string> load{"SCRIPT", "LOAD", script.body};
    auto loaded = co_await client_.command(std::move(load));
    if (!loaded) co_return std::unexpected(loaded.error());
    if (loaded->type != RedisValue::Type::bulk) co_return fail(Errc::internal_error, "SCRIPT LOAD failed: " + loaded->text);
    sha = loaded->text;
    std::lock_guard lock(sha_mutex_);
    script.sha = sha;
  }
  std::vector<std::string> command{"EVALSHA", sha, std::to_string(key_count)};
  command.insert(command.end(), keys_and_args.begin(), keys_and_args.end());
  auto reply = co_await client_.command(command);
  // The server lost its script cache (restart, SCRIPT FLUSH): EVAL caches it again.
  if (reply && reply->is_error("NOSCRIPT")) {
    command[0] = "EVAL";
    command[1] = script.body;
    reply = co_await client_.command(std::move(command));
  }
  if (reply && reply->is_error()) co_return fail(Errc::internal_error, "rate limit script failed: " + reply->text);
  co_return reply;
}

void RedisRateLimiter::note_success() {
  if (!available_.exchange(true))
    spdlog::info("rate limiter: redis at {} is back; limits are shared again", options_.redis.url.to_string());
}

void RedisRateLimiter::note_failure(const Error& error) {
  ++failures_;
  if (available_.exchange(false)) {
    spdlog::error("rate limiter: redis at {} unavailable ({}); {}", options_.redis.url.to_string(), error.message,
                  options_.failure_policy == RedisFailurePolicy::closed
                      ? "refusing rate-limited requests (503) until it is back (--redis-failure closed)"
                      : "using this gateway's own in-process limits until it is back (--redis-failure open)");
  }
}

boost::asio::awaitable<Result<RateDecision>> RedisRateLimiter::acquire(const std::string& key_id,
                                                                        const KeyLimits& limits,
                                                                        std::int64_t estimated_tokens) {
  if (limits.requests_per_minute <= 0 && limits.tokens_per_minute <= 0) {
    RateDecision unlimited;
    unlimited.limits = limits;
    co_return unlimited;
  }
  std::vector<std::string> keys_and_args{requests_key(key_id),
                                         tokens_key(key_id),
                                         std::to_string(kRateWindow.count()),
                                         std::to_string(kBucketIdleGrace.count()),
                                         std::to_string(limits.requests_per_minute),
                                         std::to_string(limits.tokens_per_minute),
                                         std::to_string(token_reservation(limits, estimated_tokens))};
  auto reply = co_await run_script(acquire_script_, std::move(keys_and_args), 2);
  Result<RateDecision> decision =
      reply ? decision_from(*reply, limits) : Result<RateDecision>(std::unexpected(reply.error()));
  if (decision) {
    note_success();
    co_return decision;
  }
  note_failure(decision.error());
  if (options_.failure_policy == RedisFailurePolicy::closed)
    co_return fail(Errc::overloaded, "rate limiter unavailable");
  ++fallbacks_;
  co_return co_await fallback_.acquire(key_id, limits, estimated_tokens);
}

boost::asio::awaitable<Status> RedisRateLimiter::settle_tokens(const std::string& key_id, const KeyLimits& limits,
                                                               std::int64_t reserved, std::int64_t used) {
  const std::int64_t tokens = std::max<std::int64_t>(used, 0) - reserved;
  if (limits.tokens_per_minute <= 0 || tokens == 0) co_return Status{};
  std::vector<std::string> keys_and_args{tokens_key(key_id), std::to_string(kRateWindow.count()),
                                         std::to_string(kBucketIdleGrace.count()),
                                         std::to_string(limits.tokens_per_minute), std::to_string(tokens)};
  auto reply = co_await run_script(charge_script_, std::move(keys_and_args), 1);
  if (reply && reply->type == RedisValue::Type::integer) {
    note_success();
    co_return Status{};
  }
  note_failure(reply ? Error{Errc::internal_error, "unexpected reply from the charge script"} : reply.error());
  if (options_.failure_policy == RedisFailurePolicy::closed)
    co_return fail(Errc::overloaded, "rate limiter unavailable: tokens not charged");
  ++fallbacks_;
  co_return co_await fallback_.settle_tokens(key_id, limits, reserved, used);
}

std::string RedisRateLimiter::metrics_text() const {
  std::string out;
  out += "# HELP rvenc_gateway_redis_up Whether the last call to the shared rate limiter's Redis succeeded.\n";
  out += "# TYPE rvenc_gateway_redis_up gauge\n";
  out += "rvenc_gateway_redis_up " + std::string(available_ ? "1" : "0") + "\n";
  out += "# HELP rvenc_gateway_redis_failures_total Rate limiter calls to Redis that failed.\n";
  out += "# TYPE rvenc_gateway_redis_failures_total counter\n";
  out += "rvenc_gateway_redis_failures_total " + std::to_string(failures_) + "\n";
  out += "# HELP rvenc_gateway_ratelimit_fallback_total Rate limit decisions made in-process while Redis was down.\n";
  out += "# TYPE rvenc_gateway_ratelimit_fallback_total counter\n";
  out += "rvenc_gateway_ratelimit_fallback_total " + std::to_string(fallbacks_) + "\n";
  return out;
}

}  // namespace rvenc::gateway
