// What the SQLite and PostgreSQL backends share: the key columns in the order both read them,
// the usage totals query (plain SQL both accept), and the per-key latest use of a usage batch.
//
// Design: private to src/store; only SQL text without user data (values are always bound).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "rvenc/store/store.hpp"

namespace rvenc::store::detail {

inline constexpr const char* kKeyColumns =
    "id, name, env, key_hash, last4, rpm, tpm, max_streams, created_at, last_used_at, revoked_at";

inline constexpr const char* kUsageTotalsSql =
    "SELECT k.id, k.name, count(u.request_id), coalesce(sum(u.prompt_tokens), 0), "
    "coalesce(sum(u.completion_tokens), 0), coalesce(sum(u.bytes_in), 0), coalesce(sum(u.bytes_out), 0) "
    "FROM api_keys k LEFT JOIN usage u ON u.key_id = k.id GROUP BY k.id ORDER BY k.created_at, k.id";

// Key id -> the latest use (unix seconds) among `rows`: one last_used_at update per key and batch.
[[nodiscard]] inline std::unordered_map<std::string, std::int64_t> latest_use_by_key(const std::vector<UsageRow>& rows) {
  std::unordered_map<std::string, std::int64_t> latest;
  for (const auto& row : rows) {
    auto& at = latest[row.key_id];
    at = std::max(at, row.at_ms / 1000);
  }
  return latest;
}

}  // namespace rvenc::store::detail
