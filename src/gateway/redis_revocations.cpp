#include "rvenc/gateway/redis_revocations.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace rvenc::gateway {
namespace {

bool plausible_key_id(std::string_view id) {
  return !id.empty() && id.size() <= kMaxKeyIdBytes && std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

}  // namespace

Result<std::int64_t> publish_revocation(const RedisOptions& options, const std::string& key_id) {
  if (!plausible_key_id(key_id)) return fail(Errc::invalid_request, "not a key id");
  RedisClient client(options);
  auto reply = client.command_sync({"PUBLISH", std::string(kRevocationChannel), key_id});
  if (!reply) return std::unexpected(reply.error());
  if (reply->type != RedisValue::Type::integer)
    return fail(Errc::upstream_error, "PUBLISH failed: " + (reply->is_error() ? reply->text : std::string("odd reply")));
  return reply->integer;
}

RevocationSubscriber::RevocationSubscriber(RedisOptions options, std::function<void(const std::string&)> on_revoked,
                                           std::function<void()> on_resync)
    : subscriber_(std::move(options), std::string(kRevocationChannel),
                  RedisSubscriber::Callbacks{
                      .on_message =
                          [on_revoked = std::move(on_revoked)](const std::string& payload) {
                            if (!plausible_key_id(payload)) {
                              spdlog::warn("revocations: ignored a malformed message ({} bytes)", payload.size());
                              return;
                            }
                            spdlog::info("revocations: key {} revoked", payload);
                            on_revoked(payload);
                          },
                      .on_subscribed = std::move(on_resync)}) {}

}  // namespace rvenc::gateway
