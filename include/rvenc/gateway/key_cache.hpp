// API key lookups by hash, cached in memory, with prompt invalidation: poll() compares the
// store's keys_version (moved by every create/revoke/edit, from any process) and drops the
// whole cache when it moved. The gateway polls every kKeysPollInterval, so a revoke takes effect
// within one second on every gateway sharing the store; a PostgreSQL store also pushes changes
// (LISTEN/NOTIFY: watch()), which drop the cache at once.
//
// Design: while the store cannot be reached (a poll or a lookup failed) the cached keys keep
// being served for `StoreFailure::grace`, then, with the closed policy (default), refused like
// unknown keys are at once (overloaded, 503); the open policy serves cached keys until the store
// returns. An unknown key is never admitted without the store: nothing could charge it.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "rvenc/gateway/key_store.hpp"

namespace rvenc::gateway {

inline constexpr std::chrono::milliseconds kKeysPollInterval{250};
// Unknown hashes are cached too (so a flood of bad keys does not hit the store); bounded.
inline constexpr std::size_t kMaxCachedKeys = 100'000;

struct StoreFailure {
  enum class Policy { closed, open };
  Policy policy = Policy::closed;
  // How long cached keys are served after the store was last reached (closed policy).
  std::chrono::seconds grace{60};
};
// "open" | "closed"; nullopt for anything else.
[[nodiscard]] std::optional<StoreFailure::Policy> store_failure_policy(std::string_view name) noexcept;

class KeyCache {
 public:
  explicit KeyCache(KeyStore store, StoreFailure failure = {});
  ~KeyCache();  // stops the watch first
  KeyCache(const KeyCache&) = delete;
  KeyCache& operator=(const KeyCache&) = delete;

  // The key with this hash (null: no such key), shared with the cache, never copied. Thread-safe.
  // overloaded when the store cannot be reached and the cache cannot (or may no longer) answer.
  [[nodiscard]] Result<std::shared_ptr<const ApiKeyRecord>> lookup(const KeyHash& hash);
  // Drops the cache when keys_version moved; returns whether it did. Thread-safe.
  [[nodiscard]] Result<bool> poll();
  // Drops the cache now (a pushed key change). Thread-safe.
  void invalidate();
  // Starts the store's push of key changes (PostgreSQL LISTEN), which calls invalidate().
  void watch();
  // False while the store is known unreachable (a failed poll or lookup, or its watch down).
  [[nodiscard]] bool store_reachable() const;

 private:
  // Records a store answer (success or failure) for the failure policy; mutex_ held.
  void note_store(bool ok);

  mutable std::mutex mutex_;
  KeyStore store_;
  StoreFailure failure_;
  std::optional<std::int64_t> version_;
  std::unordered_map<KeyHash, std::shared_ptr<const ApiKeyRecord>, crypto::KeyedBytesHash> cache_;
  // When the store last answered a poll or lookup, and whether the last call failed.
  std::chrono::steady_clock::time_point last_ok_ = std::chrono::steady_clock::now();
  bool failing_ = false;
};

}  // namespace rvenc::gateway
