// Replay protection for requests that carry a keyId (version 2 and later, PROTOCOL.md section 2):
// the timestamp must be within 300 s of the enclave clock, and a (keyId, nonce) pair is answered
// at most once within 600 s, by a cache that every tenant shares fairly.
//
// Design: a pair is *reserved* when its request authenticates, atomically (of concurrent copies
// of one request exactly one gets it), *committed* once the request passed every check and is
// going to be answered, and *released* at once when it is refused. A refused request was never
// answered, so forgetting it lets nothing through twice, and invalid requests take no room. The
// reservation is an RAII object that releases unless committed. Each tenant (the API key id the
// gateway forwards; "" for anonymous callers) holds at most `tenant_share` entries, reserved or
// committed: beyond that its own requests get 429 replay_quota_exceeded and nobody else's, so one
// tenant cannot fill the cache. The cache as a whole keeps its hard cap: when many tenants
// together fill it, it answers 503 overloaded rather than forget a pair early (that would let a
// replay through).
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>
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
// The derived tenant share (default_tenant_share) never goes below this on a cache of twice
// its size or more, so a small cache still takes a tenant's burst.
inline constexpr std::size_t kMinReplayTenantShare = 64;

// replayed_request when `timestamp` is more than kMaxClockSkewSeconds away from `now`.
[[nodiscard]] Status check_timestamp(std::int64_t timestamp, std::int64_t now);

// The share of one tenant when none is configured: an eighth of the cache, but at least
// min(kMinReplayTenantShare, capacity / 2), and at least 1. Below the whole capacity whenever
// the capacity is 2 or more, so no single tenant can fill the cache. (2^20 entries: 131 072 per
// tenant, about 218 requests/s sustained over the window.)
[[nodiscard]] std::size_t default_tenant_share(std::size_t capacity) noexcept;

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

// The (keyId, nonce) pairs reserved now or answered within the window, as keyed fingerprints:
// committed ones in time buckets that expire whole, reserved ones in a small list of their own
// (a request holds its reservation only while it is checked). Thread-safe: one mutex.
class ReplayCache {
 public:
  // A reserved pair. Releases it on destruction unless committed. Movable, not copyable; the
  // cache must outlive it.
  class Reservation {
   public:
    Reservation(Reservation&& other) noexcept;
    Reservation& operator=(Reservation&& other) noexcept;
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;
    ~Reservation() { release(); }

    // The request is going to be answered: the pair is refused for the rest of the window, and
    // counts against its tenant's share until then.
    void commit();
    // The request was refused: the pair and the tenant's slot are free again at once.
    void release() noexcept;

   private:
    friend class ReplayCache;
    Reservation(ReplayCache& cache, const crypto::Fingerprint& entry, std::string tenant, std::int64_t at)
        : cache_(&cache), entry_(entry), tenant_(std::move(tenant)), at_(at) {}

    ReplayCache* cache_ = nullptr;  // null once committed or released
    crypto::Fingerprint entry_{};
    std::string tenant_;
    std::int64_t at_ = 0;
  };

  // tenant_share 0: default_tenant_share(max_entries); else at most max_entries.
  explicit ReplayCache(std::size_t max_entries = kDefaultReplayCacheEntries, std::size_t tenant_share = 0,
                       std::int64_t window_seconds = kReplayWindowSeconds,
                       std::int64_t bucket_seconds = kReplayBucketSeconds);

  // Reserves the pair for `tenant` ("" = anonymous) at `now` (seconds). Errors, with nothing
  // recorded: replayed_request when the pair was answered within the window or is reserved by
  // a concurrent copy of the request; overloaded when the whole cache is full; else
  // replay_quota_exceeded when the tenant holds its share (see retry_after).
  [[nodiscard]] Result<Reservation> reserve(std::string tenant, const crypto::KeyId& key_id,
                                            const crypto::Nonce& nonce, std::int64_t now);
  // Seconds until the tenant's oldest committed entry expires, at least 1: the Retry-After of
  // replay_quota_exceeded.
  [[nodiscard]] std::int64_t retry_after(const std::string& tenant, std::int64_t now) const;

  [[nodiscard]] std::size_t size() const;  // entries reserved or committed
  [[nodiscard]] std::size_t held(const std::string& tenant) const;
  [[nodiscard]] std::size_t capacity() const noexcept { return max_entries_; }
  [[nodiscard]] std::size_t tenant_share() const noexcept { return tenant_share_; }

 private:
  struct Bucket {
    std::int64_t start = 0;
    detail::FingerprintSet entries;
    // Entries of each tenant in this bucket, returned to its share when the bucket expires.
    std::unordered_map<std::string, std::size_t> tenants;
  };
  void expire(std::int64_t now);
  [[nodiscard]] bool seen(const crypto::Fingerprint& entry) const noexcept;
  void commit(const Reservation& reservation);
  void release(const Reservation& reservation) noexcept;
  // Removes the entry from reserved_; false when it was not there.
  bool forget_reserved(const crypto::Fingerprint& entry) noexcept;
  // Takes `count` entries off the tenant's share (the caller holds the mutex).
  void give_back(const std::string& tenant, std::size_t count) noexcept;

  std::size_t max_entries_;
  std::size_t tenant_share_;
  std::int64_t window_;
  std::int64_t bucket_;
  mutable std::mutex mutex_;
  std::deque<Bucket> buckets_;  // oldest first
  // Reserved pairs: a request holds its reservation only within one synchronous check, so
  // there are at most as many as threads handling requests; a vector scanned whole is fastest.
  std::vector<crypto::Fingerprint> reserved_;
  std::unordered_map<std::string, std::size_t> held_;  // per tenant: reserved + committed
  std::size_t size_ = 0;                                // reserved + committed
};

}  // namespace rvenc::enclave
