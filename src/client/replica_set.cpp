#include "replica_set.hpp"

#include <algorithm>
#include <random>

namespace rvenc::client::detail {

namespace {
// Ties between equally loaded replicas are broken at random, so that many clients starting at
// once do not all pick the first replica.
std::size_t random_below(std::size_t n) {
  thread_local std::minstd_rand engine{std::random_device{}()};
  return std::uniform_int_distribution<std::size_t>(0, n - 1)(engine);
}
}  // namespace

Lease::~Lease() {
  if (!replica_) return;
  const std::lock_guard lock(sets_->mutex_);
  --replica_->in_flight;
}

std::optional<Lease> ReplicaSets::pick_locked(std::string_view model, const std::optional<crypto::KeyId>& avoid,
                                              std::int64_t now) {
  std::vector<std::shared_ptr<Replica>> candidates = usable_locked(model, now);
  if (candidates.empty() && !model.empty()) {
    for (auto& replica : usable_locked("", now))
      if (replica->keys->serves(model)) candidates.push_back(std::move(replica));
  }
  if (candidates.empty()) return std::nullopt;
  if (avoid && candidates.size() > 1)
    std::erase_if(candidates, [&](const auto& replica) { return replica->keys->key_id == *avoid; });
  const std::size_t fewest =
      (*std::min_element(candidates.begin(), candidates.end(),
                         [](const auto& a, const auto& b) { return a->in_flight < b->in_flight; }))->in_flight;
  std::erase_if(candidates, [&](const auto& replica) { return replica->in_flight != fewest; });
  std::shared_ptr<Replica> chosen = candidates[random_below(candidates.size())];
  ++chosen->in_flight;
  return Lease(*this, std::move(chosen), generation_locked(model));
}

std::uint64_t ReplicaSets::generation_locked(std::string_view model) const {
  const auto it = sets_.find(model);
  return it == sets_.end() ? 0 : it->second.generation;
}

std::vector<std::shared_ptr<Replica>> ReplicaSets::usable_locked(std::string_view model, std::int64_t now) const {
  std::vector<std::shared_ptr<Replica>> usable;
  if (const auto it = sets_.find(model); it != sets_.end())
    for (const auto& replica : it->second.replicas)
      if (replica->keys->usable_at(now)) usable.push_back(replica);
  return usable;
}

void ReplicaSets::install_locked(std::string_view model, std::vector<std::shared_ptr<Replica>> replicas) {
  auto it = sets_.find(model);
  if (it == sets_.end()) it = sets_.emplace(std::string(model), KeySet{}).first;
  it->second.replicas = std::move(replicas);
  ++it->second.generation;
}

void ReplicaSets::add(const EncryptionKeys& keys) {
  const std::lock_guard lock(mutex_);
  auto shared = std::make_shared<const EncryptionKeys>(keys);
  const auto put = [&](std::string_view model) {
    auto it = sets_.find(model);
    if (it == sets_.end()) it = sets_.emplace(std::string(model), KeySet{}).first;
    auto& replicas = it->second.replicas;
    std::erase_if(replicas, [&](const auto& replica) { return replica->keys->key_id == keys.key_id; });
    replicas.push_back(std::make_shared<Replica>(Replica{shared, 0}));
  };
  if (keys.models.empty()) put("");
  for (const auto& model : keys.models) put(model);
}

void ReplicaSets::forget(const EncryptionKeys& used) {
  const std::lock_guard lock(mutex_);
  for (auto& [model, set] : sets_)
    std::erase_if(set.replicas, [&](const auto& replica) { return replica->keys.get() == &used; });
}

std::vector<EncryptionKeys> ReplicaSets::keys_of(std::string_view model) const {
  const std::lock_guard lock(mutex_);
  std::vector<EncryptionKeys> copies;
  if (const auto it = sets_.find(model); it != sets_.end())
    for (const auto& replica : it->second.replicas) copies.push_back(*replica->keys);
  return copies;
}

}  // namespace rvenc::client::detail
