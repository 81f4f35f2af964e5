// The gateway's request checks as small ordered steps: each either answers the request (returns
// a Response) or lets the next step run (returns nullopt). The chain for
// POST /rvenc/chat/completions is: allow-list, header size, body size, API key, envelope,
// concurrent streams, rate limit; then the request is forwarded. GETs pass the allow-list, the
// header size and, for GET /rvenc/attestation without a valid API key, a per-address limit. Steps record what they learn
// (the key, the envelope, the rate decision, the stream slot, the usage record) in the context.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <variant>

#include "rvenc/gateway/key_cache.hpp"
#include "rvenc/gateway/rate_limiter.hpp"
#include "rvenc/gateway/usage.hpp"
#include "rvenc/http/types.hpp"
#include "rvenc/protocol/envelope.hpp"

namespace rvenc::gateway {

// Paths the gateway serves; everything else is 404 (or 405 for another method).
inline constexpr std::string_view kChatPath = "/rvenc/chat/completions";
inline constexpr std::string_view kAttestationPath = "/rvenc/attestation";
inline constexpr std::string_view kModelsPath = "/rvenc/models";
inline constexpr std::string_view kHealthPath = "/healthz";
inline constexpr std::string_view kHealthAliasPath = "/health";  // the same answer as /healthz
inline constexpr std::string_view kMetricsPath = "/metrics";
// Errors the gateway raises itself carry "source": "gateway".
inline constexpr std::string_view kErrorSource = "gateway";

// Concurrent streams per key. A Slot releases its stream when destroyed.
class StreamSlots {
 public:
  class Slot {
   public:
    Slot(StreamSlots* owner, std::string key_id) : owner_(owner), key_id_(std::move(key_id)) {}
    Slot(Slot&& other) noexcept : owner_(std::exchange(other.owner_, nullptr)), key_id_(std::move(other.key_id_)) {}
    Slot& operator=(Slot&&) = delete;
    ~Slot();

   private:
    StreamSlots* owner_;
    std::string key_id_;
  };

  // A slot when the key has fewer than `max_streams` active (0 = unlimited), else nullopt.
  [[nodiscard]] std::optional<Slot> try_acquire(const std::string& key_id, std::int64_t max_streams);
  [[nodiscard]] std::int64_t active(const std::string& key_id) const;

 private:
  void release(const std::string& key_id);
  mutable std::mutex mutex_;
  std::map<std::string, std::int64_t> active_;
};

struct RequestContext {
  explicit RequestContext(http::Request& r);

  http::Request& request;
  Clock::time_point received;
  std::int64_t received_unix_ms = 0;
  // "req_" + 12 hex digits of received_unix_ms + 12 random ones; sent to the enclave and back.
  std::string request_id;
  // Who sent the request (http::ResponseWriter::client_address()); nullopt without a socket.
  std::optional<http::IpAddress> client_address;
  std::shared_ptr<const ApiKeyRecord> key;  // set by auth_step
  std::string masked_key;  // "…wxyz", for logs
  std::optional<protocol::EnvelopeSummary> envelope;
  std::optional<RateDecision> rate;
  std::optional<StreamSlots::Slot> stream_slot;
  std::optional<UsageRecord> usage;  // written when the context is destroyed, or at its submit()
  unsigned status = 0;               // of the answer sent (for the access log); 0 until then
};

// A step answers the request (a response) or lets it through (nullopt). Most decide at once and
// are plain functions (no coroutine frame per request); one that must wait, like a rate limiter
// kept in Redis, is a coroutine.
using StepResult = std::optional<http::Response>;
using SyncStep = std::function<StepResult(RequestContext&)>;
using AsyncStep = std::function<http::awaitable<StepResult>(RequestContext&)>;
using Step = std::variant<SyncStep, AsyncStep>;

// Runs the steps in order until one answers; nullopt when all let the request through.
http::awaitable<StepResult> run_steps(std::span<const Step> steps, RequestContext& context);

// Adds X-Request-Id and the x-ratelimit-* headers (when a rate decision was made).
void decorate(http::Fields& fields, const RequestContext& context);
// The gateway's own error response for the context's request, decorated.
[[nodiscard]] http::Response gateway_error(const RequestContext& context, const Error& error);

// A path and method the gateway serves (its one route table is in gateway.cpp).
struct RouteKey {
  std::string_view path;
  http::Verb method;
};
// Method and path allow-list over `routes`: 404 not_found for unknown paths (with a hint for an
// OpenAI client's /v1/... path), 405 method_not_allowed with Allow otherwise.
[[nodiscard]] Step allow_list_step(std::vector<RouteKey> routes);
// Request line plus header fields larger than `max_bytes` -> 431 (the server enforces it on the
// wire too; this keeps the rule in the chain).
[[nodiscard]] Step header_limit_step(std::size_t max_bytes);
// Body larger than `max_bytes` -> 413 request_too_large.
[[nodiscard]] Step body_limit_step(std::uint64_t max_bytes);
// Authorization: Bearer <key>: missing/malformed/unknown -> 401 invalid_api_key, revoked ->
// 403 key_revoked. Sets context.key and starts context.usage (when `usage` is given).
[[nodiscard]] Step auth_step(KeyCache& keys, UsageRecorder* usage);
// The body must be a valid envelope by protocol::parse_envelope -> else 400 with its code.
[[nodiscard]] Step envelope_step();
// Per-key concurrent streams (max_streams) -> 429 rate_limit_exceeded.
[[nodiscard]] Step stream_limit_step(StreamSlots& slots);
// Requests/tokens per minute -> 429 rate_limit_exceeded with Retry-After.
[[nodiscard]] Step rate_limit_step(RateLimiter& limiter);
// GET /rvenc/attestation without a valid (known, unrevoked) API key: `limiter` per client address
// -> 429 rate_limit_exceeded with Retry-After. Other paths, requests with a valid key and requests
// without a known client address pass.
[[nodiscard]] Step attestation_limit_step(AddressRateLimiter& limiter, KeyCache& keys);
// GET /rvenc/models with an Authorization header: the key is checked like auth_step does (401/403),
// so "is my key right?" gets a true answer; no usage row and no rate-limit charge. Without the
// header the list stays public (attestation and discovery need no key). Other paths pass.
[[nodiscard]] Step models_key_step(KeyCache& keys);

}  // namespace rvenc::gateway
