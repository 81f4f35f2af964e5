#include "rvenc/gateway/key_cache.hpp"

namespace rvenc::gateway {

KeyCache::KeyCache(KeyStore store) : store_(std::move(store)) {}

Result<std::optional<ApiKeyRecord>> KeyCache::lookup(const KeyHash& hash) {
  std::lock_guard lock(mutex_);
  const std::string cache_key(reinterpret_cast<const char*>(hash.data()), hash.size());
  if (auto it = cache_.find(cache_key); it != cache_.end()) return it->second;
  if (!version_) {
    // Read the version before the key, so a change in between is seen by the next poll.
    auto version = store_.keys_version();
    if (!version) return std::unexpected(version.error());
    version_ = *version;
  }
  auto found = store_.find_by_hash(hash);
  if (!found) return std::unexpected(found.error());
  if (cache_.size() >= kMaxCachedKeys) cache_.clear();
  cache_.emplace(cache_key, *found);
  return *found;
}

Result<bool> KeyCache::poll() {
  std::lock_guard lock(mutex_);
  auto version = store_.keys_version();
  if (!version) return std::unexpected(version.error());
  if (version_ && *version_ == *version) return false;
  version_ = *version;
  cache_.clear();
  return true;
}

}  // namespace rvenc::gateway
