// The gateway's SQLite database: API keys (hashes only), per-request usage rows, and a version
// counter that changes whenever a key is revoked or edited, so every gateway sharing the file
// can drop its cache promptly.
//
// Design: one KeyStore is one SQLite connection (WAL mode, busy timeout, schema versioned with
// PRAGMA user_version). A connection is used by one thread at a time; the gateway opens one for
// lookups on its event loop and one for its background writer. Errors are rvenc::Error values
// (internal_error for database failures, not_found for unknown keys).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/fwd.hpp>

#include "rvenc/common/error.hpp"
#include "rvenc/gateway/api_key.hpp"

struct sqlite3;

namespace rvenc::gateway {

inline constexpr int kSchemaVersion = 2;  // 2: usage.final
inline constexpr std::chrono::milliseconds kBusyTimeout{5000};

struct KeyLimits {
  std::int64_t requests_per_minute = 0;  // 0 = unlimited
  std::int64_t tokens_per_minute = 0;    // 0 = unlimited
  std::int64_t max_streams = 0;          // concurrent streams, 0 = unlimited
};

struct ApiKeyRecord {
  std::string id;  // "key_<16 hex>", public: logs, X-Rvenc-Tenant, revoke
  std::string name;
  KeyEnv env = KeyEnv::live;
  KeyLimits limits;
  KeyHash hash{};
  std::string last4;
  std::int64_t created_at = 0;  // unix seconds
  std::optional<std::int64_t> last_used_at;
  std::optional<std::int64_t> revoked_at;
  [[nodiscard]] bool revoked() const noexcept { return revoked_at.has_value(); }
};

struct CreatedKey {
  ApiKeyRecord record;
  std::string key;  // the plaintext key: shown once, never stored
};

// One finished request, as written to the usage table.
struct UsageRow {
  std::string request_id;
  std::string key_id;
  std::int64_t at_ms = 0;  // unix milliseconds when the request arrived
  std::string path;
  int status = 0;
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  std::int64_t bytes_in = 0;
  std::int64_t bytes_out = 0;
  std::int64_t duration_ms = 0;
  // False for the row written when a stream starts (its prompt): the request's final row
  // replaces it, and nothing replaces a final row (one row per request id).
  bool final = true;
};

// A row as JSON (`rvenc keys usage --json`, the usage journal): requestId, keyId, atMs, path,
// status, promptTokens, completionTokens, bytesIn, bytesOut, durationMs, final (absent: true).
[[nodiscard]] boost::json::object to_json(const UsageRow& row);
// nullopt unless `value` is such an object with every field of the right type.
[[nodiscard]] std::optional<UsageRow> usage_row_from_json(const boost::json::value& value);

struct UsageTotals {
  std::string key_id;
  std::string name;
  std::int64_t requests = 0;
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  std::int64_t bytes_in = 0;
  std::int64_t bytes_out = 0;
};

class KeyStore {
 public:
  enum class OpenMode { create_if_missing, existing_only };
  // Opens (creating if needed, unless existing_only) the database and migrates it to
  // kSchemaVersion. existing_only: not_found "database PATH does not exist" and no file created.
  [[nodiscard]] static Result<KeyStore> open(const std::string& path, OpenMode mode = OpenMode::create_if_missing);

  KeyStore(KeyStore&&) noexcept;
  KeyStore& operator=(KeyStore&&) noexcept;
  ~KeyStore();

  [[nodiscard]] Result<CreatedKey> create_key(std::string_view name, KeyEnv env, const KeyLimits& limits);
  [[nodiscard]] Result<std::vector<ApiKeyRecord>> list_keys();
  // By hash; nullopt when no key has it. The stored hash is compared in constant time.
  [[nodiscard]] Result<std::optional<ApiKeyRecord>> find_by_hash(const KeyHash& hash);
  // `id_or_key` is a key id or the full key. not_found when neither matches. Revoking twice is fine.
  [[nodiscard]] Result<ApiKeyRecord> revoke(std::string_view id_or_key);
  // Changes whenever a key is added, revoked or its limits change (also by another process).
  [[nodiscard]] Result<std::int64_t> keys_version();

  // Inserts the rows in one transaction (a row whose request_id exists already is ignored, so
  // a retry never counts twice) and moves the keys' last_used_at forward.
  [[nodiscard]] Status record_usage(const std::vector<UsageRow>& rows);
  [[nodiscard]] Result<std::vector<UsageTotals>> usage_totals();
  [[nodiscard]] Result<std::vector<UsageRow>> recent_usage(std::size_t limit);

  [[nodiscard]] const std::string& path() const noexcept { return path_; }

 private:
  KeyStore(sqlite3* db, std::string path) noexcept;
  [[nodiscard]] Status migrate();

  sqlite3* db_ = nullptr;
  std::string path_;
  // record_usage's statements, prepared at its first call and kept (it runs for every batch).
  struct UsageStatements;
  std::unique_ptr<UsageStatements> usage_statements_;
};

}  // namespace rvenc::gateway
