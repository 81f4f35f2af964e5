#include "rvenc/gateway/key_cache.hpp"

#include <spdlog/spdlog.h>

namespace rvenc::gateway {

std::optional<StoreFailure::Policy> store_failure_policy(std::string_view name) noexcept {
  if (name == "closed") return StoreFailure::Policy::closed;
  if (name == "open") return StoreFailure::Policy::open;
  return std::nullopt;
}

KeyCache::KeyCache(KeyStore store, StoreFailure failure) : store_(std::move(store)), failure_(failure) {}

KeyCache::~KeyCache() { store_.watch_keys(nullptr); }

void KeyCache::note_store(bool ok) {
  failing_ = !ok;
  if (ok) last_ok_ = std::chrono::steady_clock::now();
}

Result<std::shared_ptr<const ApiKeyRecord>> KeyCache::lookup(const KeyHash& hash) {
  std::lock_guard lock(mutex_);
  if (auto it = cache_.find(hash); it != cache_.end()) {
    const bool expired = (failing_ || !store_.reachable()) && failure_.policy == StoreFailure::Policy::closed &&
                         std::chrono::steady_clock::now() - last_ok_ > failure_.grace;
    if (!expired) return it->second;
    return fail(Errc::overloaded, "the key store has not been reachable for longer than the grace period");
  }
  if (!version_) {
    // Read the version before the key, so a change in between is seen by the next poll.
    auto version = store_.keys_version();
    note_store(version.has_value());
    if (!version) return std::unexpected(version.error());
    version_ = *version;
  }
  auto found = store_.find_by_hash(hash);
  note_store(found.has_value());
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
  note_store(version.has_value());
  if (!version) return std::unexpected(version.error());
  if (version_ && *version_ == *version) return false;
  version_ = *version;
  cache_.clear();
  return true;
}

void KeyCache::invalidate() {
  std::lock_guard lock(mutex_);
  version_.reset();
  cache_.clear();
}

void KeyCache::watch() {
  store_.watch_keys([this] {
    invalidate();
    spdlog::info("keys: key change pushed by the store; key cache dropped");
  });
}

bool KeyCache::store_reachable() const {
  std::lock_guard lock(mutex_);
  return !failing_ && store_.reachable();
}

}  // namespace rvenc::gateway
