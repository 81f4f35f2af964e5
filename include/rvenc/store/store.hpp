// The gateway's key and usage store: API keys (hashes only), per-request usage rows, and a
// version counter that changes whenever a key is added, revoked or edited, so every gateway
// sharing the store can drop its cache promptly. Two backends: SQLite (one file, one host) and
// PostgreSQL (several gateways on several hosts).
//
// Design: KeyStore is a movable handle over one Backend (the interface below); `open` picks the
// backend from the location: `postgresql://…` / `postgres://…` is PostgreSQL, a path or
// `sqlite:PATH` is SQLite. What both share (key generation, validation, the constant-time hash
// check, the JSON of a usage row) lives in the handle, so the backends only move rows. Both
// apply versioned migrations when opened and refuse a schema newer than this build. Usage rows
// are keyed by request id: a row already written is never counted twice, and a final row
// replaces its provisional one (never the reverse). Errors are rvenc::Error values
// (internal_error for database failures, overloaded when the store cannot be reached,
// not_found for unknown keys).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/fwd.hpp>

#include "rvenc/common/error.hpp"
#include "rvenc/store/api_key.hpp"

namespace rvenc::store {

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

// Where the store is, parsed from `--db` / RVENC_DB.
struct StoreLocation {
  enum class Kind { sqlite, postgres };
  Kind kind = Kind::sqlite;
  std::string target;   // the SQLite path, or the PostgreSQL URL as given (may hold a password)
  std::string display;  // for logs and messages: the path, or the URL with its password masked
};
// A `postgresql://` or `postgres://` URL is PostgreSQL; `sqlite:PATH` or anything else a SQLite
// path. invalid_request for an empty location or a PostgreSQL URL libpq cannot parse.
[[nodiscard]] Result<StoreLocation> parse_store_location(std::string_view spec);

// What a backend does; KeyStore is what the rest of rvenc holds. A backend is used by one thread
// at a time unless it says otherwise (the PostgreSQL one is thread-safe: a connection pool).
class Backend {
 public:
  virtual ~Backend() = default;
  [[nodiscard]] virtual Status insert_key(const ApiKeyRecord& record) = 0;
  [[nodiscard]] virtual Result<std::vector<ApiKeyRecord>> list_keys() = 0;
  [[nodiscard]] virtual Result<std::optional<ApiKeyRecord>> find_by_hash(const KeyHash& hash) = 0;
  [[nodiscard]] virtual Result<std::optional<ApiKeyRecord>> find_by_id(std::string_view id) = 0;
  // Sets revoked_at (kept when already set) of the key with this hash, or else this id; false
  // when no key matched.
  [[nodiscard]] virtual Result<bool> revoke(const KeyHash* hash, std::string_view id, std::int64_t now) = 0;
  [[nodiscard]] virtual Result<std::int64_t> keys_version() = 0;
  // One transaction: new rows inserted, a final row replaces a provisional one, anything else
  // with a known request id ignored; the keys' last_used_at moved forward.
  [[nodiscard]] virtual Status record_usage(const std::vector<UsageRow>& rows) = 0;
  [[nodiscard]] virtual Result<std::vector<UsageTotals>> usage_totals() = 0;
  [[nodiscard]] virtual Result<std::vector<UsageRow>> recent_usage(std::size_t limit) = 0;
  [[nodiscard]] virtual Result<int> schema_version() = 0;
  // False while the store is known unreachable (a PostgreSQL server down); SQLite: always true.
  [[nodiscard]] virtual bool reachable() const noexcept { return true; }
  // Calls `on_change` (from any thread) soon after another process changes a key, where the
  // backend can tell (PostgreSQL: LISTEN/NOTIFY); nullptr stops it. Default: nothing (polling
  // keys_version is the way).
  virtual void watch_keys(std::function<void()> on_change) { (void)on_change; }
};

struct StoreOptions {
  enum class OpenMode { create_if_missing, existing_only };
  OpenMode mode = OpenMode::create_if_missing;
  // PostgreSQL: connections in the pool, and the timeouts of a connection and of a statement.
  std::size_t pool_size = 4;
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds statement_timeout{5000};
  // PostgreSQL: the local directory for the usage journals (SQLite: beside the database file).
  std::filesystem::path journal_dir = ".";
};

class KeyStore {
 public:
  using OpenMode = StoreOptions::OpenMode;
  // Opens the store at `location` (see parse_store_location) and migrates it to kSchemaVersion.
  // SQLite with existing_only: not_found "database PATH does not exist" and no file created.
  [[nodiscard]] static Result<KeyStore> open(const std::string& location, OpenMode mode = OpenMode::create_if_missing);
  [[nodiscard]] static Result<KeyStore> open(const std::string& location, const StoreOptions& options);
  // A handle over a backend made elsewhere (tests). `journal_base`: see journal_base().
  KeyStore(std::unique_ptr<Backend> backend, std::string display, std::filesystem::path journal_base);

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
  [[nodiscard]] Result<int> schema_version();
  [[nodiscard]] bool reachable() const noexcept;
  // See Backend::watch_keys. Stop it (nullptr) before what `on_change` touches goes away.
  void watch_keys(std::function<void()> on_change);

  // The location for logs (a URL's password masked).
  [[nodiscard]] const std::string& path() const noexcept { return display_; }
  // The usage journals' base name ("<base>.usage-<random>.journal" beside it); empty: none (an
  // in-memory SQLite database).
  [[nodiscard]] const std::filesystem::path& journal_base() const noexcept { return journal_base_; }

 private:
  std::unique_ptr<Backend> backend_;
  std::string display_;
  std::filesystem::path journal_base_;
};

}  // namespace rvenc::store
