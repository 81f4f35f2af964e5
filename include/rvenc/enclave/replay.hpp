// Replay protection for version-2 requests (PROTOCOL.md section 2): the timestamp must be within
// 300 s of the enclave clock, and a (keyId, nonce) pair is accepted once within 600 s.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <unordered_set>

#include "rvenc/common/error.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "rvenc/enclave/key.hpp"

namespace rvenc::enclave {

inline constexpr std::int64_t kMaxClockSkewSeconds = 300;
inline constexpr std::int64_t kReplayWindowSeconds = 600;
inline constexpr std::int64_t kReplayBucketSeconds = 60;
// ~100 bytes per entry: about 25 MiB, or 430 requests/s sustained over the window.
inline constexpr std::size_t kDefaultReplayCacheEntries = std::size_t{1} << 18;

// replayed_request when `timestamp` is more than kMaxClockSkewSeconds away from `now`.
[[nodiscard]] Status check_timestamp(std::int64_t timestamp, std::int64_t now);

// The (keyId, nonce) pairs seen within the window, in time buckets that expire whole. The cap is
// hard: when it is reached the cache refuses (overloaded) instead of forgetting early, since
// forgetting would let a replay through. Thread-safe.
class ReplayCache {
 public:
  explicit ReplayCache(std::size_t max_entries = kDefaultReplayCacheEntries,
                       std::int64_t window_seconds = kReplayWindowSeconds,
                       std::int64_t bucket_seconds = kReplayBucketSeconds);

  // Records the pair seen at `now` (seconds). replayed_request when it was already seen within
  // the window, overloaded when the cache is full (nothing recorded then).
  [[nodiscard]] Status check_and_insert(const crypto::KeyId& key_id, const crypto::Nonce& nonce, std::int64_t now);

  [[nodiscard]] std::size_t size() const;

 private:
  using Entry = std::array<std::uint8_t, crypto::kKeyIdBytes + crypto::kAeadNonceBytes>;
  struct Bucket {
    std::int64_t start = 0;
    std::unordered_set<Entry, crypto::KeyedBytesHash> entries;
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
