// The enclave's keys while it runs: the current X-Wing key, which it attests and offers, and the
// previous keys it still decrypts after a rotation (`rvenc enclave --key-rotation-hours`,
// PROTOCOL.md section 7 "previousKeys", docs/key-rotation.md).
//
// Design: with a rotation period P (0: never rotate, the key lives until its notAfter as before)
// every key is made with notAfter = creation + P + G, where the grace G = min(P, 1 h) is the time
// the key still decrypts after the next one replaced it (requests sealed just before the rotation,
// clients that have not refreshed yet). A key is replaced at creation + P (a key loaded at start:
// at min(start + P, notAfter − G)), and from then on it is a previous key until min(its notAfter,
// rotation + G); then it is dropped, and wiped as soon as no request still holds it (shared_ptr).
// Because G ≤ P, at most one or two previous keys live at once. Nothing runs in the background
// here: maintain(now) does what is due, and the service calls it on every request and the server
// on a timer, so a test clock drives it exactly. Replay protection needs nothing from the ring: the
// replay cache is keyed by (keyId, nonce), per key. A key file, when given, always holds the
// current key (rewritten atomically at each rotation), so a restart resumes with it; previous
// keys live in memory only.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "rvenc/crypto/crypto.hpp"
#include "rvenc/enclave/key.hpp"
#include "rvenc/protocol/attestation.hpp"

namespace rvenc::enclave {

// The longest grace a rotated key keeps decrypting.
inline constexpr std::chrono::seconds kMaxRotationGrace{3600};

struct RotationOptions {
  std::chrono::seconds period{0};  // 0: never rotate
  // Where the current key is kept (rewritten at each rotation); nullopt: in memory only.
  std::optional<std::filesystem::path> key_file;
};

// G = min(period, kMaxRotationGrace).
[[nodiscard]] std::chrono::seconds rotation_grace(std::chrono::seconds period) noexcept;
// The notAfter a key made at `now` gets under rotation: now + period + rotation_grace(period).
[[nodiscard]] std::chrono::seconds rotated_key_lifetime(std::chrono::seconds period) noexcept;

// A key found for a request: the key and whether an earlier process may have served requests
// with it (only the key loaded at start can have: version 2's restart window).
struct HeldKey {
  std::shared_ptr<EnclaveKey> key;
  bool may_have_been_used = false;
};

// Thread-safe (one mutex); keys are handed out as shared_ptr, so a request keeps its key alive
// however the ring changes meanwhile.
class KeyRing {
 public:
  KeyRing(std::shared_ptr<EnclaveKey> start, bool start_key_may_have_been_used, RotationOptions options,
          std::int64_t now);

  // Rotates when the current key is due, drops previous keys past their end (see Design).
  void maintain(std::int64_t now);

  [[nodiscard]] HeldKey current() const;
  // The current or a previous key with this id still in use at `now`; key null otherwise.
  [[nodiscard]] HeldKey find(const crypto::KeyId& key_id, std::int64_t now) const;
  // The previous keys still decrypting at `now`, with the time each stops (its "notAfter" in the
  // attestation document's informational previousKeys).
  [[nodiscard]] std::vector<protocol::PreviousKey> previous(std::int64_t now) const;
  [[nodiscard]] std::uint64_t rotations() const;
  // When the current key is replaced (nullopt: rotation is off).
  [[nodiscard]] std::optional<std::int64_t> next_rotation() const;
  [[nodiscard]] std::chrono::seconds period() const noexcept { return options_.period; }

 private:
  struct Previous {
    std::shared_ptr<EnclaveKey> key;
    bool may_have_been_used = false;
    std::int64_t until = 0;  // min(notAfter, rotation + grace)
  };
  void rotate_locked(std::int64_t now);

  RotationOptions options_;
  mutable std::mutex mutex_;
  HeldKey current_;
  std::int64_t rotate_at_ = 0;
  std::vector<Previous> previous_;
  std::uint64_t rotations_ = 0;
};

}  // namespace rvenc::enclave
