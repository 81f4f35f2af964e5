#include "rvenc/proxy/client_cache.hpp"

#include <algorithm>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "rvenc/client/hardware.hpp"

namespace rvenc::proxy {

namespace asio = boost::asio;

namespace {

// The hardware verifier installed before the trust digest is taken: its policy and roots are part
// of what the keys were verified under.
client::ClientOptions with_hardware_verifier(client::ClientOptions options) {
  client::install_hardware_verifier(options);
  return options;
}

}  // namespace

ClientCache::ClientCache(CacheOptions options, client::ClientOptions base, DekStore* store)
    : options_(options),
      base_(with_hardware_verifier(std::move(base))),
      trust_(trust_digest(base_.attestation)),
      store_(store) {
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

  const auto stored = store_ != nullptr ? store_->find_all(digest) : std::vector<std::pair<std::string, Dek>>{};
  client::ClientOptions options = base_;
  options.api_key = api_key;
  for (const auto& [model, dek] : stored) {
    client::EncryptionKeys keys = dek.keys;
    if (!model.empty() && !keys.serves(model)) keys.models.push_back(model);
    if (!model.empty() && keys.models.empty()) keys.models = {model};
    options.replica_keys.push_back(std::move(keys));
  }
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
  for (const auto& [model, dek] : stored) {
    entry->models[model].deks.push_back(dek);
    entry->models[model].stored = true;
  }
  entry->last_used = now;
  entries_.emplace(digest, entry);
  return entry;
}

std::string CachedClient::set_for(std::string_view model) const {
  const auto own = models.find(model);
  if (own != models.end() && !own->second.deks.empty()) return std::string(model);
  const auto any = models.find("");
  if (any != models.end() && !any->second.deks.empty() &&
      std::all_of(any->second.deks.begin(), any->second.deks.end(), [&](const Dek& d) { return d.keys.serves(model); }))
    return "";
  return std::string(model);
}

std::optional<Dek> CachedClient::dek_of(std::string_view model) const {
  const auto it = models.find(set_for(model));
  if (it == models.end() || it->second.deks.empty()) return std::nullopt;
  return it->second.deks.front();
}

http::awaitable<Status> ClientCache::prepare_keys(std::shared_ptr<CachedClient> entry, std::string model,
                                                  std::int64_t now) {
  std::string set_name = entry->set_for(model);
  while (entry->models[set_name].generating) {
    // Another request of this key is making keys: share its result instead of racing it (and
    // never send with keys it is replacing).
    ModelDeks& set = entry->models[set_name];
    const auto ready = set.keys_ready;
    co_await ready->async_wait(asio::as_tuple(asio::use_awaitable));
    if (set.deks.empty() && set.generate_error) co_return std::unexpected(*set.generate_error);
    set_name = entry->set_for(model);
  }
  ModelDeks& set = entry->models[set_name];
  const auto needs_rotation = [&](const Dek& dek) { return options_.dek.needs_rotation(dek, now); };
  if (set.deks.empty() || std::any_of(set.deks.begin(), set.deks.end(), needs_rotation)) {
    // Keys of older releases (for any model) rotate into the model's own set.
    if (set_name != model) {
      drop_keys(*entry, set_name);
      co_return co_await prepare_keys(std::move(entry), std::move(model), now);
    }
    set.generating = true;
    set.generate_error.reset();
    set.keys_ready = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor,
                                                         asio::steady_timer::time_point::max());
    auto keys = co_await entry->client.async_generate_replica_keys(model, true);
    set.generating = false;
    if (keys) {
      set.deks.clear();
      for (auto& made : *keys) set.deks.push_back(Dek{std::move(made), now, 0, trust_});
      set.stored = false;
    } else {
      set.generate_error = keys_failure(keys.error());
      drop_keys(*entry, set_name);
    }
    set.keys_ready->cancel();
    set.keys_ready.reset();
    if (!keys) co_return std::unexpected(*set.generate_error);
  }
  for (Dek& dek : set.deks) ++dek.requests;  // the set rotates as a whole
  note_requests(*entry, set_name);
  co_return Status{};
}

void ClientCache::note_requests(const CachedClient& entry, const std::string& set_name) {
  const auto it = entry.models.find(set_name);
  if (store_ == nullptr || it == entry.models.end() || !it->second.stored) return;
  for (const Dek& dek : it->second.deks) {
    // Entries of older releases are indexed by the digest alone.
    const std::string key = store_->find(entry.digest) ? entry.digest
                                                        : DekStore::entry_key(entry.digest, set_name, dek.keys.key_id);
    store_->note_requests(key, dek.requests);
  }
}

void ClientCache::drop_keys(CachedClient& entry, const std::string& set_name) {
  ModelDeks& set = entry.models[set_name];
  // Fail closed: keys that could not be renewed are not used again, here or after a restart.
  if (!set.deks.empty() && set.generate_error)
    spdlog::error("proxy: new encryption keys failed, the current ones are dropped and requests fail until "
                  "attestation succeeds: {}",
                  set.generate_error->to_string());
  set.deks.clear();
  if (store_ != nullptr) {
    if (auto ok = store_->erase_set(entry.digest, set_name); !ok)
      spdlog::warn("proxy: cannot write the DEK store: {}", ok.error().to_string());
  }
  set.stored = false;
}

Error ClientCache::keys_failure(const Error& error) {
  if (error.code != Errc::attestation_failed) return error;
  return Error{error.code, "the enclave's attestation did not verify, so nothing is sent until it does: " +
                               error.message,
               error.http_status};
}

void ClientCache::confirm(CachedClient& entry, std::string_view model) {
  // The SDK replaced keys (an enclave's key changed, a replica went away): the entry and the
  // store follow it, so a restarted proxy does not start from keys known to fail.
  const std::vector<client::EncryptionKeys> in_use = entry.client.encryption_keys_for(model);
  ModelDeks& set = entry.models[std::string(model)];
  const auto same = [&] {
    if (in_use.size() != set.deks.size()) return false;
    for (std::size_t i = 0; i < in_use.size(); ++i)
      if (in_use[i].cipher_text != set.deks[i].keys.cipher_text) return false;
    return true;
  };
  if (!in_use.empty() && !same()) {
    std::vector<Dek> deks;
    for (const auto& keys : in_use) {
      const auto kept = std::find_if(set.deks.begin(), set.deks.end(),
                                     [&](const Dek& d) { return d.keys.cipher_text == keys.cipher_text; });
      deks.push_back(kept != set.deks.end() ? *kept : Dek{keys, unix_now(), 1, trust_});
    }
    set.deks = std::move(deks);
    set.stored = false;
  }
  if (store_ == nullptr || set.stored || set.deks.empty()) return;
  if (auto ok = store_->put_set(entry.digest, model, set.deks); !ok) {
    spdlog::warn("proxy: cannot save keys to the DEK store: {}", ok.error().to_string());
    return;
  }
  set.stored = true;
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
