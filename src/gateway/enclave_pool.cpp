#include "rvenc/gateway/enclave_pool.hpp"

#include <algorithm>
#include <random>
#include <set>

#include <boost/json/parse.hpp>
#include <spdlog/spdlog.h>

#include "rvenc/common/hex.hpp"
#include "rvenc/protocol/attestation.hpp"

namespace rvenc::gateway {

EnclavePool::EnclavePool(std::vector<http::Url> enclaves, http::HttpClient& client)
    : client_(client), size_(enclaves.size()) {
  for (auto& url : enclaves) {
    EnclaveState state;
    state.url = std::move(url);
    state.last_error = "not checked yet";
    enclaves_.push_back(std::move(state));
  }
}

namespace {

http::Timeouts timeouts_of(std::chrono::milliseconds limit) {
  http::Timeouts timeouts;
  timeouts.connect = limit;
  timeouts.idle = limit;
  timeouts.total = limit;
  return timeouts;
}

// Every key an enclave holds: current and previous.
std::vector<crypto::KeyId> keys_of(const EnclaveState& e) {
  std::vector<crypto::KeyId> keys = e.previous_key_ids;
  if (e.key_id) keys.push_back(*e.key_id);
  return keys;
}

bool holds(const EnclaveState& e, const crypto::KeyId& key_id) {
  return e.key_id == key_id || std::find(e.previous_key_ids.begin(), e.previous_key_ids.end(), key_id) !=
                                   e.previous_key_ids.end();
}

bool serves(const EnclaveState& e, const std::optional<std::string>& model) {
  return !model || std::find(e.models.begin(), e.models.end(), *model) != e.models.end();
}

// Load relative to capacity; an unlimited enclave counts as a very large one.
double load_of(const EnclaveState& e) {
  constexpr double kUnlimited = 1u << 20;
  const double capacity = e.capacity ? static_cast<double>(*e.capacity) : kUnlimited;
  return static_cast<double>(e.in_flight) / capacity;
}

// A tie-breaker between replicas (no secret depends on it).
std::size_t pick_below(std::size_t bound) {
  thread_local std::minstd_rand generator{std::random_device{}()};
  return std::uniform_int_distribution<std::size_t>(0, bound - 1)(generator);
}

}  // namespace

// --- checks ------------------------------------------------------------------------------------

http::awaitable<void> EnclavePool::refresh() {
  {
    std::lock_guard lock(mutex_);
    last_refresh_ = std::chrono::steady_clock::now();
  }
  for (std::size_t i = 0; i < size_; ++i) co_await refresh_enclave(i);
}

http::awaitable<void> EnclavePool::refresh_if_stale() {
  {
    std::lock_guard lock(mutex_);
    if (last_refresh_ && std::chrono::steady_clock::now() - *last_refresh_ < kMinRefreshGap) co_return;
  }
  co_await refresh();
}

http::awaitable<void> EnclavePool::refresh_enclave(std::size_t index) {
  EnclaveState known;
  {
    std::lock_guard lock(mutex_);
    known = enclaves_.at(index);
  }
  auto health = co_await health_check(known.url);
  if (!health) {
    mark_unhealthy(known.url, health.error().message);
    co_return;
  }
  const auto now = std::chrono::steady_clock::now();
  const bool same_key = known.key_id == health->key_id;
  const bool attestation_due = !known.healthy || !same_key || !known.attested_at ||
                               now - *known.attested_at >= kAttestationRefresh;
  EnclaveState next = known;
  if (attestation_due) {
    auto attested = co_await attest(known.url);
    if (attested.healthy) {
      next = std::move(attested);
    } else if (!known.healthy || !same_key) {
      next.healthy = false;
      next.last_error = attested.last_error;
      update(std::move(next));
      co_return;
    } else {
      spdlog::warn("enclave {}: periodic attestation failed ({}); its key is unchanged, it stays in service",
                   known.url.origin(), attested.last_error);
    }
  }
  // A key rotation between the two answers: the attestation is the newer one when it lists the
  // key /healthz showed as a previous key.
  const bool rotated_meanwhile =
      attestation_due && std::find(next.previous_key_ids.begin(), next.previous_key_ids.end(), health->key_id) !=
                             next.previous_key_ids.end();
  if (next.key_id != health->key_id && !rotated_meanwhile) {  // the key changed: the next check sees it
    next.healthy = false;
    next.last_error = "its keyId changed while it was being checked";
  } else {
    next.healthy = true;
    next.last_error.clear();
  }
  next.allows_v1 = health->allows_v1;
  update(std::move(next));
}

http::awaitable<Result<EnclavePool::Health>> EnclavePool::health_check(const http::Url& url) {
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
  Health health;
  if (auto ok = from_hex_into(key_id->get_string(), health.key_id, "keyId"); !ok) co_return std::unexpected(ok.error());
  if (const auto* versions = object->if_contains("versions"); versions && versions->is_array()) {
    const auto& list = versions->get_array();
    health.allows_v1 = std::any_of(list.begin(), list.end(), [](const auto& v) { return v.is_int64() && v.get_int64() == 1; });
  }
  co_return health;
}

http::awaitable<EnclaveState> EnclavePool::attest(const http::Url& url) {
  const auto challenge = crypto::random_array<protocol::kChallengeBytes>();
  const std::string target = url.join(std::string("/rvenc/attestation?challenge=") + to_hex(challenge));
  auto response =
      co_await client_.request(url, http::make_request(http::Verb::get, target), timeouts_of(kAttestationTimeout));
  EnclaveState next;
  next.url = url;
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
  EnclaveState next;
  next.url = url;
  if (auto doc = protocol::parse_attestation(body); !doc) {
    next.last_error = "bad attestation document: " + doc.error().message;
  } else if (doc->key_id != crypto::key_id(doc->public_key) ||
             doc->report_data != protocol::expected_report_data(*doc, challenge)) {
    // Not our trust decision (clients verify evidence), but a document that does not bind the
    // key to the challenge is not an enclave we route to.
    next.last_error = "attestation does not bind its key to the challenge";
  } else {
    next.healthy = true;
    next.key_id = doc->key_id;
    next.provider = doc->provider;
    next.models = std::move(doc->models);
    next.capacity = doc->capacity;
    for (const auto& previous : doc->previous_keys) next.previous_key_ids.push_back(previous.key_id);
    next.attested_at = std::chrono::steady_clock::now();
  }
  return next;
}

bool EnclavePool::learn_from_attestation(const http::Url& url, std::string_view body,
                                         const protocol::Challenge& challenge) {
  auto next = evaluate_attestation(url, body, challenge);
  if (!next.healthy) return false;
  {
    std::lock_guard lock(mutex_);
    if (const auto* known = find_locked(url.to_string())) next.allows_v1 = known->allows_v1;
  }
  update(std::move(next));
  return true;
}

// --- state -------------------------------------------------------------------------------------

EnclaveState* EnclavePool::find_locked(std::string_view url) {
  for (auto& e : enclaves_)
    if (e.url.to_string() == url) return &e;
  return nullptr;
}

void EnclavePool::update(EnclaveState next) {
  std::lock_guard lock(mutex_);
  std::vector<EnclaveState> before = enclaves_;
  auto* e = find_locked(next.url.to_string());
  if (e == nullptr) return;
  // Keep the last known keys of a down enclave: its requests get enclave_unavailable, not unknown_key_id.
  if (!next.healthy && !next.key_id) {
    next.key_id = e->key_id;
    next.previous_key_ids = e->previous_key_ids;
    next.models = e->models;
    next.capacity = e->capacity;
  }
  next.in_flight = e->in_flight;
  next.requests = e->requests;
  *e = std::move(next);
  mark_duplicate_keys_locked();
  for (std::size_t i = 0; i < enclaves_.size(); ++i) {
    const auto& now = enclaves_[i];
    const auto& was = before[i];
    if (now.healthy == was.healthy && now.key_id == was.key_id && now.last_error == was.last_error) continue;
    if (now.healthy)
      spdlog::info("enclave {} up, keyId {} ({}), {} model(s)", now.url.origin(), to_hex(*now.key_id), now.provider,
                   now.models.size());
    else
      spdlog::warn("enclave {} down: {}", now.url.origin(), now.last_error);
  }
}

void EnclavePool::mark_duplicate_keys_locked() {
  for (std::size_t i = 0; i < enclaves_.size(); ++i) {
    for (std::size_t j = i + 1; j < enclaves_.size(); ++j) {
      for (const auto& key : keys_of(enclaves_[i])) {
        if (!holds(enclaves_[j], key)) continue;
        const std::string why = "keyId " + to_hex(key) + " is reported by both " + enclaves_[i].url.origin() + " and " +
                                enclaves_[j].url.origin() +
                                ": a configuration error (every enclave needs its own key file)";
        if (enclaves_[i].last_error != why) spdlog::error("{}", why);
        for (auto* e : {&enclaves_[i], &enclaves_[j]}) {
          e->healthy = false;
          e->last_error = why;
        }
        break;
      }
    }
  }
}

void EnclavePool::mark_unhealthy(const http::Url& url, std::string why) {
  std::lock_guard lock(mutex_);
  auto* e = find_locked(url.to_string());
  if (e == nullptr) return;
  if (e->healthy) spdlog::warn("enclave {} marked down: {}", url.origin(), why);
  e->healthy = false;
  e->last_error = std::move(why);
}

EnclavePool::Ticket::Ticket(EnclavePool& pool, http::Url url) : pool_(pool), url_(url.to_string()) {
  std::lock_guard lock(pool_.mutex_);
  if (auto* e = pool_.find_locked(url_)) {
    ++e->in_flight;
    ++e->requests;
  }
}

EnclavePool::Ticket::~Ticket() {
  std::lock_guard lock(pool_.mutex_);
  if (auto* e = pool_.find_locked(url_)) --e->in_flight;
}

std::vector<EnclaveState> EnclavePool::snapshot() const {
  std::lock_guard lock(mutex_);
  return enclaves_;
}

std::size_t EnclavePool::healthy_count() const {
  std::lock_guard lock(mutex_);
  return static_cast<std::size_t>(std::count_if(enclaves_.begin(), enclaves_.end(), [](const auto& e) { return e.healthy; }));
}

// --- choice ------------------------------------------------------------------------------------

std::optional<http::Url> EnclavePool::find(const crypto::KeyId& key_id) const {
  std::lock_guard lock(mutex_);
  for (const auto& e : enclaves_)
    if (e.healthy && holds(e, key_id)) return e.url;
  return std::nullopt;
}

http::awaitable<Result<http::Url>> EnclavePool::route(std::optional<crypto::KeyId> key_id) {
  if (!key_id) {
    if (healthy_count() == 0) co_await refresh_if_stale();
    std::lock_guard lock(mutex_);
    std::vector<const EnclaveState*> allowing;
    for (const auto& e : enclaves_)
      if (e.healthy && e.allows_v1.value_or(false)) allowing.push_back(&e);
    if (allowing.size() == 1) co_return allowing.front()->url;
    // One enclave only: it answers for itself (it may refuse version 1).
    if (enclaves_.size() == 1 && enclaves_.front().healthy) co_return enclaves_.front().url;
    if (std::none_of(enclaves_.begin(), enclaves_.end(), [](const auto& e) { return e.healthy; }))
      co_return fail(Errc::enclave_unavailable, "no enclave is available");
    co_return fail(Errc::unsupported_version,
                   "protocol version 1 (no keyId) is served only when exactly one enclave allows it, and " +
                       std::to_string(allowing.size()) + " do here; use version 3");
  }
  if (auto url = find(*key_id)) co_return *url;
  co_await refresh_if_stale();
  if (auto url = find(*key_id)) co_return *url;
  std::lock_guard lock(mutex_);
  for (const auto& e : enclaves_)
    if (holds(e, *key_id))
      co_return fail(Errc::enclave_unavailable,
                     "the enclave holding this keyId is not available; fetch the attestation again");
  co_return fail(Errc::unknown_key_id, "no enclave holds this keyId; fetch the attestation again");
}

Result<std::vector<const EnclaveState*>> EnclavePool::candidates_locked(const std::optional<std::string>& model) const {
  std::vector<const EnclaveState*> found;
  bool any_healthy = false;
  for (const auto& e : enclaves_) {
    any_healthy = any_healthy || e.healthy;
    if (e.healthy && serves(e, model)) found.push_back(&e);
  }
  if (!found.empty()) return found;
  if (!any_healthy) return fail(Errc::enclave_unavailable, "no enclave is available");
  // The name is the caller's own (not secret, and it came in the clear); only a length is quoted.
  return fail(Errc::model_not_found, "no available enclave serves the requested model (" +
                                         std::to_string(model ? model->size() : 0) +
                                         " bytes); GET /rvenc/models lists the models served");
}

Result<http::Url> EnclavePool::choose(const std::optional<std::string>& model) const {
  std::lock_guard lock(mutex_);
  auto candidates = candidates_locked(model);
  if (!candidates) return std::unexpected(candidates.error());
  double least = load_of(*candidates->front());
  for (const auto* e : *candidates) least = std::min(least, load_of(*e));
  std::vector<const EnclaveState*> ties;
  for (const auto* e : *candidates)
    if (load_of(*e) == least) ties.push_back(e);
  return ties[pick_below(ties.size())]->url;
}

Result<std::vector<http::Url>> EnclavePool::choose_all(const std::optional<std::string>& model) const {
  std::lock_guard lock(mutex_);
  auto candidates = candidates_locked(model);
  if (!candidates) return std::unexpected(candidates.error());
  std::vector<http::Url> urls;
  for (const auto* e : *candidates) urls.push_back(e->url);
  return urls;
}

std::vector<std::string> EnclavePool::models() const {
  std::lock_guard lock(mutex_);
  std::set<std::string> names;
  for (const auto& e : enclaves_)
    if (e.healthy) names.insert(e.models.begin(), e.models.end());
  return {names.begin(), names.end()};
}

}  // namespace rvenc::gateway
