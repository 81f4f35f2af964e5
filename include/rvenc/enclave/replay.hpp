// Replay protection for version-2 requests (PROTOCOL.md section 2): the timestamp must be within
// 300 s of the enclave clock, and a (keyId, nonce) pair is accepted once within 600 s.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

#include "rvenc/common/error.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "rvenc/enclave/key.hpp"

namespace rvenc::enclave {

inline constexpr std::int64_t kMaxClockSkewSeconds = 300;
inline constexpr std::int64_t kReplayWindowSeconds = 600;
inline constexpr std::int64_t kReplayBucketSeconds = 60;
// A 16-byte fingerprint per request in open-addressed tables 1/2 to 3/4 full: 21-32 bytes each,
// so 2^20 entries (about 1 750 requests/s sustained over the window) take at most ~32 MiB.
inline constexpr std::size_t kDefaultReplayCacheEntries = std::size_t{1} << 20;

// replayed_request when `timestamp` is more than kMaxClockSkewSeconds away from `now`.
[[nodiscard]] Status check_timestamp(std::int64_t timestamp, std::int64_t now);

namespace detail {
// A set of fingerprints in one flat table (linear probing), so an entry costs its 16 bytes and
// no node: the all-zero value marks a free slot, and fingerprints are stored with a bit set.
class FingerprintSet {
 public:
  [[nodiscard]] bool contains(const crypto::Fingerprint& fingerprint) const noexcept;
  // The fingerprint must not be in the set yet.
  void insert(const crypto::Fingerprint& fingerprint);
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

 private:
  [[nodiscard]] std::size_t slot_of(const crypto::Fingerprint& fingerprint) const noexcept;
  [[nodiscard]] std::size_t next(std::size_t slot) const noexcept;
  // Puts a stored value (occupied bit set) in the first free slot of its probe sequence.
  void place(const crypto::Fingerprint& value) noexcept;
  void grow();

  std::vector<crypto::Fingerprint> slots_;
  std::size_t size_ = 0;
};
}  // namespace detail

// The (keyId, nonce) pairs seen within the window, as keyed fingerprints in time buckets that
// expire whole. The cap is hard: when it is reached the cache refuses (overloaded) instead of
// forgetting early, since forgetting would let a replay through. Thread-safe.
class ReplayCache {
 public:
  explicit ReplayCache(std::size_t max_entries = kDefaultReplayCacheEntries,
                       std::int64_t window_seconds = kReplayWindowSeconds,
                       std::int64_t bucket_seconds = kReplayBucketSeconds);

  // Records the pair seen at `now` (seconds). replayed_request when it was already seen within
  // the window, overloaded when the cache is full (nothing recorded then).
  [[nodiscard]] Status check_and_insert(const crypto::KeyId& key_id, const crypto::Nonce& nonce, std::int64_t now);

  [[nodiscard]] std::size_t size() const;
  [[nodiscard]] std::size_t capacity() const noexcept { return max_entries_; }

 private:
  struct Bucket {
    std::int64_t start = 0;
    detail::FingerprintSet entries;
  };
  void expire(std::int64_t now);

  std::size_t max_entries_;
  std::int64_t window_;
  std::int64_t bucket_;
  mutable std::mutex mutex_;
  std::deque<Bucket> buckets_;  // oldest first
  std::size_t size_ = 0;
};

}  // namespace rvenc::enclave
