#include "rvenc/proxy/client_cache.hpp"

#include <algorithm>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

namespace rvenc::proxy {

namespace asio = boost::asio;


ClientCache::ClientCache(CacheOptions options, client::ClientOptions base, DekStore* store)
    : options_(options), base_(std::move(base)), trust_(trust_digest(base_.attestation)), store_(store) {
  base_.api_key.clear();
  base_.encryption_keys.reset();
  if (store_ == nullptr) return;
  // Keys verified under other trust settings (another --measurement or platform key), of unknown
  // age, or near their notAfter are not used: they are made anew from a fresh attestation.
  auto dropped = store_->drop_unverified(trust_, unix_now());
  if (!dropped)
    spdlog::warn("proxy: cannot rewrite the DEK store: {}", dropped.error().to_string());
  else if (*dropped != 0)
    spdlog::info("proxy: dropped {} stored encryption key(s) verified under other trust settings, of unknown age or "
                 "expiring; they are made anew from a fresh attestation",
                 *dropped);
}

Result<std::shared_ptr<CachedClient>> ClientCache::get(const std::string& api_key, std::int64_t now) {
  const std::string digest = api_key_digest(api_key);
  std::lock_guard lock(mutex_);
  if (now - last_sweep_ >= kSweepIntervalSeconds) evict_locked(now);
  if (auto it = entries_.find(digest); it != entries_.end()) {
    it->second->last_used = now;
    return it->second;
  }

  std::optional<Dek> stored = store_ != nullptr ? store_->find(digest) : std::nullopt;
  client::ClientOptions options = base_;
  options.api_key = api_key;
  if (stored) options.encryption_keys = stored->keys;
  auto sdk = client::create_client(std::move(options));
  // The base options were checked at start-up: what is left to refuse is the key's form.
  if (!sdk) return fail(Errc::invalid_api_key, "the API key is malformed (expected sk_live_… or sk_test_…)");

  if (!entries_.empty() && entries_.size() >= options_.max_clients) {
    const auto lru = std::min_element(entries_.begin(), entries_.end(), [](const auto& a, const auto& b) {
      return a.second->last_used < b.second->last_used;
    });
    entries_.erase(lru);
  }
  auto entry = std::make_shared<CachedClient>(digest, std::move(*sdk));
  entry->stored = stored.has_value();
  entry->dek = std::move(stored);
  entry->last_used = now;
  entries_.emplace(digest, entry);
  return entry;
}

http::awaitable<Status> ClientCache::prepare_keys(std::shared_ptr<CachedClient> entry, std::int64_t now) {
  while (entry->generating) {
    // Another request of this key is making keys: share its result instead of racing it (and
    // never send with keys it is replacing).
    const auto ready = entry->keys_ready;
    co_await ready->async_wait(asio::as_tuple(asio::use_awaitable));
    if (!entry->dek && entry->generate_error) co_return std::unexpected(*entry->generate_error);
  }
  if (!entry->dek || options_.dek.needs_rotation(*entry->dek, now)) {
    entry->generating = true;
    entry->generate_error.reset();
    entry->keys_ready = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor,
                                                            asio::steady_timer::time_point::max());
    auto keys = co_await entry->client.async_generate_encryption_keys();
    entry->generating = false;
    if (keys) {
      entry->dek = Dek{std::move(*keys), now, 0, trust_};
      entry->stored = false;
    } else {
      entry->generate_error = keys_failure(keys.error());
      drop_keys(*entry);
    }
    entry->keys_ready->cancel();
    entry->keys_ready.reset();
    if (!keys) co_return std::unexpected(*entry->generate_error);
  }
  ++entry->dek->requests;
  if (store_ != nullptr && entry->stored) store_->note_requests(entry->digest, entry->dek->requests);
  co_return Status{};
}

void ClientCache::drop_keys(CachedClient& entry) {
  // Fail closed: keys that could not be renewed are not used again, here or after a restart.
  if (entry.dek)
    spdlog::error("proxy: new encryption keys failed, the current ones are dropped and requests fail until "
                  "attestation succeeds: {}",
                  entry.generate_error ? entry.generate_error->to_string() : std::string());
  entry.dek.reset();
  if (store_ != nullptr) {
    if (auto ok = store_->erase(entry.digest); !ok)
      spdlog::warn("proxy: cannot write the DEK store: {}", ok.error().to_string());
  }
  entry.stored = false;
}

Error ClientCache::keys_failure(const Error& error) {
  if (error.code != Errc::attestation_failed) return error;
  return Error{error.code, "the enclave's attestation did not verify, so nothing is sent until it does: " +
                               error.message,
               error.http_status};
}

void ClientCache::confirm(CachedClient& entry) {
  // The SDK replaced keys the gateway no longer knew (the enclave's key changed): the entry and
  // the store follow it, so a restarted proxy does not start from keys known to fail.
  if (auto in_use = entry.client.encryption_keys();
      in_use && entry.dek && in_use->cipher_text != entry.dek->keys.cipher_text) {
    entry.dek = Dek{std::move(*in_use), unix_now(), 1, trust_};
    entry.stored = false;
  }
  if (store_ == nullptr || entry.stored || !entry.dek) return;
  if (auto ok = store_->put(entry.digest, *entry.dek); !ok) {
    spdlog::warn("proxy: cannot save keys to the DEK store: {}", ok.error().to_string());
    return;
  }
  entry.stored = true;
}

void ClientCache::forget(const CachedClient& entry) {
  std::lock_guard lock(mutex_);
  if (auto it = entries_.find(entry.digest); it != entries_.end() && it->second.get() == &entry) entries_.erase(it);
}

std::size_t ClientCache::evict_idle(std::int64_t now) {
  std::lock_guard lock(mutex_);
  const std::size_t before = entries_.size();
  evict_locked(now);
  return before - entries_.size();
}

void ClientCache::evict_locked(std::int64_t now) {
  last_sweep_ = now;
  std::erase_if(entries_, [&](const auto& item) { return now - item.second->last_used >= options_.idle_timeout.count(); });
}

std::size_t ClientCache::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

bool ClientCache::contains(const std::string& api_key) const {
  std::lock_guard lock(mutex_);
  return entries_.contains(api_key_digest(api_key));
}

Status ClientCache::flush() { return store_ != nullptr ? store_->flush() : Status{}; }

}  // namespace rvenc::proxy
