#include "rvenc/gateway/key_cache.hpp"

namespace rvenc::gateway {

KeyCache::KeyCache(KeyStore store) : store_(std::move(store)) {}

Result<std::shared_ptr<const ApiKeyRecord>> KeyCache::lookup(const KeyHash& hash) {
  std::lock_guard lock(mutex_);
  if (auto it = cache_.find(hash); it != cache_.end()) return it->second;
  if (!version_) {
    // Read the version before the key, so a change in between is seen by the next poll.
    auto version = store_.keys_version();
    if (!version) return std::unexpected(version.error());
    version_ = *version;
  }
  auto found = store_.find_by_hash(hash);
  if (!found) return std::unexpected(found.error());
  if (cache_.size() >= kMaxCachedKeys) cache_.clear();
  std::shared_ptr<const ApiKeyRecord> record;
  if (*found) record = std::make_shared<const ApiKeyRecord>(std::move(**found));
  cache_.emplace(hash, record);
  return record;
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
