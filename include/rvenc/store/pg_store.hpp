// The PostgreSQL backend of the key and usage store (libpq): one set of keys, one usage ledger
// and revocations for gateways on several hosts.
//
// Design: a small pool of connections (StoreOptions::pool_size), each opened with
// connect_timeout and a server-side statement_timeout, so no call blocks longer than those.
// Every statement has bound parameters (no SQL built from user strings); the fixed ones are
// server-side prepared statements, prepared once per pooled connection on first use (a new
// connection, as after a server restart, prepares them again).
// Migrations are versioned in a schema_migrations table and applied at open under a
// transaction-level advisory lock, so gateways starting together migrate once. A key change
// (insert, revoke, edit: a trigger) bumps meta.keys_version and sends NOTIFY rvenc_keys;
// watch_keys() LISTENs on its own connection and thread (reconnecting with backoff) so every
// gateway drops its cache well within a second. When the server cannot be reached the backend
// answers overloaded at once for a backoff period instead of waiting on a connect each call,
// and, while a watch runs, as long as its listener connection is down: callers on an event loop
// never wait for a dead server.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "rvenc/store/store.hpp"

namespace rvenc::store {

// The NOTIFY channel of key changes.
inline constexpr std::string_view kKeysChannel = "rvenc_keys";

// True for "postgresql://…" and "postgres://…".
[[nodiscard]] bool is_postgres_url(std::string_view location) noexcept;
// The URL with its password (in the user part or a password= parameter) replaced by "****";
// invalid_request when libpq cannot parse it.
[[nodiscard]] Result<std::string> masked_postgres_url(std::string_view url);
// Where a gateway on this database keeps its usage journals: `dir`/rvenc-pg-<hash of the masked URL>.
[[nodiscard]] std::filesystem::path postgres_journal_base(std::string_view url, const std::filesystem::path& dir);

// Connects (one connection, to check the server and migrate) and migrates to kSchemaVersion.
// overloaded when the server cannot be reached; internal_error for a schema newer than this build.
[[nodiscard]] Result<std::unique_ptr<Backend>> open_postgres(const std::string& url, const StoreOptions& options);

// Calls `on_change` (on its own thread) after every NOTIFY on kKeysChannel and after every
// (re)connect (changes may have been missed meanwhile). Stops when destroyed.
class PgKeyWatch {
 public:
  PgKeyWatch(std::string url, std::chrono::milliseconds connect_timeout, std::function<void()> on_change);
  ~PgKeyWatch();
  PgKeyWatch(const PgKeyWatch&) = delete;
  PgKeyWatch& operator=(const PgKeyWatch&) = delete;
  // Whether its listener connection is up now.
  [[nodiscard]] bool connected() const noexcept;
  // Whether its last connect failed or its connection broke (false while it first connects).
  [[nodiscard]] bool failing() const noexcept;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace rvenc::store
