// An in-process stand-in for gateway + enclave on 127.0.0.1:0, built from the real pieces
// (rvenc_http Server, X-Wing, open_request, ResponseSealer, simulated attestation): it decrypts
// each request for real and answers with a scripted event stream, so the client's handling of
// every stream shape (tampered, reordered, cut, oversized, errors) can be tested over sockets.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>

#include "rvenc/crypto/crypto.hpp"
#include "rvenc/http/server.hpp"
#include "rvenc/protocol/attestation.hpp"
#include "rvenc/protocol/chat.hpp"
#include "rvenc/protocol/sealing.hpp"

namespace rvenc::test {

// What the fake answers to one chat request.
struct Reply {
  std::optional<http::Response> error;  // a plain HTTP error instead of a stream
  std::vector<std::string> pieces;      // SSE text, one write() each
  bool hang = false;                    // answer nothing until FakeGateway::release()
  bool cut = false;                     // drop the connection after the pieces (no clean end)
  std::chrono::milliseconds piece_interval{0};  // wait between two pieces
  // After the pieces: `trickle` (e.g. ": ping\n\n") every trickle_interval for trickle_for, then
  // the clean end (a gateway keeping a finished stream open).
  std::string trickle;
  std::chrono::milliseconds trickle_interval{100};
  std::chrono::milliseconds trickle_for{0};
};

// Builds the reply from the sealer of this request and the decrypted chat request.
using Script = std::function<Reply(protocol::ResponseSealer& sealer, const protocol::ChatRequest& request)>;

enum class AttestationFlaw { none, bad_binding, other_platform_key, wrong_key_id };

class FakeGateway {
 public:
  static constexpr std::string_view kApiKey = "sk_test_fake0000000000000000000000";

  FakeGateway();
  ~FakeGateway();

  [[nodiscard]] std::string url() const { return server_->url(); }
  [[nodiscard]] std::size_t accepted_connections() const { return server_->accepted_connections(); }
  [[nodiscard]] const crypto::Ed25519PublicKey& platform_public_key() const { return platform_.public_key; }
  [[nodiscard]] const std::vector<std::uint8_t>& measurement() const { return measurement_; }
  [[nodiscard]] crypto::KeyId key_id() const;

  void set_script(Script script);
  void set_attestation_flaw(AttestationFlaw flaw) { flaw_ = flaw; }
  // The notAfter the attestation gives the key: now + this many seconds (default 3600).
  void set_key_lifetime(std::int64_t seconds) { key_lifetime_ = seconds; }
  // While set, attestation requests get no answer until release().
  void set_attestation_hang(bool hang) { attestation_hangs_ = hang; }
  // A new enclave key: requests for the old keyId get 404 unknown_key_id.
  void rotate_key();

  // Several enclaves (PROTOCOL.md section 7). Enclave 0 is the one above; add_replica() adds one
  // serving `models` and turns the fake into a gateway of this release: attestation honours
  // `&model=` (404 model_not_found when no enclave up serves it) and `&all=1`, documents carry
  // "models", and enclave 0 serves "demo". Returns the new enclave's index.
  std::size_t add_replica(std::vector<std::string> models);
  // The next `times` requests sealed to enclave `index` get `code` (503 with Retry-After for
  // enclave_busy) before any event.
  void fail_replica(std::size_t index, Errc code, int times);
  // Enclave `index` is down: left out of attestation, its requests get 503 enclave_unavailable.
  void set_replica_down(std::size_t index, bool down);
  [[nodiscard]] int replica_requests(std::size_t index) const;
  [[nodiscard]] crypto::KeyId replica_key_id(std::size_t index) const;
  // Lets hanging replies finish (they then close without answering).
  void release();

  // Counters and the last decrypted request.
  std::atomic<int> attestation_requests{0};
  std::atomic<int> chat_requests{0};
  std::atomic<int> models_requests{0};
  [[nodiscard]] boost::json::object last_request() const;

  // The usual stream: data chunks from `chunks` (JSON texts), then done.
  static std::vector<std::string> sealed(protocol::ResponseSealer& sealer, const std::vector<std::string>& chunks);

 private:
  http::awaitable<void> attestation(http::Request& request, http::ResponseWriter& writer);
  http::awaitable<void> chat(http::Request& request, http::ResponseWriter& writer);

  struct Enclave {
    crypto::XWingKeyPair key;
    std::vector<std::string> models;
    int requests = 0;
    int fail_times = 0;
    Errc fail_code = Errc::enclave_busy;
    bool down = false;
  };
  // The document of `enclave` bound to `challenge` (with "models" once there are replicas).
  [[nodiscard]] boost::json::value document(const Enclave& enclave, protocol::Challenge challenge) const;
  // The enclave holding `key_id` (nullptr when none); under mutex_.
  [[nodiscard]] Enclave* enclave_of(const crypto::KeyId& key_id);

  mutable std::mutex mutex_;
  std::vector<Enclave> enclaves_;  // [0] is the original enclave
  bool replicas_ = false;
  crypto::Ed25519KeyPair platform_;
  crypto::Ed25519KeyPair other_platform_;
  std::vector<std::uint8_t> measurement_;
  Script script_;
  boost::json::object last_request_;
  std::atomic<AttestationFlaw> flaw_{AttestationFlaw::none};
  std::atomic<bool> attestation_hangs_{false};
  std::atomic<bool> stopping_{false};  // ends trickling and slow replies
  std::atomic<std::int64_t> key_lifetime_{3600};
  std::unique_ptr<http::Server> server_;
  // Hanging replies wait on it; it lives on the server's io_context, so it goes before the server.
  std::unique_ptr<boost::asio::steady_timer> hold_;
};

// A chat.completion.chunk JSON text with `delta` and optional finish_reason.
std::string chunk_json(const boost::json::object& delta, std::string_view finish_reason = {});

}  // namespace rvenc::test
