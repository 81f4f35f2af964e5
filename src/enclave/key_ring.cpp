#include "rvenc/enclave/key_ring.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "rvenc/common/hex.hpp"

namespace rvenc::enclave {

std::chrono::seconds rotation_grace(std::chrono::seconds period) noexcept { return std::min(period, kMaxRotationGrace); }

std::chrono::seconds rotated_key_lifetime(std::chrono::seconds period) noexcept {
  return period + rotation_grace(period);
}

KeyRing::KeyRing(std::shared_ptr<EnclaveKey> start, bool start_key_may_have_been_used, RotationOptions options,
                 std::int64_t now)
    : options_(std::move(options)), current_{std::move(start), start_key_may_have_been_used} {
  if (options_.period.count() > 0) {
    // A key loaded at start keeps its own schedule when it has one (notAfter − grace), but is
    // never kept longer than one period from now.
    const std::int64_t grace = rotation_grace(options_.period).count();
    rotate_at_ = std::min(now + options_.period.count(), current_.key->not_after() - grace);
  }
}

void KeyRing::maintain(std::int64_t now) {
  const std::lock_guard lock(mutex_);
  if (options_.period.count() > 0 && now >= rotate_at_) rotate_locked(now);
  // Dropped here; wiped (EnclaveKey's destructor) when the last request holding one ends.
  std::erase_if(previous_, [&](const Previous& p) {
    if (now < p.until) return false;
    spdlog::info("enclave key {} retired (its grace after the rotation ended)", to_hex(p.key->key_id()));
    return true;
  });
}

void KeyRing::rotate_locked(std::int64_t now) {
  crypto::XWingSeed seed;
  crypto::random_bytes(seed.span());
  const std::int64_t not_after = now + rotated_key_lifetime(options_.period).count();
  auto fresh = std::make_shared<EnclaveKey>(seed, not_after);
  if (options_.key_file) {
    // The file holds the current key, so that a restart resumes with it. If it cannot be written
    // the rotation still happens: the old key in the file is then a previous key that a restart
    // brings back until its notAfter, never a key with a longer life.
    if (auto ok = write_key_file(*options_.key_file, seed, not_after); !ok)
      spdlog::error("key rotation: {} (the new key lives in memory only)", ok.error().message);
  }
  const std::int64_t grace = rotation_grace(options_.period).count();
  previous_.push_back(Previous{current_.key, current_.may_have_been_used,
                               std::min(current_.key->not_after(), now + grace)});
  // Keys are retired within a grace ≤ one period, so this bound is never reached in practice;
  // it keeps memory bounded if the clock jumps.
  while (previous_.size() > protocol::kMaxPreviousKeys) previous_.erase(previous_.begin());
  spdlog::info("enclave key rotated: keyId {} (not after {}) replaces {}, which decrypts until {}",
               to_hex(fresh->key_id()), not_after, to_hex(current_.key->key_id()), previous_.back().until);
  current_ = HeldKey{std::move(fresh), false};
  rotate_at_ = now + options_.period.count();
  ++rotations_;
}

HeldKey KeyRing::current() const {
  const std::lock_guard lock(mutex_);
  return current_;
}

HeldKey KeyRing::find(const crypto::KeyId& key_id, std::int64_t now) const {
  const std::lock_guard lock(mutex_);
  if (current_.key->key_id() == key_id) return current_;
  for (const auto& p : previous_)
    if (p.key->key_id() == key_id && now < p.until) return HeldKey{p.key, p.may_have_been_used};
  return {};
}

std::vector<protocol::PreviousKey> KeyRing::previous(std::int64_t now) const {
  const std::lock_guard lock(mutex_);
  std::vector<protocol::PreviousKey> out;
  for (const auto& p : previous_)
    if (now < p.until) out.push_back(protocol::PreviousKey{p.key->key_id(), p.until});
  return out;
}

std::uint64_t KeyRing::rotations() const {
  const std::lock_guard lock(mutex_);
  return rotations_;
}

std::optional<std::int64_t> KeyRing::next_rotation() const {
  if (options_.period.count() == 0) return std::nullopt;
  const std::lock_guard lock(mutex_);
  return rotate_at_;
}

}  // namespace rvenc::enclave
