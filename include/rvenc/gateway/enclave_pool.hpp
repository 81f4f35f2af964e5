// The enclaves behind a gateway: which keys and models each holds, whether it answers, and how
// many of this gateway's streams it runs (PROTOCOL.md section 7, "Several enclaves").
//
// Design: every enclave has its own check (GatewayHandler runs one loop per enclave, so a hung
// enclave delays no other): GET /healthz every GatewayOptions::health_interval (default
// kDefaultHealthInterval, bounded by kHealthCheckTimeout, so an enclave that stops answering is
// out of service within about 2 s). /healthz never waits for a hardware report; it tells the
// keyId, the protocol versions allowed and nothing secret. An enclave is attested again (GET
// /rvenc/attestation with a fresh random challenge whose binding is checked) when its keyId is
// new or changed, when it comes back after being down, and every kAttestationRefresh: the
// document tells its models, capacity and previous keys. A failed periodic re-attestation of an
// enclave whose /healthz still shows the attested key keeps what was learned (a flood of client
// attestation requests queued at the evidence provider must not take it out of service).
// Routing: by keyId (current or previous key) to the enclave holding it; version 1 (no keyId)
// only when exactly one enclave allows it (or the pool has one enclave, which then decides);
// attestation and other GETs to a healthy enclave chosen for load: the fewest of this gateway's
// streams in flight relative to its capacity, ties at random. Two enclaves reporting one keyId
// are a configuration error: both are logged and kept out of service until one changes key.
// The counters are this gateway's only: the enclave enforces its own --max-streams.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "rvenc/crypto/crypto.hpp"
#include "rvenc/http/client.hpp"
#include "rvenc/http/url.hpp"
#include "rvenc/protocol/attestation.hpp"

namespace rvenc::gateway {

inline constexpr std::chrono::seconds kAttestationRefresh{30};
inline constexpr std::chrono::milliseconds kDefaultHealthInterval{500};
inline constexpr std::chrono::seconds kMinRefreshGap{1};
inline constexpr std::chrono::milliseconds kAttestationTimeout{5'000};
inline constexpr std::chrono::milliseconds kHealthCheckTimeout{1'000};

struct EnclaveState {
  http::Url url;
  bool healthy = false;
  std::optional<crypto::KeyId> key_id;
  std::vector<crypto::KeyId> previous_key_ids;
  std::vector<std::string> models;     // from its attestation document
  std::optional<std::int64_t> capacity;  // its --max-streams; nullopt: unlimited
  std::optional<bool> allows_v1;       // from /healthz "versions"; nullopt: not reported
  std::string provider;
  std::string last_error;  // why it is unhealthy
  std::optional<std::chrono::steady_clock::time_point> attested_at;
  std::size_t in_flight = 0;   // this gateway's requests to it now
  std::uint64_t requests = 0;  // this gateway's requests to it since start
};

class EnclavePool {
 public:
  EnclavePool(std::vector<http::Url> enclaves, http::HttpClient& client);

  // Checks every enclave, one after another (see refresh_enclave).
  http::awaitable<void> refresh();
  // refresh() unless one ran less than kMinRefreshGap ago.
  http::awaitable<void> refresh_if_stale();
  // Checks enclave `index` (< size()): /healthz, then its attestation when due (see Design).
  http::awaitable<void> refresh_enclave(std::size_t index);
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

  // The enclave for a chat request: by keyId (current or previous key), or for version 1
  // (nullopt) the one enclave allowing it. Errors: unknown_key_id (after a refresh),
  // enclave_unavailable (its enclave is down, or none is up), unsupported_version (version 1 with
  // more or fewer than one enclave allowing it).
  http::awaitable<Result<http::Url>> route(std::optional<crypto::KeyId> key_id);
  // A healthy enclave serving `model` (any healthy one for nullopt), chosen for load. Errors:
  // model_not_found, enclave_unavailable (none is up).
  [[nodiscard]] Result<http::Url> choose(const std::optional<std::string>& model) const;
  // Every healthy enclave serving `model` (all healthy ones for nullopt); errors as choose().
  [[nodiscard]] Result<std::vector<http::Url>> choose_all(const std::optional<std::string>& model) const;
  // The models the healthy enclaves serve, sorted, each once.
  [[nodiscard]] std::vector<std::string> models() const;

  // Counts one request to an enclave while it lives (in flight) and in its total.
  class Ticket {
   public:
    Ticket(EnclavePool& pool, http::Url url);
    ~Ticket();
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;

   private:
    EnclavePool& pool_;
    std::string url_;
  };
  [[nodiscard]] Ticket track(const http::Url& url) { return Ticket(*this, url); }

  void mark_unhealthy(const http::Url& url, std::string why);
  // Records what an attestation forwarded for a client says of `url` (answered to `challenge`):
  // a client that re-attests after unknown_key_id is routed at once, without waiting for a
  // refresh. Returns whether the document binds its key to the challenge.
  bool learn_from_attestation(const http::Url& url, std::string_view body, const protocol::Challenge& challenge);

  [[nodiscard]] std::vector<EnclaveState> snapshot() const;
  [[nodiscard]] std::size_t healthy_count() const;

 private:
  struct Health {
    crypto::KeyId key_id{};
    std::optional<bool> allows_v1;
  };
  [[nodiscard]] std::optional<http::Url> find(const crypto::KeyId& key_id) const;
  // What the enclave's GET /healthz reports; the error says why there is nothing.
  http::awaitable<Result<Health>> health_check(const http::Url& url);
  // GET /rvenc/attestation with a fresh challenge, evaluated.
  http::awaitable<EnclaveState> attest(const http::Url& url);
  [[nodiscard]] static EnclaveState evaluate_attestation(const http::Url& url, std::string_view body,
                                                         const protocol::Challenge& challenge);
  // Replaces what is known of next.url (this gateway's counters stay), then applies the
  // duplicate-keyId rule and logs what changed.
  void update(EnclaveState next);
  void mark_duplicate_keys_locked();
  // Healthy enclaves serving `model` (all healthy for nullopt); errors as choose().
  [[nodiscard]] Result<std::vector<const EnclaveState*>> candidates_locked(const std::optional<std::string>& model) const;
  [[nodiscard]] EnclaveState* find_locked(std::string_view url);

  http::HttpClient& client_;
  std::size_t size_;
  mutable std::mutex mutex_;
  std::vector<EnclaveState> enclaves_;
  std::optional<std::chrono::steady_clock::time_point> last_refresh_;
};

}  // namespace rvenc::gateway
