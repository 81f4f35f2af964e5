#include "rvenc/store/sqlite_store.hpp"

#include "store_sql.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <functional>
#include <chrono>
#include <filesystem>
#include <thread>
#include <unordered_map>
#include <utility>


namespace rvenc::store {
namespace {

using detail::kKeyColumns;
using detail::kUsageTotalsSql;
using detail::latest_use_by_key;

// Version 1 of the schema. The trigger bumps keys_version only for changes that matter to a
// gateway's cache (not for last_used_at), so usage writes never flush caches.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta(name, value) VALUES ('keys_version', 0);
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  env TEXT NOT NULL CHECK (env IN ('live', 'test')),
  key_hash BLOB NOT NULL UNIQUE,
  last4 TEXT NOT NULL,
  rpm INTEGER NOT NULL DEFAULT 0,
  tpm INTEGER NOT NULL DEFAULT 0,
  max_streams INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  last_used_at INTEGER,
  revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS usage (
  request_id TEXT PRIMARY KEY,
  key_id TEXT NOT NULL REFERENCES api_keys(id),
  at_ms INTEGER NOT NULL,
  path TEXT NOT NULL,
  status INTEGER NOT NULL,
  prompt_tokens INTEGER NOT NULL DEFAULT 0,
  completion_tokens INTEGER NOT NULL DEFAULT 0,
  bytes_in INTEGER NOT NULL DEFAULT 0,
  bytes_out INTEGER NOT NULL DEFAULT 0,
  duration_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS usage_by_key ON usage(key_id, at_ms);
CREATE TRIGGER IF NOT EXISTS api_keys_inserted AFTER INSERT ON api_keys
BEGIN UPDATE meta SET value = value + 1 WHERE name = 'keys_version'; END;
CREATE TRIGGER IF NOT EXISTS api_keys_changed AFTER UPDATE OF name, env, key_hash, rpm, tpm, max_streams, revoked_at ON api_keys
BEGIN UPDATE meta SET value = value + 1 WHERE name = 'keys_version'; END;
CREATE TRIGGER IF NOT EXISTS api_keys_deleted AFTER DELETE ON api_keys
BEGIN UPDATE meta SET value = value + 1 WHERE name = 'keys_version'; END;
)sql";

// Version 2: provisional usage rows (PROTOCOL.md section 4); the rows written before were final.
constexpr const char* kSchemaV2 = "ALTER TABLE usage ADD COLUMN final INTEGER NOT NULL DEFAULT 1;";

Error db_error(sqlite3* db, std::string_view what) {
  return Error{Errc::internal_error, "database: " + std::string(what) + ": " + sqlite3_errmsg(db)};
}

// A prepared statement, finalized on scope exit.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  [[nodiscard]] bool ok() const noexcept { return rc_ == SQLITE_OK; }
  void bind(int i, std::string_view text) { sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT); }
  void bind(int i, std::int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void bind_blob(int i, std::span<const std::uint8_t> b) {
    sqlite3_bind_blob(stmt_, i, b.data(), static_cast<int>(b.size()), SQLITE_TRANSIENT);
  }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int step() { return sqlite3_step(stmt_); }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  [[nodiscard]] std::int64_t integer(int col) const { return sqlite3_column_int64(stmt_, col); }
  [[nodiscard]] bool is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  [[nodiscard]] std::string text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))) : std::string();
  }
  [[nodiscard]] std::span<const std::uint8_t> blob(int col) const {
    const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_, col));
    return {p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))};
  }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

Status exec(sqlite3* db, const char* sql) {
  char* message = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &message) != SQLITE_OK) {
    Error error{Errc::internal_error, std::string("database: ") + (message ? message : "exec failed")};
    sqlite3_free(message);
    return std::unexpected(error);
  }
  return {};
}

ApiKeyRecord read_key(const Statement& s) {
  ApiKeyRecord r;
  r.id = s.text(0);
  r.name = s.text(1);
  r.env = env_from_name(s.text(2)).value_or(KeyEnv::live);
  const auto hash = s.blob(3);
  if (hash.size() == r.hash.size()) std::copy(hash.begin(), hash.end(), r.hash.begin());
  r.last4 = s.text(4);
  r.limits = {s.integer(5), s.integer(6), s.integer(7)};
  r.created_at = s.integer(8);
  if (!s.is_null(9)) r.last_used_at = s.integer(9);
  if (!s.is_null(10)) r.revoked_at = s.integer(10);
  return r;
}

constexpr std::chrono::milliseconds kBusyRetryInterval{20};


class SqliteBackend final : public Backend {
 public:
  SqliteBackend(sqlite3* db, std::string path) noexcept : db_(db), path_(std::move(path)) {}
  ~SqliteBackend() override {
    usage_statements_.reset();  // statements are finalized before their connection closes
    sqlite3_close(db_);
  }
  SqliteBackend(const SqliteBackend&) = delete;
  SqliteBackend& operator=(const SqliteBackend&) = delete;

  [[nodiscard]] Status migrate();
  Status insert_key(const ApiKeyRecord& record) override;
  Result<std::vector<ApiKeyRecord>> list_keys() override;
  Result<std::optional<ApiKeyRecord>> find_by_hash(const KeyHash& hash) override;
  Result<std::optional<ApiKeyRecord>> find_by_id(std::string_view id) override;
  Result<bool> revoke(const KeyHash* hash, std::string_view id, std::int64_t now) override;
  Result<std::int64_t> keys_version() override;
  Status record_usage(const std::vector<UsageRow>& rows) override;
  Result<std::vector<UsageTotals>> usage_totals() override;
  Result<std::vector<UsageRow>> recent_usage(std::size_t limit) override;
  Result<int> schema_version() override;

 private:
  [[nodiscard]] Result<std::optional<ApiKeyRecord>> find_one(const char* where, const std::function<void(Statement&)>& bind);

  sqlite3* db_ = nullptr;
  std::string path_;
  // record_usage's statements, prepared at its first call and kept (it runs for every batch).
  struct UsageStatements;
  std::unique_ptr<UsageStatements> usage_statements_;
};

struct SqliteBackend::UsageStatements {
  Statement insert;
  Statement touch;
  explicit UsageStatements(sqlite3* db)
      : insert(db,
               // A final row replaces its provisional one; nothing replaces a final row (a journal
               // replayed twice changes nothing).
               "INSERT INTO usage(request_id, key_id, at_ms, path, status, prompt_tokens, completion_tokens, "
               "bytes_in, bytes_out, duration_ms, final) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
               "ON CONFLICT(request_id) DO UPDATE SET status = excluded.status, "
               "prompt_tokens = excluded.prompt_tokens, completion_tokens = excluded.completion_tokens, "
               "bytes_in = excluded.bytes_in, bytes_out = excluded.bytes_out, duration_ms = excluded.duration_ms, "
               "final = excluded.final WHERE usage.final = 0"),
        touch(db, "UPDATE api_keys SET last_used_at = max(coalesce(last_used_at, 0), ?) WHERE id = ?") {}
};

Status SqliteBackend::migrate() {
  if (auto ok = exec(db_, "BEGIN IMMEDIATE"); !ok) return ok;
  Statement version(db_, "PRAGMA user_version");
  if (!version.ok() || version.step() != SQLITE_ROW) {
    (void)exec(db_, "ROLLBACK");
    return std::unexpected(db_error(db_, "reading the schema version"));
  }
  const std::int64_t current = version.integer(0);
  version.reset();
  if (current > kSchemaVersion) {
    (void)exec(db_, "ROLLBACK");
    return fail(Errc::internal_error, "database " + path_ + " has schema version " + std::to_string(current) +
                                          ", newer than this rvenc understands (" + std::to_string(kSchemaVersion) + ")");
  }
  for (const auto& [step, sql] : {std::pair{1, kSchemaV1}, std::pair{2, kSchemaV2}}) {
    if (current >= step) continue;
    if (auto ok = exec(db_, sql); !ok) {
      (void)exec(db_, "ROLLBACK");
      return ok;
    }
  }
  const std::string set_version = "PRAGMA user_version = " + std::to_string(kSchemaVersion);
  if (auto ok = exec(db_, set_version.c_str()); !ok) {
    (void)exec(db_, "ROLLBACK");
    return ok;
  }
  return exec(db_, "COMMIT");
}

Result<int> SqliteBackend::schema_version() {
  Statement version(db_, "PRAGMA user_version");
  if (!version.ok() || version.step() != SQLITE_ROW) return std::unexpected(db_error(db_, "reading the schema version"));
  return static_cast<int>(version.integer(0));
}

Status SqliteBackend::insert_key(const ApiKeyRecord& r) {
  Statement s(db_, "INSERT INTO api_keys(id, name, env, key_hash, last4, rpm, tpm, max_streams, created_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  if (!s.ok()) return std::unexpected(db_error(db_, "preparing insert"));
  s.bind(1, r.id);
  s.bind(2, r.name);
  s.bind(3, env_name(r.env));
  s.bind_blob(4, r.hash);
  s.bind(5, r.last4);
  s.bind(6, r.limits.requests_per_minute);
  s.bind(7, r.limits.tokens_per_minute);
  s.bind(8, r.limits.max_streams);
  s.bind(9, r.created_at);
  if (s.step() != SQLITE_DONE) return std::unexpected(db_error(db_, "inserting the key"));
  return {};
}

Result<std::vector<ApiKeyRecord>> SqliteBackend::list_keys() {
  const std::string sql = std::string("SELECT ") + kKeyColumns + " FROM api_keys ORDER BY created_at, id";
  Statement s(db_, sql.c_str());
  if (!s.ok()) return std::unexpected(db_error(db_, "preparing list"));
  std::vector<ApiKeyRecord> keys;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) keys.push_back(read_key(s));
  if (rc != SQLITE_DONE) return std::unexpected(db_error(db_, "listing keys"));
  return keys;
}

Result<std::optional<ApiKeyRecord>> SqliteBackend::find_one(const char* where,
                                                            const std::function<void(Statement&)>& bind) {
  const std::string sql = std::string("SELECT ") + kKeyColumns + " FROM api_keys WHERE " + where;
  Statement s(db_, sql.c_str());
  if (!s.ok()) return std::unexpected(db_error(db_, "preparing lookup"));
  bind(s);
  const int rc = s.step();
  if (rc == SQLITE_DONE) return std::optional<ApiKeyRecord>{};
  if (rc != SQLITE_ROW) return std::unexpected(db_error(db_, "looking up a key"));
  return std::optional<ApiKeyRecord>{read_key(s)};
}

Result<std::optional<ApiKeyRecord>> SqliteBackend::find_by_hash(const KeyHash& hash) {
  return find_one("key_hash = ?", [&](Statement& s) { s.bind_blob(1, hash); });
}

Result<std::optional<ApiKeyRecord>> SqliteBackend::find_by_id(std::string_view id) {
  return find_one("id = ?", [&](Statement& s) { s.bind(1, id); });
}

Result<bool> SqliteBackend::revoke(const KeyHash* hash, std::string_view id, std::int64_t now) {
  Statement s(db_, hash ? "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE key_hash = ?"
                        : "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?");
  if (!s.ok()) return std::unexpected(db_error(db_, "preparing revoke"));
  s.bind(1, now);
  if (hash) {
    s.bind_blob(2, *hash);
  } else {
    s.bind(2, id);
  }
  if (s.step() != SQLITE_DONE) return std::unexpected(db_error(db_, "revoking"));
  return sqlite3_changes(db_) > 0;
}

Result<std::int64_t> SqliteBackend::keys_version() {
  Statement s(db_, "SELECT value FROM meta WHERE name = 'keys_version'");
  if (!s.ok() || s.step() != SQLITE_ROW) return std::unexpected(db_error(db_, "reading keys_version"));
  return s.integer(0);
}

Status SqliteBackend::record_usage(const std::vector<UsageRow>& rows) {
  if (rows.empty()) return {};
  if (!usage_statements_) usage_statements_ = std::make_unique<UsageStatements>(db_);
  auto& [insert, touch] = *usage_statements_;
  if (!insert.ok() || !touch.ok()) {
    Error error = db_error(db_, "preparing usage insert");
    usage_statements_.reset();
    return std::unexpected(error);
  }
  if (auto ok = exec(db_, "BEGIN IMMEDIATE"); !ok) return ok;
  // A failed step leaves its statement to be reset before the next batch uses it.
  const auto abort_batch = [&](const char* what) -> Status {
    Error error = db_error(db_, what);
    insert.reset();
    touch.reset();
    (void)exec(db_, "ROLLBACK");
    return std::unexpected(error);
  };
  for (const auto& row : rows) {
    insert.bind(1, row.request_id);
    insert.bind(2, row.key_id);
    insert.bind(3, row.at_ms);
    insert.bind(4, row.path);
    insert.bind(5, static_cast<std::int64_t>(row.status));
    insert.bind(6, row.prompt_tokens);
    insert.bind(7, row.completion_tokens);
    insert.bind(8, row.bytes_in);
    insert.bind(9, row.bytes_out);
    insert.bind(10, row.duration_ms);
    insert.bind(11, static_cast<std::int64_t>(row.final ? 1 : 0));
    if (insert.step() != SQLITE_DONE) return abort_batch("writing usage");
    insert.reset();
  }
  // One update per key and batch, not per request.
  for (const auto& [key_id, at_s] : latest_use_by_key(rows)) {
    touch.bind(1, at_s);
    touch.bind(2, key_id);
    if (touch.step() != SQLITE_DONE) return abort_batch("writing usage");
    touch.reset();
  }
  return exec(db_, "COMMIT");
}

Result<std::vector<UsageTotals>> SqliteBackend::usage_totals() {
  Statement s(db_, kUsageTotalsSql);
  if (!s.ok()) return std::unexpected(db_error(db_, "preparing usage totals"));
  std::vector<UsageTotals> totals;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW)
    totals.push_back({s.text(0), s.text(1), s.integer(2), s.integer(3), s.integer(4), s.integer(5), s.integer(6)});
  if (rc != SQLITE_DONE) return std::unexpected(db_error(db_, "reading usage totals"));
  return totals;
}

Result<std::vector<UsageRow>> SqliteBackend::recent_usage(std::size_t limit) {
  Statement s(db_,
              "SELECT request_id, key_id, at_ms, path, status, prompt_tokens, completion_tokens, bytes_in, bytes_out, "
              "duration_ms, final FROM usage ORDER BY at_ms DESC, rowid DESC LIMIT ?");
  if (!s.ok()) return std::unexpected(db_error(db_, "preparing recent usage"));
  s.bind(1, static_cast<std::int64_t>(limit));
  std::vector<UsageRow> rows;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW)
    rows.push_back({s.text(0), s.text(1), s.integer(2), s.text(3), static_cast<int>(s.integer(4)), s.integer(5),
                    s.integer(6), s.integer(7), s.integer(8), s.integer(9), s.integer(10) != 0});
  if (rc != SQLITE_DONE) return std::unexpected(db_error(db_, "reading recent usage"));
  return rows;
}

}  // namespace

Result<std::unique_ptr<Backend>> open_sqlite(const std::string& path, StoreOptions::OpenMode mode) {
  sqlite3* db = nullptr;
  const int create = mode == StoreOptions::OpenMode::create_if_missing ? SQLITE_OPEN_CREATE : 0;
  const int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | create | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc == SQLITE_CANTOPEN && create == 0 && !std::filesystem::exists(path)) {
    sqlite3_close(db);
    return fail(Errc::not_found, "database " + path + " does not exist");
  }
  if (rc != SQLITE_OK) {
    std::string message = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return fail(Errc::internal_error, "cannot open database " + path + ": " + message);
  }
  auto backend = std::make_unique<SqliteBackend>(db, path);
  sqlite3_busy_timeout(db, static_cast<int>(kBusyTimeout.count()));
  // Switching a fresh database to WAL while another process opens it can answer SQLITE_BUSY
  // without consulting the busy handler: retry within the same busy budget.
  const auto deadline = std::chrono::steady_clock::now() + kBusyTimeout;
  Status pragmas;
  while (!(pragmas = exec(db, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL;")) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(kBusyRetryInterval);
  }
  if (!pragmas) return std::unexpected(pragmas.error());
  if (auto ok = backend->migrate(); !ok) return std::unexpected(ok.error());
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace rvenc::store
