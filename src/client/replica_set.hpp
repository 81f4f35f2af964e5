// The SDK's verified keys per model and replica, and the choice of the replica for each request
// (PROTOCOL.md section 7 "Several enclaves"). Private to the SDK.
//
// Design: one KeySet per model name ("" holds keys for any model: pre-generated keys that name no
// model, and keys made without one). Each replica's keys carry this client's count of requests in
// flight on them; pick() leases the usable replica (not within kKeyExpiryMargin of its notAfter)
// with the fewest, ties at random, so concurrent requests of one client spread. A model without
// keys of its own falls back to the "" set (its keys that may serve the model). Every install()
// bumps the set's generation: a request that failed on a replica asks for a refresh only while the
// generation it picked under is still current, so many requests failing at once (a replica killed
// under load) cause one re-attestation, not one each. All members are guarded by one mutex; the
// single-flight making of keys (which awaits) lives with the client and uses lock().
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rvenc/client/client.hpp"

namespace rvenc::client::detail {

struct Replica {
  std::shared_ptr<const EncryptionKeys> keys;
  std::size_t in_flight = 0;  // this client's requests on these keys; guarded by ReplicaSets' mutex
};

struct KeySet {
  std::vector<std::shared_ptr<Replica>> replicas;
  std::uint64_t generation = 0;  // bumped by every install()
};

class ReplicaSets;

// One request's hold on a replica: counts as in flight until destroyed.
class Lease {
 public:
  Lease(ReplicaSets& sets, std::shared_ptr<Replica> replica, std::uint64_t generation)
      : sets_(&sets), replica_(std::move(replica)), generation_(generation) {}
  Lease(Lease&& other) noexcept
      : sets_(other.sets_), replica_(std::move(other.replica_)), generation_(other.generation_) {}
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  Lease& operator=(Lease&&) = delete;
  ~Lease();

  [[nodiscard]] const EncryptionKeys& keys() const { return *replica_->keys; }
  // The generation of the requested model's set when this replica was picked.
  [[nodiscard]] std::uint64_t generation() const noexcept { return generation_; }

 private:
  ReplicaSets* sets_;
  std::shared_ptr<Replica> replica_;
  std::uint64_t generation_;
};

class ReplicaSets {
 public:
  // The mutex guarding everything here, for callers that combine several steps.
  [[nodiscard]] std::mutex& mutex() noexcept { return mutex_; }

  // Under lock: the replica for a request to `model` with the fewest requests in flight among the
  // usable ones at `now`, avoiding `avoid` while another is usable; nullopt when none is.
  [[nodiscard]] std::optional<Lease> pick_locked(std::string_view model, const std::optional<crypto::KeyId>& avoid,
                                                 std::int64_t now);
  // Under lock: the generation of `model`'s set (0 before its first install).
  [[nodiscard]] std::uint64_t generation_locked(std::string_view model) const;
  // Under lock: the key ids `model`'s set holds with usable keys at `now` (kept by a refresh).
  [[nodiscard]] std::vector<std::shared_ptr<Replica>> usable_locked(std::string_view model, std::int64_t now) const;
  // Under lock: replaces `model`'s set by `replicas` (kept ones keep their in-flight counts).
  void install_locked(std::string_view model, std::vector<std::shared_ptr<Replica>> replicas);

  // Puts pre-generated keys in the sets of the models they name (or "" when they name none).
  void add(const EncryptionKeys& keys);
  // Drops the replicas holding exactly these keys (a request on them failed) from every set; a
  // newer attestation's keys of the same key id stay (another request's re-attestation may have
  // brought them already).
  void forget(const EncryptionKeys& used);
  // Copies of `model`'s keys.
  [[nodiscard]] std::vector<EncryptionKeys> keys_of(std::string_view model) const;

 private:
  friend class Lease;
  mutable std::mutex mutex_;
  std::map<std::string, KeySet, std::less<>> sets_;
};

}  // namespace rvenc::client::detail
