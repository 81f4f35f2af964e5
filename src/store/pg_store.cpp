#include "rvenc/store/pg_store.hpp"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bitset>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <span>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include <spdlog/spdlog.h>

#include "rvenc/common/hex.hpp"
#include "store_sql.hpp"

namespace rvenc::store {
namespace {

using detail::kKeyColumns;
using detail::kUsageTotalsSql;
using detail::latest_use_by_key;

constexpr std::string_view kMask = "****";
// Down: calls fail at once for this long, doubling up to the maximum, before one tries again.
constexpr std::chrono::milliseconds kFirstBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{5000};
// Any constant shared by every rvenc gateway: serializes their migrations.
constexpr std::int64_t kMigrationLockId = 0x7276656e63;  // "rvenc"
constexpr std::size_t kJournalNameHashBytes = 8;

// Version 1 (the SQLite schema's versions 1 and 2 together). The trigger bumps keys_version
// and notifies only for changes that matter to a gateway's cache (not for last_used_at).
constexpr const char* kPgSchemaV1 = R"sql(
CREATE TABLE meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO meta(name, value) VALUES ('keys_version', 0);
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  env TEXT NOT NULL CHECK (env IN ('live', 'test')),
  key_hash BYTEA NOT NULL UNIQUE,
  last4 TEXT NOT NULL,
  rpm BIGINT NOT NULL DEFAULT 0,
  tpm BIGINT NOT NULL DEFAULT 0,
  max_streams BIGINT NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  last_used_at BIGINT,
  revoked_at BIGINT
);
CREATE TABLE usage (
  request_id TEXT PRIMARY KEY,
  key_id TEXT NOT NULL REFERENCES api_keys(id),
  at_ms BIGINT NOT NULL,
  path TEXT NOT NULL,
  status INTEGER NOT NULL,
  prompt_tokens BIGINT NOT NULL DEFAULT 0,
  completion_tokens BIGINT NOT NULL DEFAULT 0,
  bytes_in BIGINT NOT NULL DEFAULT 0,
  bytes_out BIGINT NOT NULL DEFAULT 0,
  duration_ms BIGINT NOT NULL DEFAULT 0,
  final BOOLEAN NOT NULL DEFAULT TRUE
);
CREATE INDEX usage_by_key ON usage(key_id, at_ms);
CREATE FUNCTION rvenc_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE meta SET value = value + 1 WHERE name = 'keys_version';
  PERFORM pg_notify('rvenc_keys', '');
  RETURN NULL;
END $$;
CREATE TRIGGER api_keys_inserted AFTER INSERT OR DELETE ON api_keys FOR EACH ROW EXECUTE FUNCTION rvenc_keys_changed();
CREATE TRIGGER api_keys_changed AFTER UPDATE OF name, env, key_hash, rpm, tpm, max_streams, revoked_at ON api_keys
  FOR EACH ROW EXECUTE FUNCTION rvenc_keys_changed();
)sql";

struct Migration {
  int version;
  const char* sql;
};
// Append only: a released migration never changes. The last one's version is kPgSchemaVersion.
constexpr Migration kMigrations[] = {{1, kPgSchemaV1}};
constexpr int kPgSchemaVersion = 1;

struct ConnDeleter {
  void operator()(PGconn* conn) const noexcept { PQfinish(conn); }
};
struct ResultDeleter {
  void operator()(PGresult* result) const noexcept { PQclear(result); }
};
using Conn = std::unique_ptr<PGconn, ConnDeleter>;
using PgResult = std::unique_ptr<PGresult, ResultDeleter>;

// Bound parameters, all sent as text (bytea as \x hex); nullopt is NULL.
class Params {
 public:
  Params& text(std::string_view v) {
    values_.emplace_back(v);
    return *this;
  }
  Params& integer(std::int64_t v) { return text(std::to_string(v)); }
  Params& boolean(bool v) { return text(v ? "true" : "false"); }
  Params& bytes(std::span<const std::uint8_t> v) { return text("\\x" + to_hex(v)); }
  [[nodiscard]] std::vector<const char*> pointers() const {
    std::vector<const char*> out;
    for (const auto& v : values_) out.push_back(v.c_str());
    return out;
  }
  [[nodiscard]] int size() const noexcept { return static_cast<int>(values_.size()); }

 private:
  std::vector<std::string> values_;
};

// A PostgreSQL array literal, bound as one text parameter ("{…}"): text elements double-quoted
// with " and \ escaped, so any string is data; numbers and booleans as their text.
class ArrayLiteral {
 public:
  void text(std::string_view v) {
    separate();
    out_ += '"';
    for (const char c : v) {
      if (c == '"' || c == '\\') out_ += '\\';
      out_ += c;
    }
    out_ += '"';
  }
  void integer(std::int64_t v) {
    separate();
    out_ += std::to_string(v);
  }
  void boolean(bool v) {
    separate();
    out_ += v ? 't' : 'f';
  }
  [[nodiscard]] std::string str() const { return out_ + '}'; }

 private:
  void separate() {
    if (out_.size() > 1) out_ += ',';
  }
  std::string out_ = "{";
};

// Rows per usage INSERT (a writer's batch is up to 4096; rows kept through an outage, more).
constexpr std::size_t kUsageRowsPerStatement = 2048;

// One row per request id, as applying `rows` one by one would leave it (a later row replaces an
// earlier provisional one; nothing replaces a final one), in first-seen order: one INSERT … ON
// CONFLICT may not touch a row twice.
std::vector<const UsageRow*> one_row_per_request(const std::vector<UsageRow>& rows) {
  std::vector<const UsageRow*> out;
  std::unordered_map<std::string_view, std::size_t> at;
  for (const auto& row : rows) {
    const auto [it, fresh] = at.try_emplace(row.request_id, out.size());
    if (fresh) out.push_back(&row);
    else if (!out[it->second]->final) out[it->second] = &row;
  }
  return out;
}

// The store's fixed statements: each is prepared once per connection (PQprepare, under its name)
// on first use there, then run with PQexecPrepared (parsed and planned once, not per call).
enum class Stmt : std::size_t {
  schema_version,
  insert_key,
  list_keys,
  find_by_hash,
  find_by_id,
  revoke_by_hash,
  revoke_by_id,
  keys_version,
  insert_usage,
  touch_keys,
  usage_totals,
  recent_usage,
  count,
};
constexpr std::size_t kStatementCount = static_cast<std::size_t>(Stmt::count);
using PreparedSet = std::bitset<kStatementCount>;

struct Statement {
  std::string name;  // "rvenc_…": stable, one per statement
  std::string sql;   // constant: parameters are $N, never spliced
};

const Statement& statement(Stmt which) {
  static const std::array<Statement, kStatementCount> table = [] {
    std::array<Statement, kStatementCount> t;
    const auto set = [&](Stmt s, const char* name, std::string sql) {
      t[static_cast<std::size_t>(s)] = {std::string("rvenc_") + name, std::move(sql)};
    };
    const std::string select_keys = std::string("SELECT ") + kKeyColumns + " FROM api_keys ";
    set(Stmt::schema_version, "schema_version", "SELECT coalesce(max(version), 0) FROM schema_migrations");
    set(Stmt::insert_key, "insert_key",
        "INSERT INTO api_keys(id, name, env, key_hash, last4, rpm, tpm, max_streams, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)");
    set(Stmt::list_keys, "list_keys", select_keys + "ORDER BY created_at, id");
    set(Stmt::find_by_hash, "find_by_hash", select_keys + "WHERE key_hash = $1");
    set(Stmt::find_by_id, "find_by_id", select_keys + "WHERE id = $1");
    set(Stmt::revoke_by_hash, "revoke_by_hash",
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $1) WHERE key_hash = $2");
    set(Stmt::revoke_by_id, "revoke_by_id", "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $1) WHERE id = $2");
    set(Stmt::keys_version, "keys_version", "SELECT value FROM meta WHERE name = 'keys_version'");
    // The rows as arrays, unnested into one INSERT: a round trip per statement, not per row. A
    // final row replaces its provisional one; nothing replaces a final row (a journal replayed
    // twice, or by two gateways, changes nothing).
    set(Stmt::insert_usage, "insert_usage",
        "INSERT INTO usage(request_id, key_id, at_ms, path, status, prompt_tokens, completion_tokens, "
        "bytes_in, bytes_out, duration_ms, final) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::integer[], $6::bigint[], "
        "$7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::boolean[]) "
        "ON CONFLICT (request_id) DO UPDATE SET status = excluded.status, "
        "prompt_tokens = excluded.prompt_tokens, completion_tokens = excluded.completion_tokens, "
        "bytes_in = excluded.bytes_in, bytes_out = excluded.bytes_out, duration_ms = excluded.duration_ms, "
        "final = excluded.final WHERE NOT usage.final");
    set(Stmt::touch_keys, "touch_keys",
        "UPDATE api_keys k SET last_used_at = greatest(coalesce(k.last_used_at, 0), u.at) "
        "FROM unnest($1::text[], $2::bigint[]) AS u(id, at) WHERE k.id = u.id");
    set(Stmt::usage_totals, "usage_totals", kUsageTotalsSql);
    set(Stmt::recent_usage, "recent_usage",
        "SELECT request_id, key_id, at_ms, path, status, prompt_tokens, completion_tokens, bytes_in, "
        "bytes_out, duration_ms, final FROM usage ORDER BY at_ms DESC, request_id DESC LIMIT $1");
    return t;
  }();
  return table[static_cast<std::size_t>(which)];
}

std::string first_line(const char* message) {
  std::string text = message ? message : "";
  if (const auto end = text.find('\n'); end != std::string::npos) text.resize(end);
  return text.empty() ? "unknown error" : text;
}

std::int64_t integer_at(const PGresult* r, int row, int col) {
  const char* v = PQgetvalue(r, row, col);
  std::int64_t out = 0;
  std::from_chars(v, v + std::strlen(v), out);
  return out;
}

std::optional<std::int64_t> optional_at(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col)) return std::nullopt;
  return integer_at(r, row, col);
}

std::string text_at(const PGresult* r, int row, int col) {
  return std::string(PQgetvalue(r, row, col), static_cast<std::size_t>(PQgetlength(r, row, col)));
}

ApiKeyRecord key_at(const PGresult* r, int row) {
  ApiKeyRecord k;
  k.id = text_at(r, row, 0);
  k.name = text_at(r, row, 1);
  k.env = env_from_name(text_at(r, row, 2)).value_or(KeyEnv::live);
  const std::string hash = text_at(r, row, 3);  // bytea text output: \x + hex
  if (hash.starts_with("\\x")) (void)from_hex_into(std::string_view(hash).substr(2), k.hash, "key_hash");
  k.last4 = text_at(r, row, 4);
  k.limits = {integer_at(r, row, 5), integer_at(r, row, 6), integer_at(r, row, 7)};
  k.created_at = integer_at(r, row, 8);
  k.last_used_at = optional_at(r, row, 9);
  k.revoked_at = optional_at(r, row, 10);
  return k;
}

// The connection parameters: the URL, then our timeouts (later keywords win over the URL's).
Conn connect(const std::string& url, const StoreOptions& options) {
  const std::string timeout = std::to_string(std::max<std::int64_t>(
      1, std::chrono::duration_cast<std::chrono::seconds>(options.connect_timeout + std::chrono::milliseconds(999)).count()));
  // Notices ("relation … already exists, skipping" at each migration check) are not worth a line.
  const std::string server_options = "-c statement_timeout=" + std::to_string(options.statement_timeout.count()) +
                                     " -c client_min_messages=warning";
  // A server that vanishes without closing the connection (a partition) fails a call after this.
  const std::string user_timeout = std::to_string((options.connect_timeout + options.statement_timeout).count());
  const char* keywords[] = {"dbname", "connect_timeout", "options", "application_name", "tcp_user_timeout", nullptr};
  const char* values[] = {url.c_str(), timeout.c_str(), server_options.c_str(), "rvenc", user_timeout.c_str(), nullptr};
  return Conn(PQconnectdbParams(keywords, values, /*expand_dbname=*/1));
}

Error unreachable(std::string_view why) {
  return Error{Errc::overloaded, "the PostgreSQL store is not reachable: " + std::string(why)};
}

}  // namespace

bool is_postgres_url(std::string_view location) noexcept {
  return location.starts_with("postgresql://") || location.starts_with("postgres://");
}

Result<std::string> masked_postgres_url(std::string_view url) {
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(std::string(url).c_str(), &error);
  if (!parsed) {
    const std::string why = first_line(error);
    PQfreemem(error);
    // libpq's message may quote the URL: never repeat it (a password could be in it).
    return fail(Errc::invalid_request, "the PostgreSQL URL cannot be parsed (" +
                                           std::string(why.find("://") == std::string::npos ? why : "invalid URI") + ")");
  }
  PQconninfoFree(parsed);
  std::string out(url);
  const auto authority = out.find("://") + 3;
  const auto at = out.find('@', authority);
  const auto slash = out.find('/', authority);
  if (at != std::string::npos && (slash == std::string::npos || at < slash)) {
    const auto colon = out.find(':', authority);
    if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, kMask);
  }
  // password=… among the query parameters.
  for (auto p = out.find("password=", authority); p != std::string::npos; p = out.find("password=", p + 1)) {
    const auto start = p + std::string_view("password=").size();
    const auto end = std::min(out.find('&', start), out.size());
    out.replace(start, end - start, kMask);
  }
  return out;
}

std::filesystem::path postgres_journal_base(std::string_view url, const std::filesystem::path& dir) {
  const std::string masked = masked_postgres_url(url).value_or(std::string(url.substr(0, url.find('@'))));
  const auto digest = crypto::sha256(std::span(reinterpret_cast<const std::uint8_t*>(masked.data()), masked.size()));
  return dir / ("rvenc-pg-" + to_hex(std::span(digest).first(kJournalNameHashBytes)));
}

// ---- the watch: LISTEN on its own connection and thread --------------------------------------

struct PgKeyWatch::State {
  std::string url;
  std::chrono::milliseconds connect_timeout;
  std::function<void()> on_change;
  std::atomic<bool> connected{false};
  std::atomic<bool> failing{false};
  std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
  std::thread thread;

  // Waits up to `d`; false when stopping.
  bool pause(std::chrono::milliseconds d) {
    std::unique_lock lock(mutex);
    return !wake.wait_for(lock, d, [&] { return stopping; });
  }
  bool stopped() {
    std::lock_guard lock(mutex);
    return stopping;
  }
  void run();
  // Listens on `conn` until it breaks or the watch stops.
  void listen(PGconn* conn);
};

void PgKeyWatch::State::run() {
  std::chrono::milliseconds backoff = kFirstBackoff;
  StoreOptions options;
  options.connect_timeout = connect_timeout;
  while (!stopped()) {
    Conn conn = connect(url, options);
    PgResult listened(PQstatus(conn.get()) == CONNECTION_OK
                          ? PQexec(conn.get(), "LISTEN rvenc_keys")
                          : nullptr);
    if (!listened || PQresultStatus(listened.get()) != PGRES_COMMAND_OK) {
      spdlog::warn("store: key watch cannot listen ({}); retrying in {} ms", first_line(PQerrorMessage(conn.get())),
                   backoff.count());
      failing = true;
      if (!pause(backoff)) return;
      backoff = std::min(backoff * 2, kMaxBackoff);
      continue;
    }
    backoff = kFirstBackoff;
    connected = true;
    failing = false;
    on_change();  // whatever changed while it was not listening
    listen(conn.get());
    connected = false;
    failing = true;
    if (!stopped()) spdlog::warn("store: key watch connection lost; reconnecting");
  }
}

void PgKeyWatch::State::listen(PGconn* conn) {
  constexpr int kPollMs = 200;  // how soon a stop is seen
  while (!stopped()) {
    pollfd fd{PQsocket(conn), POLLIN, 0};
    const int ready = ::poll(&fd, 1, kPollMs);
    if (ready < 0 && errno != EINTR) return;
    if (ready <= 0) continue;
    if (!PQconsumeInput(conn)) return;  // the connection broke
    bool changed = false;
    while (PGnotify* n = PQnotifies(conn)) {
      changed = true;
      PQfreemem(n);
    }
    if (changed) on_change();
  }
}

PgKeyWatch::PgKeyWatch(std::string url, std::chrono::milliseconds connect_timeout, std::function<void()> on_change)
    : state_(std::make_shared<State>()) {
  state_->url = std::move(url);
  state_->connect_timeout = connect_timeout;
  state_->on_change = std::move(on_change);
  state_->thread = std::thread([state = state_] { state->run(); });
}

PgKeyWatch::~PgKeyWatch() {
  {
    std::lock_guard lock(state_->mutex);
    state_->stopping = true;
  }
  state_->wake.notify_all();
  state_->thread.join();
}

bool PgKeyWatch::connected() const noexcept { return state_->connected; }
bool PgKeyWatch::failing() const noexcept { return state_->failing; }

// ---- the backend -------------------------------------------------------------------------------

namespace {

class PgBackend final : public Backend {
 public:
  PgBackend(std::string url, StoreOptions options) : url_(std::move(url)), options_(std::move(options)) {}
  ~PgBackend() override { watch_.reset(); }

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
  bool reachable() const noexcept override;
  void watch_keys(std::function<void()> on_change) override;

 private:
  // A pooled connection, returned to the pool when dropped (closed instead when it broke).
  // A connection with the statements prepared on it (they live and die with its session).
  struct Pooled {
    Conn conn;
    PreparedSet prepared;
  };
  class Lease {
   public:
    Lease(PgBackend& owner, Pooled pooled, bool reused)
        : owner_(&owner), pooled_(std::move(pooled)), reused_(reused) {}
    Lease(Lease&& other) noexcept = default;
    ~Lease() {
      if (owner_ && pooled_.conn) owner_->release(std::move(pooled_));
    }
    [[nodiscard]] PGconn* get() const noexcept { return pooled_.conn.get(); }
    [[nodiscard]] PreparedSet& prepared() noexcept { return pooled_.prepared; }
    // Taken from the pool (the server may have closed it since), not made for this call.
    [[nodiscard]] bool reused() const noexcept { return reused_; }

   private:
    PgBackend* owner_;
    Pooled pooled_;
    bool reused_ = false;
  };

  [[nodiscard]] Result<Lease> acquire();
  void release(Pooled pooled);
  void mark_down();
  // A connection found broken: the pooled ones are as stale (the server restarted or went away).
  void drop_idle();
  // The error of a failed call on `conn` (`result` may be null): unreachable when the connection
  // broke (the idle ones are dropped too), else internal_error with the server's message.
  [[nodiscard]] Error failure(PGconn* conn, const PGresult* result);
  // Runs one unprepared statement (transaction control, migrations); the result when its status
  // is `expected`.
  [[nodiscard]] Result<PgResult> run(PGconn* conn, const char* sql, const Params& params, ExecStatusType expected);
  // Runs a fixed statement on `lease`, preparing it there first if this connection has not yet.
  [[nodiscard]] Result<PgResult> run(Lease& lease, Stmt stmt, const Params& params, ExecStatusType expected);
  // Runs a fixed statement on a pooled connection.
  [[nodiscard]] Result<PgResult> run(Stmt stmt, const Params& params, ExecStatusType expected = PGRES_TUPLES_OK);
  [[nodiscard]] Status run_usage(Lease& lease, const std::vector<UsageRow>& rows);
  [[nodiscard]] Result<std::optional<ApiKeyRecord>> find_one(Stmt stmt, const Params& params);

  std::string url_;
  StoreOptions options_;
  std::mutex mutex_;
  std::condition_variable returned_;
  std::vector<Pooled> idle_;     // guarded by mutex_
  std::size_t open_ = 0;         // connections made and not closed, guarded by mutex_
  std::chrono::steady_clock::time_point retry_at_{};  // guarded by mutex_
  std::chrono::milliseconds backoff_{0};              // guarded by mutex_
  std::atomic<bool> down_{false};
  std::unique_ptr<PgKeyWatch> watch_;
};

bool PgBackend::reachable() const noexcept {
  if (watch_ && watch_->failing()) return false;
  return !down_;
}

void PgBackend::watch_keys(std::function<void()> on_change) {
  watch_.reset();
  if (on_change) watch_ = std::make_unique<PgKeyWatch>(url_, options_.connect_timeout, std::move(on_change));
}

void PgBackend::mark_down() {
  std::lock_guard lock(mutex_);
  backoff_ = std::min(std::max(backoff_ * 2, kFirstBackoff), kMaxBackoff);
  retry_at_ = std::chrono::steady_clock::now() + backoff_;
  down_ = true;
  // Their server went away: none of the idle connections is worth keeping.
  open_ -= std::min(open_, idle_.size());
  idle_.clear();
}

void PgBackend::drop_idle() {
  std::lock_guard lock(mutex_);
  open_ -= std::min(open_, idle_.size());
  idle_.clear();
}

Result<PgBackend::Lease> PgBackend::acquire() {
  std::unique_lock lock(mutex_);
  // While a watch runs, its connection says whether the server is there: no caller (an event
  // loop, say) waits on a connect to a dead server.
  if (watch_ && watch_->failing()) return std::unexpected(unreachable("its listener connection is down"));
  if (down_ && std::chrono::steady_clock::now() < retry_at_) return std::unexpected(unreachable("retrying soon"));
  const bool got = returned_.wait_for(lock, options_.connect_timeout,
                                      [&] { return !idle_.empty() || open_ < options_.pool_size; });
  if (!got) return std::unexpected(unreachable("every pooled connection is busy"));
  if (!idle_.empty()) {
    Pooled pooled = std::move(idle_.back());
    idle_.pop_back();
    return Lease(*this, std::move(pooled), /*reused=*/true);
  }
  ++open_;
  lock.unlock();
  Conn conn = connect(url_, options_);
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    const std::string why = first_line(PQerrorMessage(conn.get()));
    {
      std::lock_guard relock(mutex_);
      --open_;  // the one this call tried to make
    }
    mark_down();
    returned_.notify_one();
    return std::unexpected(unreachable(why));
  }
  {
    std::lock_guard relock(mutex_);
    down_ = false;
    backoff_ = std::chrono::milliseconds{0};
  }
  return Lease(*this, Pooled{std::move(conn), {}}, /*reused=*/false);  // a new session: nothing prepared
}

void PgBackend::release(Pooled pooled) {
  {
    std::lock_guard lock(mutex_);
    PGconn* conn = pooled.conn.get();
    if (PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) == PQTRANS_IDLE && !down_) {
      idle_.push_back(std::move(pooled));
    } else if (open_ > 0) {
      --open_;
    }
  }
  returned_.notify_one();
}

Error PgBackend::failure(PGconn* conn, const PGresult* result) {
  if (PQstatus(conn) != CONNECTION_OK) {
    drop_idle();  // the next call connects afresh (and backs off if that fails)
    return unreachable(first_line(PQerrorMessage(conn)));
  }
  return Error{Errc::internal_error,
               "database: " + first_line(result ? PQresultErrorMessage(result) : PQerrorMessage(conn))};
}

Result<PgResult> PgBackend::run(PGconn* conn, const char* sql, const Params& params, ExecStatusType expected) {
  const auto values = params.pointers();
  PgResult result(PQexecParams(conn, sql, params.size(), nullptr, values.data(), nullptr, nullptr, 0));
  if (result && PQresultStatus(result.get()) == expected) return result;
  return std::unexpected(failure(conn, result.get()));
}

Result<PgResult> PgBackend::run(Lease& lease, Stmt stmt, const Params& params, ExecStatusType expected) {
  const Statement& s = statement(stmt);
  PGconn* conn = lease.get();
  const auto index = static_cast<std::size_t>(stmt);
  if (!lease.prepared().test(index)) {
    // Parameter types inferred by the server, as PQexecParams did.
    PgResult prepared(PQprepare(conn, s.name.c_str(), s.sql.c_str(), 0, nullptr));
    if (!prepared || PQresultStatus(prepared.get()) != PGRES_COMMAND_OK)
      return std::unexpected(failure(conn, prepared.get()));
    lease.prepared().set(index);
  }
  const auto values = params.pointers();
  PgResult result(PQexecPrepared(conn, s.name.c_str(), params.size(), values.data(), nullptr, nullptr, 0));
  if (result && PQresultStatus(result.get()) == expected) return result;
  return std::unexpected(failure(conn, result.get()));
}

Result<PgResult> PgBackend::run(Stmt stmt, const Params& params, ExecStatusType expected) {
  {
    auto lease = acquire();
    if (!lease) return std::unexpected(lease.error());
    auto result = run(*lease, stmt, params, expected);
    if (result || !lease->reused() || PQstatus(lease->get()) == CONNECTION_OK) return result;
  }  // the closed connection is given back (and closed) first: a pool of one can retry too
  // A pooled connection the server closed (it restarted): once more, on a new connection (whose
  // session has nothing prepared yet: the statement is prepared there again).
  auto fresh = acquire();
  if (!fresh) return std::unexpected(fresh.error());
  return run(*fresh, stmt, params, expected);
}

Status PgBackend::migrate() {
  auto lease = acquire();
  if (!lease) return std::unexpected(lease.error());
  PGconn* conn = lease->get();
  const auto rollback = [&](Error error) -> Status {
    PQclear(PQexec(conn, "ROLLBACK"));
    return std::unexpected(std::move(error));
  };
  if (auto ok = run(conn, "BEGIN", {}, PGRES_COMMAND_OK); !ok) return std::unexpected(ok.error());
  if (auto ok = run(conn, "SELECT pg_advisory_xact_lock($1)", Params().integer(kMigrationLockId), PGRES_TUPLES_OK); !ok)
    return rollback(ok.error());
  if (auto ok = run(conn, "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                          "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())", {}, PGRES_COMMAND_OK); !ok)
    return rollback(ok.error());
  auto current = run(conn, "SELECT coalesce(max(version), 0) FROM schema_migrations", {}, PGRES_TUPLES_OK);
  if (!current) return rollback(current.error());
  const std::int64_t version = integer_at(current->get(), 0, 0);
  if (version > kPgSchemaVersion)
    return rollback(Error{Errc::internal_error, "the PostgreSQL store has schema version " + std::to_string(version) +
                                                    ", newer than this rvenc understands (" +
                                                    std::to_string(kPgSchemaVersion) + ")"});
  for (const auto& m : kMigrations) {
    if (m.version <= version) continue;
    // Several statements: the simple query protocol (constant SQL, no parameters).
    PgResult applied(PQexec(conn, m.sql));
    if (PQresultStatus(applied.get()) != PGRES_COMMAND_OK)
      return rollback(Error{Errc::internal_error, "database: migration " + std::to_string(m.version) + ": " +
                                                      first_line(PQresultErrorMessage(applied.get()))});
    if (auto ok = run(conn, "INSERT INTO schema_migrations(version) VALUES ($1)", Params().integer(m.version),
                      PGRES_COMMAND_OK); !ok)
      return rollback(ok.error());
    spdlog::info("store: PostgreSQL schema migrated to version {}", m.version);
  }
  if (auto ok = run(conn, "COMMIT", {}, PGRES_COMMAND_OK); !ok) return std::unexpected(ok.error());
  return {};
}

Result<int> PgBackend::schema_version() {
  auto r = run(Stmt::schema_version, {});
  if (!r) return std::unexpected(r.error());
  return static_cast<int>(integer_at(r->get(), 0, 0));
}

Status PgBackend::insert_key(const ApiKeyRecord& k) {
  auto r = run(Stmt::insert_key,
               Params()
                   .text(k.id)
                   .text(k.name)
                   .text(env_name(k.env))
                   .bytes(k.hash)
                   .text(k.last4)
                   .integer(k.limits.requests_per_minute)
                   .integer(k.limits.tokens_per_minute)
                   .integer(k.limits.max_streams)
                   .integer(k.created_at),
               PGRES_COMMAND_OK);
  if (!r) return std::unexpected(r.error());
  return {};
}

Result<std::vector<ApiKeyRecord>> PgBackend::list_keys() {
  auto r = run(Stmt::list_keys, {});
  if (!r) return std::unexpected(r.error());
  std::vector<ApiKeyRecord> keys;
  for (int i = 0; i < PQntuples(r->get()); ++i) keys.push_back(key_at(r->get(), i));
  return keys;
}

Result<std::optional<ApiKeyRecord>> PgBackend::find_one(Stmt stmt, const Params& params) {
  auto r = run(stmt, params);
  if (!r) return std::unexpected(r.error());
  if (PQntuples(r->get()) == 0) return std::optional<ApiKeyRecord>{};
  return std::optional<ApiKeyRecord>{key_at(r->get(), 0)};
}

Result<std::optional<ApiKeyRecord>> PgBackend::find_by_hash(const KeyHash& hash) {
  return find_one(Stmt::find_by_hash, Params().bytes(hash));
}

Result<std::optional<ApiKeyRecord>> PgBackend::find_by_id(std::string_view id) {
  return find_one(Stmt::find_by_id, Params().text(id));
}

Result<bool> PgBackend::revoke(const KeyHash* hash, std::string_view id, std::int64_t now) {
  Params params;
  params.integer(now);
  if (hash) params.bytes(*hash);
  else params.text(id);
  auto r = run(hash ? Stmt::revoke_by_hash : Stmt::revoke_by_id, params, PGRES_COMMAND_OK);
  if (!r) return std::unexpected(r.error());
  return std::string_view(PQcmdTuples(r->get())) != "0";
}

Result<std::int64_t> PgBackend::keys_version() {
  auto r = run(Stmt::keys_version, {});
  if (!r) return std::unexpected(r.error());
  if (PQntuples(r->get()) != 1) return fail(Errc::internal_error, "database: keys_version is missing");
  return integer_at(r->get(), 0, 0);
}

Status PgBackend::run_usage(Lease& lease, const std::vector<UsageRow>& rows) {
  // One prepared INSERT per up to kUsageRowsPerStatement rows (the columns bound as arrays), then
  // one UPDATE of the keys' last_used_at.
  if (rows.empty()) return {};
  const auto unique = one_row_per_request(rows);
  for (std::size_t start = 0; start < unique.size(); start += kUsageRowsPerStatement) {
    std::array<ArrayLiteral, 11> columns;
    for (std::size_t i = start; i < std::min(unique.size(), start + kUsageRowsPerStatement); ++i) {
      const UsageRow& row = *unique[i];
      columns[0].text(row.request_id);
      columns[1].text(row.key_id);
      columns[2].integer(row.at_ms);
      columns[3].text(row.path);
      columns[4].integer(row.status);
      columns[5].integer(row.prompt_tokens);
      columns[6].integer(row.completion_tokens);
      columns[7].integer(row.bytes_in);
      columns[8].integer(row.bytes_out);
      columns[9].integer(row.duration_ms);
      columns[10].boolean(row.final);
    }
    Params params;
    for (const auto& column : columns) params.text(column.str());
    if (auto ok = run(lease, Stmt::insert_usage, params, PGRES_COMMAND_OK); !ok) return std::unexpected(ok.error());
  }
  ArrayLiteral key_ids;
  ArrayLiteral used_at;
  for (const auto& [key_id, at_s] : latest_use_by_key(rows)) {
    key_ids.text(key_id);
    used_at.integer(at_s);
  }
  auto ok = run(lease, Stmt::touch_keys, Params().text(key_ids.str()).text(used_at.str()), PGRES_COMMAND_OK);
  if (!ok) return std::unexpected(ok.error());
  return {};
}

Status PgBackend::record_usage(const std::vector<UsageRow>& rows) {
  auto lease = acquire();
  if (!lease) return std::unexpected(lease.error());
  PGconn* conn = lease->get();
  if (auto ok = run(conn, "BEGIN", {}, PGRES_COMMAND_OK); !ok) return std::unexpected(ok.error());
  if (auto ok = run_usage(*lease, rows); !ok) {
    PQclear(PQexec(conn, "ROLLBACK"));
    return ok;
  }
  if (auto ok = run(conn, "COMMIT", {}, PGRES_COMMAND_OK); !ok) return std::unexpected(ok.error());
  return {};
}

Result<std::vector<UsageTotals>> PgBackend::usage_totals() {
  auto r = run(Stmt::usage_totals, {});
  if (!r) return std::unexpected(r.error());
  std::vector<UsageTotals> totals;
  const PGresult* res = r->get();
  for (int i = 0; i < PQntuples(res); ++i)
    totals.push_back({text_at(res, i, 0), text_at(res, i, 1), integer_at(res, i, 2), integer_at(res, i, 3),
                      integer_at(res, i, 4), integer_at(res, i, 5), integer_at(res, i, 6)});
  return totals;
}

Result<std::vector<UsageRow>> PgBackend::recent_usage(std::size_t limit) {
  auto r = run(Stmt::recent_usage,
               Params().integer(static_cast<std::int64_t>(limit)));
  if (!r) return std::unexpected(r.error());
  std::vector<UsageRow> rows;
  const PGresult* res = r->get();
  for (int i = 0; i < PQntuples(res); ++i)
    rows.push_back({text_at(res, i, 0), text_at(res, i, 1), integer_at(res, i, 2), text_at(res, i, 3),
                    static_cast<int>(integer_at(res, i, 4)), integer_at(res, i, 5), integer_at(res, i, 6),
                    integer_at(res, i, 7), integer_at(res, i, 8), integer_at(res, i, 9),
                    text_at(res, i, 10) == "t"});
  return rows;
}

}  // namespace

Result<std::unique_ptr<Backend>> open_postgres(const std::string& url, const StoreOptions& options) {
  if (options.pool_size == 0) return fail(Errc::invalid_request, "the PostgreSQL pool needs at least one connection");
  auto backend = std::make_unique<PgBackend>(url, options);
  if (auto ok = backend->migrate(); !ok) return std::unexpected(ok.error());
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace rvenc::store
