#include "rvenc/gateway/middleware.hpp"

#include <array>

#include <spdlog/spdlog.h>

#include "rvenc/common/auth.hpp"
#include "rvenc/common/clock.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "rvenc/protocol/chat.hpp"

namespace rvenc::gateway {
namespace {

namespace beast_http = boost::beast::http;

constexpr std::size_t kRequestIdTimeHexDigits = 12;  // milliseconds since the epoch, 48 bits
constexpr std::size_t kRequestIdRandomBytes = 6;
// Request ids are public, so their randomness is drawn a page at a time, not by one getrandom() each.
constexpr std::size_t kRequestIdRandomPool = 4096;
constexpr unsigned kStatusHeadersTooLarge = 431;

// An OpenAI client pointed at the gateway instead of the proxy (POST /v1/chat/completions, GET /v1/models).
constexpr std::string_view kOpenAiPathHint =
    "this is the rvenc gateway; point OpenAI clients at rvenc proxy (its URL ends in /v1), which encrypts "
    "requests for the enclave";


// "req_" + time (ms, hex) + random: unique across gateways sharing a database, and ordered by
// time so usage rows land at the end of the request_id index instead of all over it.
// Whether the request carries a known, unrevoked API key (nothing is logged or charged).
bool has_valid_api_key(const http::Request& request, KeyCache& keys) {
  const auto header = request.base().find(beast_http::field::authorization);
  if (header == request.base().end()) return false;
  const auto token = bearer_token(header->value());
  if (!token || !is_well_formed_api_key(*token)) return false;
  const auto found = keys.lookup(hash_api_key(*token));
  return found && *found && !(*found)->revoked();
}

std::string new_request_id(std::int64_t unix_ms) {
  thread_local std::array<std::uint8_t, kRequestIdRandomPool> pool;
  thread_local std::size_t used = kRequestIdRandomPool;
  if (used + kRequestIdRandomBytes > pool.size()) {
    crypto::random_bytes(pool);
    used = 0;
  }
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string id = "req_";
  id.reserve(4 + kRequestIdTimeHexDigits + 2 * kRequestIdRandomBytes);
  for (std::size_t i = kRequestIdTimeHexDigits; i-- > 0;)
    id += kDigits[(static_cast<std::uint64_t>(unix_ms) >> (4 * i)) & 0xf];
  id += to_hex(std::span<const std::uint8_t>(pool.data() + used, kRequestIdRandomBytes));
  used += kRequestIdRandomBytes;
  return id;
}

}  // namespace

StreamSlots::Slot::~Slot() {
  if (owner_) owner_->release(key_id_);
}

std::optional<StreamSlots::Slot> StreamSlots::try_acquire(const std::string& key_id, std::int64_t max_streams) {
  std::lock_guard lock(mutex_);
  auto& n = active_[key_id];
  if (max_streams > 0 && n >= max_streams) return std::nullopt;
  ++n;
  return Slot(this, key_id);
}

std::int64_t StreamSlots::active(const std::string& key_id) const {
  std::lock_guard lock(mutex_);
  const auto it = active_.find(key_id);
  return it == active_.end() ? 0 : it->second;
}

void StreamSlots::release(const std::string& key_id) {
  std::lock_guard lock(mutex_);
  if (auto it = active_.find(key_id); it != active_.end() && --it->second <= 0) active_.erase(it);
}

RequestContext::RequestContext(http::Request& r)
    : request(r),
      received(Clock::now()),
      received_unix_ms(unix_now_ms()),
      request_id(new_request_id(received_unix_ms)) {}

http::awaitable<StepResult> run_steps(std::span<const Step> steps, RequestContext& context) {
  for (const auto& step : steps) {
    if (const auto* now = std::get_if<SyncStep>(&step)) {
      if (auto response = (*now)(context)) co_return response;
    } else if (auto response = co_await std::get<AsyncStep>(step)(context)) {
      co_return response;
    }
  }
  co_return std::nullopt;
}

void decorate(http::Fields& fields, const RequestContext& context) {
  fields.set("X-Request-Id", context.request_id);
  if (context.rate)
    for (const auto& [name, value] : rate_limit_headers(*context.rate)) fields.set(name, value);
}

http::Response gateway_error(const RequestContext& context, const Error& error) {
  auto response = http::error_response(context.request, error, kErrorSource);
  decorate(response.base(), context);
  return response;
}

Step allow_list_step(std::vector<RouteKey> routes) {
  return SyncStep{[routes = std::move(routes)](RequestContext& context) -> StepResult {
    const std::string_view path = http::target_path(context.request);
    bool path_known = false;
    for (const auto& route : routes) {
      if (route.path != path) continue;
      if (route.method == context.request.method()) return std::nullopt;
      path_known = true;
    }
    if (!path_known && path.starts_with("/v1/"))
      return gateway_error(context, Error{Errc::not_found, std::string(kOpenAiPathHint)});
    if (!path_known) return gateway_error(context, Error{Errc::not_found, "unknown path"});
    auto response = gateway_error(context, Error{Errc::method_not_allowed, "method not allowed for this path"});
    for (const auto& route : routes)
      if (route.path == path) response.set(beast_http::field::allow, beast_http::to_string(route.method));
    return response;
  }};
}

Step header_limit_step(std::size_t max_bytes) {
  return SyncStep{[max_bytes](RequestContext& context) -> StepResult {
    std::size_t size = context.request.target().size() + 16;
    for (const auto& field : context.request.base()) size += field.name_string().size() + field.value().size() + 4;
    if (size <= max_bytes) return std::nullopt;
    auto response = http::json_response(
        kStatusHeadersTooLarge,
        openai_error_body(Error{Errc::request_too_large, "request headers are larger than the limit"}, kErrorSource));
    decorate(response.base(), context);
    return response;
  }};
}

Step body_limit_step(std::uint64_t max_bytes) {
  return SyncStep{[max_bytes](RequestContext& context) -> StepResult {
    if (context.request.body().size() <= max_bytes) return std::nullopt;
    return gateway_error(context, Error{Errc::request_too_large, "request body is larger than " +
                                                                        std::to_string(max_bytes) + " bytes"});
  }};
}

Step auth_step(KeyCache& keys, UsageRecorder* usage) {
  return SyncStep{[&keys, usage](RequestContext& context) -> StepResult {
    const auto header = context.request.base().find(beast_http::field::authorization);
    if (header == context.request.base().end())
      return gateway_error(context, Error{Errc::invalid_api_key, "missing API key: send Authorization: Bearer sk_..."});
    const auto token = bearer_token(header->value());
    if (!token || !is_well_formed_api_key(*token))
      return gateway_error(context, Error{Errc::invalid_api_key, "malformed API key"});
    context.masked_key = mask_secret(*token);
    auto found = keys.lookup(hash_api_key(*token));
    if (!found) {
      spdlog::error("{}: key lookup failed: {}", context.request_id, found.error().to_string());
      // Unreachable (PostgreSQL down, the cache may not answer): 503, try again; else a fault.
      const Errc code = found.error().code == Errc::overloaded ? Errc::overloaded : Errc::internal_error;
      return gateway_error(context, Error{code, "the key database is not available"});
    }
    if (!*found) {
      spdlog::info("{}: unknown API key {}", context.request_id, context.masked_key);
      return gateway_error(context, Error{Errc::invalid_api_key, "unknown API key"});
    }
    if ((*found)->revoked()) {
      spdlog::info("{}: revoked API key {} ({})", context.request_id, context.masked_key, (*found)->id);
      return gateway_error(context, Error{Errc::key_revoked, "this API key has been revoked"});
    }
    context.key = std::move(*found);
    if (usage) {
      UsageRow row;
      row.request_id = context.request_id;
      row.key_id = context.key->id;
      row.at_ms = context.received_unix_ms;
      row.path = std::string(http::target_path(context.request));
      row.bytes_in = static_cast<std::int64_t>(context.request.body().size());
      row.status = 500;  // until a response is sent
      context.usage.emplace(*usage, std::move(row));
    }
    return std::nullopt;
  }};
}

Step envelope_step() {
  return SyncStep{[](RequestContext& context) -> StepResult {
    auto envelope = protocol::check_envelope(context.request.body());
    if (!envelope) return gateway_error(context, envelope.error());
    context.envelope = *envelope;
    return std::nullopt;
  }};
}

Step stream_limit_step(StreamSlots& slots) {
  return SyncStep{[&slots](RequestContext& context) -> StepResult {
    if (!context.key) return std::nullopt;
    if (auto slot = slots.try_acquire(context.key->id, context.key->limits.max_streams)) {
      context.stream_slot.emplace(std::move(*slot));
      return std::nullopt;
    }
    auto response = gateway_error(
        context, Error{Errc::rate_limit_exceeded, "too many concurrent streams for this API key (max " +
                                                      std::to_string(context.key->limits.max_streams) + ")"});
    response.set(beast_http::field::retry_after, "1");
    return response;
  }};
}

Step rate_limit_step(RateLimiter& limiter) {
  return AsyncStep{[&limiter](RequestContext& context) -> http::awaitable<StepResult> {
    if (!context.key) co_return std::nullopt;
    // The token reservation's estimate: the request's size as the enclave counts it when its
    // engine gives no count (the sealed request is the plaintext and a 16-byte tag: 4 tokens over).
    const std::size_t sealed = context.envelope ? context.envelope->encrypted_inference_bytes : 0;
    auto decision =
        co_await limiter.acquire(context.key->id, context.key->limits, protocol::estimate_tokens(sealed));
    if (!decision) {
      spdlog::error("{}: rate limiter failed: {}", context.request_id, decision.error().to_string());
      co_return gateway_error(context, Error{Errc::overloaded, "rate limiter unavailable"});
    }
    context.rate = *decision;
    if (decision->allowed) co_return std::nullopt;
    co_return gateway_error(context, Error{Errc::rate_limit_exceeded, "rate limit exceeded for this API key"});
  }};
}

Step attestation_limit_step(AddressRateLimiter& limiter, KeyCache& keys) {
  return SyncStep{[&limiter, &keys](RequestContext& context) -> StepResult {
    if (http::target_path(context.request) != kAttestationPath || !context.client_address) return std::nullopt;
    if (has_valid_api_key(context.request, keys)) return std::nullopt;
    const auto wait = limiter.acquire(*context.client_address, Clock::now());
    if (wait.count() == 0) return std::nullopt;
    auto response = gateway_error(
        context, Error{Errc::rate_limit_exceeded, "too many attestation requests from your address (at most " +
                                                      std::to_string(limiter.per_minute()) +
                                                      " a minute without an API key)"});
    response.set(beast_http::field::retry_after, std::to_string(std::max<std::int64_t>(1, (wait.count() + 999) / 1000)));
    return response;
  }};
}

Step models_key_step(KeyCache& keys) {
  return SyncStep{[check = std::get<SyncStep>(auth_step(keys, nullptr))](RequestContext& context) -> StepResult {
    if (http::target_path(context.request) != kModelsPath) return std::nullopt;
    if (context.request.base().find(beast_http::field::authorization) == context.request.base().end())
      return std::nullopt;
    return check(context);
  }};
}

}  // namespace rvenc::gateway
