// The enclaves behind a gateway and which X-Wing keyId each holds.
//
// Design: each enclave's keyId is learned from its GET /rvenc/attestation (with a fresh random
// challenge whose binding is checked), refreshed every kAttestationRefresh and when a request
// names an unknown keyId (at most once per kMinRefreshGap, so unknown keyIds cannot make the
// gateway flood the enclaves). An enclave that fails to answer is unhealthy and skipped until a
// refresh succeeds. v2 requests go to the enclave holding their keyId, v1 (and GETs) to the
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

  // Fetches every enclave's attestation (concurrently from the caller's view: one after another,
  // each bounded by kAttestationTimeout) and updates health and keyIds.
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
  [[nodiscard]] static EnclaveState evaluate_attestation(const http::Url& url, std::string_view body,
                                                         const protocol::Challenge& challenge);
  void update(EnclaveState next);

  http::Client& client_;
  mutable std::mutex mutex_;
  std::vector<EnclaveState> enclaves_;
  std::optional<std::chrono::steady_clock::time_point> last_refresh_;
};

}  // namespace rvenc::gateway
