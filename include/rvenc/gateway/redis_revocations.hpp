// Key revocations pushed to every gateway through Redis pub/sub, so a revoked key is refused
// everywhere within a second without waiting for each gateway's database poll.
//
// Design: `rvenc keys revoke --redis URL` revokes in the database first, then publishes the key
// id (public, never the key) on kRevocationChannel. Each gateway's RevocationSubscriber calls
// on_revoked(key_id), and on_resync() after every (re)subscription, since messages published
// while it was disconnected are lost; the gateway answers both by re-reading its key cache from
// the database. The SQLite keys_version poll stays as the fallback when Redis is down.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "rvenc/gateway/redis_client.hpp"

namespace rvenc::gateway {

inline constexpr std::string_view kRevocationChannel = "rvenc:revocations";
// Key ids are "key_<16 hex>"; anything longer on the channel is ignored.
inline constexpr std::size_t kMaxKeyIdBytes = 64;

// Publishes `key_id`; returns how many subscribers (gateways) received it. Blocking, bounded by
// the options' timeouts.
[[nodiscard]] Result<std::int64_t> publish_revocation(const RedisOptions& options, const std::string& key_id);

class RevocationSubscriber {
 public:
  RevocationSubscriber(RedisOptions options, std::function<void(const std::string& key_id)> on_revoked,
                       std::function<void()> on_resync);

  [[nodiscard]] bool subscribed() const noexcept { return subscriber_.subscribed(); }
  bool wait_subscribed(std::chrono::milliseconds timeout) { return subscriber_.wait_subscribed(timeout); }

 private:
  RedisSubscriber subscriber_;
};

}  // namespace rvenc::gateway
