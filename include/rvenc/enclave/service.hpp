// The enclave's HTTP handlers (PROTOCOL.md sections 1-4), independent of sockets:
//   GET  /rvenc/attestation?challenge=<hex 32>   attestation document
//   GET  /rvenc/models                           OpenAI model list
//   GET  /healthz                                liveness, keyId, versions, inFlight, capacity,
//                                                keyRotations
// Keys (KeyRing): every request first lets the ring rotate and retire what is due; a chat request
// is decrypted with the current or a previous key, by its keyId.
//   POST /rvenc/chat/completions                 decrypt, check, route, stream sealed events
// Every error before the first event is a plain OpenAI error response; after it, an encrypted
// error event followed by done. A successful or failed stream ends with the plain usage event.
// A model this enclave does not serve is 400 invalid_inference (the decrypted request names a
// bad "model"); the message lists the served models but never echoes the requested name, which
// arrived encrypted. PROTOCOL.md has no dedicated code for it. Attestation evidence (a hardware
// report, serialized by the platform) is asked for on one thread; at most
// ServiceOptions::max_attestation_queue requests wait for it, beyond that 503 overloaded at once.
// Capacity (PROTOCOL.md section 7): at most ServiceOptions::max_streams chat streams run at once;
// one more is refused with 503 enclave_busy and Retry-After before it is decrypted (so before
// init, and without taking a replay-cache slot), whichever gateway sent it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/thread_pool.hpp>

#include "rvenc/crypto/crypto.hpp"
#include "rvenc/enclave/attestation.hpp"
#include "rvenc/enclave/engine.hpp"
#include "rvenc/enclave/key.hpp"
#include "rvenc/enclave/key_ring.hpp"
#include "rvenc/enclave/replay.hpp"
#include "rvenc/enclave/shaper.hpp"
#include "rvenc/http/server.hpp"
#include "rvenc/protocol/envelope.hpp"

namespace rvenc::enclave {

// Headers the gateway adds when forwarding.
inline constexpr std::string_view kKeyEnvHeader = "X-Rvenc-Key-Env";
inline constexpr std::string_view kTenantHeader = "X-Rvenc-Tenant";
inline constexpr std::string_view kRequestIdHeader = "X-Request-Id";

inline constexpr std::size_t kDefaultMaxAttestationQueue = 8;
// Retry-After (seconds) of 503 enclave_busy.
inline constexpr int kBusyRetryAfterSeconds = 1;

struct ServiceOptions {
  bool allow_v1 = false;
  // Version 2 (opt-in since version 3). While the key may have served an earlier process (a key
  // file that existed before this start), v2 requests with timestamps up to start + the allowed
  // clock skew are refused: that process's replay cache is gone (docs/threat-model.md).
  bool allow_v2 = false;
  bool key_may_have_been_used = true;
  // SHA-256 of the gateway's bearer token; nullopt: no token required (local use only).
  std::optional<crypto::Sha256Digest> gateway_token_hash;
  // Models that requests forwarded for test keys (X-Rvenc-Key-Env: test) may use.
  std::vector<std::string> test_models = {std::string(kDefaultDemoModel)};
  std::size_t replay_cache_entries = kDefaultReplayCacheEntries;
  // Entries one tenant may hold (429 replay_quota_exceeded beyond); 0: default_tenant_share.
  std::size_t replay_tenant_share = 0;
  // Attestation requests waiting for (or getting) evidence at once; beyond: 503 overloaded.
  std::size_t max_attestation_queue = kDefaultMaxAttestationQueue;
  // Chat streams at once (beyond: 503 enclave_busy); 0: unlimited.
  std::size_t max_streams = 0;
  // Key rotation (KeyRing): period 0 keeps the start key until its notAfter.
  RotationOptions rotation;
  // Stream shaping against traffic analysis (docs/traffic-shaping.md): default and allowed modes.
  ShapingPolicy shaping;
  // Seconds since the epoch (tests may move the clock).
  std::function<std::int64_t()> clock;
};

// Reads the gateway token file (surrounding whitespace trimmed) and hashes it. invalid_request
// when the file is unreadable or empty.
[[nodiscard]] Result<crypto::Sha256Digest> load_gateway_token_hash(const std::filesystem::path& path);

class EnclaveService {
 public:
  EnclaveService(ServiceOptions options, std::shared_ptr<EnclaveKey> key,
                 std::shared_ptr<AttestationProvider> attestation,
                 std::map<std::string, std::shared_ptr<Engine>> engines);
  ~EnclaveService();
  EnclaveService(const EnclaveService&) = delete;
  EnclaveService& operator=(const EnclaveService&) = delete;

  http::awaitable<void> attestation(http::Request& request, http::ResponseWriter& writer);
  http::awaitable<void> models(http::Request& request, http::ResponseWriter& writer);
  http::awaitable<void> healthz(http::Request& request, http::ResponseWriter& writer);
  http::awaitable<void> chat(http::Request& request, http::ResponseWriter& writer);

  // The four routes above; the service must outlive the router.
  [[nodiscard]] http::Router router();
  // Whether `request` carries the gateway token (when one is configured): what chat requests and
  // rvenc-mux upgrades (http::ServerOptions::accept_mux) must show. invalid_api_key otherwise.
  [[nodiscard]] Status check_gateway_token(const http::Request& request) const;

  // The key attested and offered now (rotation replaces it; a previous key stays in keys()).
  [[nodiscard]] std::shared_ptr<EnclaveKey> current_key() const { return keys_.current().key; }
  [[nodiscard]] const KeyRing& keys() const noexcept { return keys_; }
  // Rotates and retires keys when due (KeyRing::maintain) at the service's clock; the server
  // calls it on a timer so that a retired key is wiped without traffic.
  void maintain_keys() { keys_.maintain(now()); }
  [[nodiscard]] const AttestationProvider& provider() const noexcept { return *attestation_; }
  [[nodiscard]] const std::map<std::string, std::shared_ptr<Engine>>& engines() const noexcept { return engines_; }
  [[nodiscard]] const ReplayCache& replay_cache() const noexcept { return replay_; }
  // --max-streams, nullopt when unlimited; and the streams running now.
  [[nodiscard]] std::optional<std::size_t> capacity() const noexcept;
  [[nodiscard]] std::size_t in_flight() const noexcept { return streams_.load(); }
  // The model names served, sorted.
  [[nodiscard]] std::vector<std::string> model_names() const;

 private:
  struct Accepted;
  [[nodiscard]] Result<Accepted> accept(const http::Request& request);
  // The version is allowed, the keyId is this enclave's (current or previous key), the timestamp
  // is inside the window; the key to decrypt with.
  [[nodiscard]] Result<HeldKey> check_version(const protocol::RequestEnvelope& envelope) const;
  [[nodiscard]] std::int64_t now() const;
  // The attestation document of `key` for `challenge` at `now_s`, all but its evidence and collateral.
  [[nodiscard]] protocol::AttestationDocument attestation_document(const EnclaveKey& key,
                                                                   const protocol::Challenge& challenge,
                                                                   std::int64_t now_s) const;
  // Counts a stream in, unless --max-streams are running (then false, nothing counted).
  [[nodiscard]] bool take_stream_slot();
  // A plain error answer before any event (logged; Retry-After where the code has one).
  http::awaitable<void> send_refusal(const http::Request& request, http::ResponseWriter& writer, const Error& error,
                                     const std::string& id, std::chrono::steady_clock::time_point started);

  ServiceOptions options_;
  KeyRing keys_;
  std::shared_ptr<AttestationProvider> attestation_;
  std::map<std::string, std::shared_ptr<Engine>> engines_;
  ReplayCache replay_;
  std::int64_t started_at_;
  // Hardware evidence blocks (configfs I/O): it runs here, never on the I/O threads.
  boost::asio::thread_pool blocking_pool_{1};
  std::atomic<std::size_t> evidence_queued_{0};  // attestation requests in blocking_pool_
  std::atomic<std::size_t> streams_{0};          // chat requests past the capacity check
};

}  // namespace rvenc::enclave
