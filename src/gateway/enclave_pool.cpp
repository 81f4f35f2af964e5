#include "rvenc/gateway/enclave_pool.hpp"

#include <boost/json/parse.hpp>
#include <spdlog/spdlog.h>

#include "rvenc/common/hex.hpp"
#include "rvenc/protocol/attestation.hpp"

namespace rvenc::gateway {

EnclavePool::EnclavePool(std::vector<http::Url> enclaves, http::Client& client) : client_(client) {
  for (auto& url : enclaves) enclaves_.push_back(EnclaveState{std::move(url), false, std::nullopt, {}, "not checked yet"});
}

namespace {

http::Timeouts timeouts_of(std::chrono::milliseconds limit) {
  http::Timeouts timeouts;
  timeouts.connect = limit;
  timeouts.idle = limit;
  timeouts.total = limit;
  return timeouts;
}

}  // namespace

http::awaitable<void> EnclavePool::refresh() {
  std::vector<EnclaveState> known;
  {
    std::lock_guard lock(mutex_);
    last_refresh_ = std::chrono::steady_clock::now();
    known = enclaves_;
  }
  for (auto& state : known) {
    if (state.key_id) {
      auto key_id = co_await health_key_id(state.url);
      if (!key_id) {
        update(EnclaveState{state.url, false, std::nullopt, {}, key_id.error().message});
        continue;
      }
      if (*key_id == *state.key_id) {  // the key attested before: no new hardware report needed
        state.healthy = true;
        state.last_error.clear();
        update(std::move(state));
        continue;
      }
    }
    update(co_await attest(state.url));
  }
}

http::awaitable<Result<crypto::KeyId>> EnclavePool::health_key_id(const http::Url& url) {
  auto response = co_await client_.request(url, http::make_request(http::Verb::get, url.join("/healthz")),
                                           timeouts_of(kHealthCheckTimeout));
  if (!response) co_return std::unexpected(response.error());
  if (response->result_int() != 200)
    co_return fail(Errc::upstream_error, "health check answered HTTP " + std::to_string(response->result_int()));
  boost::system::error_code ec;
  const auto body = boost::json::parse(response->body(), ec);
  const auto* object = ec ? nullptr : body.if_object();
  const auto* key_id = object ? object->if_contains("keyId") : nullptr;
  if (!key_id || !key_id->is_string()) co_return fail(Errc::upstream_error, "health check answer without a keyId");
  co_return from_hex_exact<crypto::kKeyIdBytes>(key_id->get_string(), "keyId");
}

http::awaitable<EnclaveState> EnclavePool::attest(const http::Url& url) {
  const auto challenge = crypto::random_array<protocol::kChallengeBytes>();
  const std::string target = url.join(std::string("/rvenc/attestation?challenge=") + to_hex(challenge));
  auto response =
      co_await client_.request(url, http::make_request(http::Verb::get, target), timeouts_of(kAttestationTimeout));
  EnclaveState next{url, false, std::nullopt, {}, {}};
  if (!response) {
    next.last_error = response.error().message;
  } else if (response->result_int() != 200) {
    next.last_error = "attestation answered HTTP " + std::to_string(response->result_int());
  } else {
    next = evaluate_attestation(url, response->body(), challenge);
  }
  co_return next;
}

EnclaveState EnclavePool::evaluate_attestation(const http::Url& url, std::string_view body,
                                               const protocol::Challenge& challenge) {
  EnclaveState next{url, false, std::nullopt, {}, {}};
  if (auto doc = protocol::parse_attestation(body); !doc) {
    next.last_error = "bad attestation document: " + doc.error().message;
  } else if (doc->key_id != crypto::key_id(doc->public_key) ||
             doc->report_data != protocol::report_data(doc->public_key, challenge)) {
    // Not our trust decision (clients verify evidence), but a document that does not bind the
    // key to the challenge is not an enclave we route to.
    next.last_error = "attestation does not bind its key to the challenge";
  } else {
    next.healthy = true;
    next.key_id = doc->key_id;
    next.provider = doc->provider;
  }
  return next;
}

void EnclavePool::learn_from_attestation(const http::Url& url, std::string_view body,
                                         const protocol::Challenge& challenge) {
  auto next = evaluate_attestation(url, body, challenge);
  if (next.healthy) update(std::move(next));
}

void EnclavePool::update(EnclaveState next) {
  std::lock_guard lock(mutex_);
  for (auto& e : enclaves_) {
    if (e.url.to_string() != next.url.to_string()) continue;
    if (e.healthy != next.healthy || e.key_id != next.key_id) {
      if (next.healthy)
        spdlog::info("enclave {} up, keyId {} ({})", next.url.origin(), to_hex(*next.key_id), next.provider);
      else
        spdlog::warn("enclave {} down: {}", next.url.origin(), next.last_error);
    }
    // Keep the last known keyId of a down enclave: its requests get upstream_error, not unknown_key_id.
    if (!next.healthy) next.key_id = e.key_id;
    e = next;
  }
}

http::awaitable<void> EnclavePool::refresh_if_stale() {
  {
    std::lock_guard lock(mutex_);
    if (last_refresh_ && std::chrono::steady_clock::now() - *last_refresh_ < kMinRefreshGap) co_return;
  }
  co_await refresh();
}

std::optional<http::Url> EnclavePool::find(const crypto::KeyId& key_id) const {
  std::lock_guard lock(mutex_);
  for (const auto& e : enclaves_)
    if (e.healthy && e.key_id == key_id) return e.url;
  return std::nullopt;
}

http::awaitable<Result<http::Url>> EnclavePool::route(std::optional<crypto::KeyId> key_id) {
  if (!key_id) {
    if (healthy_count() == 0) co_await refresh_if_stale();
    if (healthy_count() == 0) co_return fail(Errc::upstream_error, "no enclave is available");
    co_return default_enclave();
  }
  if (auto url = find(*key_id)) co_return *url;
  co_await refresh_if_stale();
  if (auto url = find(*key_id)) co_return *url;
  std::lock_guard lock(mutex_);
  for (const auto& e : enclaves_)
    if (e.key_id == *key_id) co_return fail(Errc::upstream_error, "the enclave holding this keyId is not available");
  co_return fail(Errc::unknown_key_id, "no enclave holds this keyId; fetch the attestation again");
}

http::Url EnclavePool::default_enclave() const {
  std::lock_guard lock(mutex_);
  for (const auto& e : enclaves_)
    if (e.healthy) return e.url;
  return enclaves_.front().url;
}

void EnclavePool::mark_unhealthy(const http::Url& url, std::string why) {
  std::lock_guard lock(mutex_);
  for (auto& e : enclaves_) {
    if (e.url.to_string() != url.to_string() || !e.healthy) continue;
    spdlog::warn("enclave {} marked down: {}", url.origin(), why);
    e.healthy = false;
    e.last_error = std::move(why);
  }
}

std::vector<EnclaveState> EnclavePool::snapshot() const {
  std::lock_guard lock(mutex_);
  return enclaves_;
}

std::size_t EnclavePool::healthy_count() const {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (const auto& e : enclaves_) n += e.healthy ? 1 : 0;
  return n;
}

}  // namespace rvenc::gateway
