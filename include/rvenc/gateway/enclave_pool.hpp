// The enclaves behind a gateway and which X-Wing keyId each holds.
//
// Design: each enclave's keyId is learned from its GET /rvenc/attestation (with a fresh random
// challenge whose binding is checked). Health is checked every GatewayOptions::health_interval
// and when a request names an unknown keyId (at most once per kMinRefreshGap, so unknown keyIds
// cannot make the gateway flood the enclaves) with the enclave's GET /healthz, which never waits
// for a hardware report: only an enclave whose keyId is unknown or changed is attested again.
// So a flood of client attestation requests queued at the enclave's evidence provider cannot
// make the gateway's own check time out and take the enclave out of service for everyone.
// An enclave that fails to answer is unhealthy and skipped until a check succeeds. v2 requests go to the enclave holding their keyId, v1 (and GETs) to the
// first healthy enclave in --enclave order.
#pragma once

#include <chrono>
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
inline constexpr std::chrono::seconds kMinRefreshGap{1};
inline constexpr std::chrono::milliseconds kAttestationTimeout{5'000};
inline constexpr std::chrono::milliseconds kHealthCheckTimeout{5'000};

struct EnclaveState {
  http::Url url;
  bool healthy = false;
  std::optional<crypto::KeyId> key_id;
  std::string provider;
  std::string last_error;  // why it is unhealthy
};

class EnclavePool {
 public:
  EnclavePool(std::vector<http::Url> enclaves, http::Client& client);

  // Checks every enclave (one after another, each bounded by kHealthCheckTimeout, plus
  // kAttestationTimeout when it must be attested) and updates health and keyIds.
  http::awaitable<void> refresh();
  // refresh() unless one ran less than kMinRefreshGap ago.
  http::awaitable<void> refresh_if_stale();

  // The enclave for a request: by keyId (v2) or the default one (v1, nullopt). Errors:
  // unknown_key_id (after a refresh), upstream_error (no healthy enclave).
  http::awaitable<Result<http::Url>> route(std::optional<crypto::KeyId> key_id);
  // The first healthy enclave, else the first one (it may have come back).
  [[nodiscard]] http::Url default_enclave() const;
  void mark_unhealthy(const http::Url& url, std::string why);
  // Records what an attestation forwarded for a client says of `url` (answered to `challenge`):
  // a client that re-attests after unknown_key_id is routed at once, without waiting for a refresh.
  void learn_from_attestation(const http::Url& url, std::string_view body, const protocol::Challenge& challenge);

  [[nodiscard]] std::vector<EnclaveState> snapshot() const;
  [[nodiscard]] std::size_t healthy_count() const;

 private:
  [[nodiscard]] std::optional<http::Url> find(const crypto::KeyId& key_id) const;
  // The keyId the enclave's GET /healthz reports; the error says why there is none.
  http::awaitable<Result<crypto::KeyId>> health_key_id(const http::Url& url);
  // GET /rvenc/attestation with a fresh challenge, evaluated.
  http::awaitable<EnclaveState> attest(const http::Url& url);
  [[nodiscard]] static EnclaveState evaluate_attestation(const http::Url& url, std::string_view body,
                                                         const protocol::Challenge& challenge);
  void update(EnclaveState next);

  http::Client& client_;
  mutable std::mutex mutex_;
  std::vector<EnclaveState> enclaves_;
  std::optional<std::chrono::steady_clock::time_point> last_refresh_;
};

}  // namespace rvenc::gateway
