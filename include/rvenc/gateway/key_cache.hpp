// API key lookups by hash, cached in memory, with prompt invalidation: poll() compares the
// database's keys_version (moved by every create/revoke/edit, from any process) and drops the
// whole cache when it moved. The gateway polls every kKeysPollInterval, so a revoke takes effect
// within one second on every gateway sharing the database.
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
// Unknown hashes are cached too (so a flood of bad keys does not hit SQLite); bounded.
inline constexpr std::size_t kMaxCachedKeys = 100'000;

class KeyCache {
 public:
  explicit KeyCache(KeyStore store);

  // The key with this hash (null: no such key), shared with the cache, never copied. Thread-safe.
  [[nodiscard]] Result<std::shared_ptr<const ApiKeyRecord>> lookup(const KeyHash& hash);
  // Drops the cache when keys_version moved; returns whether it did. Thread-safe.
  [[nodiscard]] Result<bool> poll();

 private:
  std::mutex mutex_;
  KeyStore store_;
  std::optional<std::int64_t> version_;
  std::unordered_map<KeyHash, std::shared_ptr<const ApiKeyRecord>, crypto::KeyedBytesHash> cache_;
};

}  // namespace rvenc::gateway
