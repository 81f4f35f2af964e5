// The proxy's SDK clients: one per API key, kept in memory (bounded count, idle ones dropped)
// together with that key's data-encryption keys per model (one per replica serving the model:
// attestation `&model=&all=1`, requests spread by the SDK), which are reused across requests and
// replaced after DekPolicy's request count or age, or near an enclave key's notAfter. A key
// change or failure of an enclave is handled by the SDK (re-attest, one re-send); the keys it
// then uses replace the model's set here and in the store. Keys stored by older releases (for
// any model) are used for a model until the model's first rotation.
// New keys that cannot be made (attestation fails, gateway unreachable) fail closed: the old
// keys are dropped (from the store too) and every request of that API key gets the error until
// an attestation succeeds; stored keys verified under other trust settings are dropped at start.
//
// Design: entries are indexed by the SHA-256 of the API key; the key itself lives only inside its
// SDK client. get() is synchronous and cheap; prepare_keys() is the one place that talks to the
// gateway (attestation + encapsulation). Entries are used from the proxy's single io thread; the
// map itself is guarded by a mutex so size()/flush() may be called from anywhere.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "rvenc/client/client.hpp"
#include "rvenc/common/clock.hpp"
#include "rvenc/common/error.hpp"
#include "rvenc/http/types.hpp"
#include "rvenc/proxy/dek_store.hpp"

namespace rvenc::proxy {

struct CacheOptions {
  static constexpr std::size_t kDefaultMaxClients = 256;
  static constexpr std::chrono::seconds kDefaultIdleTimeout{900};

  std::size_t max_clients = kDefaultMaxClients;            // least recently used dropped beyond
  std::chrono::seconds idle_timeout = kDefaultIdleTimeout;  // unused this long -> dropped
  DekPolicy dek;
};

// One model's keys of an API key: one Dek per replica.
struct ModelDeks {
  std::vector<Dek> deks;  // empty until made or loaded
  // True once `deks` are in the store; new keys are stored only after a request with them
  // succeeded, so a wrong API key never gets an entry.
  bool stored = false;
  // Set while one request makes the keys; the others wait on `keys_ready`, which lives only
  // while keys are being made (a timer must not outlive its io_context).
  bool generating = false;
  std::optional<Error> generate_error;
  std::shared_ptr<boost::asio::steady_timer> keys_ready;
};

// One API key's SDK client and keys. Shared with the requests using it, so dropping it from the
// cache never disturbs a request in flight.
struct CachedClient {
  CachedClient(std::string key_digest, client::Client sdk_client)
      : digest(std::move(key_digest)), client(std::move(sdk_client)) {}

  const std::string digest;  // hex SHA-256 of the API key
  client::Client client;
  // Keys per model; "" holds keys of older releases' stores, used for any model without its own.
  std::map<std::string, ModelDeks, std::less<>> models;
  std::int64_t last_used = 0;
  // When the gateway last accepted this key for GET /rvenc/models (epoch seconds; 0: never).
  std::int64_t models_checked_at = 0;

  // The name of the set requests for `model` use: its own, or "" while only that has keys.
  [[nodiscard]] std::string set_for(std::string_view model) const;
  // The first Dek requests for `model` would use (nullopt when none).
  [[nodiscard]] std::optional<Dek> dek_of(std::string_view model) const;
};

class ClientCache {
 public:
  // How often get() sweeps idle entries.
  static constexpr std::int64_t kSweepIntervalSeconds = 30;

  // `base` holds everything but the API key and keys (gateway URL, policy, protocol version).
  // `store` (may be null) must outlive the cache; its keys not verified under base's attestation
  // policy (trust_digest) or near their notAfter are dropped now.
  ClientCache(CacheOptions options, client::ClientOptions base, DekStore* store);

  // The client of `api_key` (created on first use, with the keys the store holds for it) and
  // marks it used at `now` (epoch seconds). invalid_api_key when the SDK refuses the key's form.
  [[nodiscard]] Result<std::shared_ptr<CachedClient>> get(const std::string& api_key, std::int64_t now);

  // Makes sure `entry` has keys for `model` the policy accepts (first keys, or a rotation once
  // they are used up, too old or near their notAfter) and counts one request on them. Requests
  // arriving while keys are being made wait for the result. A failed rotation drops the old keys
  // (entry and store) and fails: attestation_failed says so in its message.
  [[nodiscard]] http::awaitable<Status> prepare_keys(std::shared_ptr<CachedClient> entry, std::string model,
                                                     std::int64_t now);

  // A request for `model` with the entry's keys succeeded: the gateway accepted the API key, so
  // the keys go to the store (once per new keys). Keys the SDK replaced meanwhile (an enclave's
  // key changed, a replica went away) replace the entry's.
  void confirm(CachedClient& entry, std::string_view model);
  // Drops the entry (the gateway refused its API key): a wrong key does not keep a client.
  void forget(const CachedClient& entry);

  // Drops entries unused for idle_timeout at `now`; returns how many.
  std::size_t evict_idle(std::int64_t now);
  [[nodiscard]] std::size_t size() const;
  [[nodiscard]] bool contains(const std::string& api_key) const;
  // Writes the request counts to the store (on shutdown).
  [[nodiscard]] Status flush();

  [[nodiscard]] const CacheOptions& options() const noexcept { return options_; }

 private:
  void evict_locked(std::int64_t now);
  // After keys could not be made: drops the entry's keys of `set` from it and from the store.
  void drop_keys(CachedClient& entry, const std::string& set);
  // Writes the request counts of `set` to the store's memory.
  void note_requests(const CachedClient& entry, const std::string& set);
  // The error requests get when keys cannot be made (attestation_failed says nothing is sent).
  [[nodiscard]] static Error keys_failure(const Error& error);

  CacheOptions options_;
  client::ClientOptions base_;
  std::string trust_;  // trust_digest(base_.attestation)
  DekStore* store_;
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<CachedClient>, std::less<>> entries_;
  std::int64_t last_sweep_ = 0;
};

// The cache and the store use rvenc::unix_now (common/clock.hpp).
using rvenc::unix_now;

}  // namespace rvenc::proxy
