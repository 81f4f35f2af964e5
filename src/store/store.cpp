#include "rvenc/store/store.hpp"

#include <boost/json.hpp>

#include "rvenc/common/clock.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/store/pg_store.hpp"
#include "rvenc/store/sqlite_store.hpp"

namespace rvenc::store {
namespace {

constexpr std::size_t kKeyIdRandomBytes = 8;
constexpr std::string_view kKeyIdPrefix = "key_";
constexpr std::string_view kSqliteScheme = "sqlite:";

Result<std::optional<ApiKeyRecord>> checked(Result<std::optional<ApiKeyRecord>> found, const KeyHash& hash) {
  // The index found it; the final word is a constant-time comparison of the full hash.
  if (found && *found && !crypto::constant_time_equal((*found)->hash, hash)) return std::optional<ApiKeyRecord>{};
  return found;
}

}  // namespace

Result<StoreLocation> parse_store_location(std::string_view spec) {
  if (spec.empty()) return fail(Errc::invalid_request, "the store location is empty: give a file path or postgresql://…");
  if (is_postgres_url(spec)) {
    auto display = masked_postgres_url(spec);
    if (!display) return std::unexpected(display.error());
    return StoreLocation{StoreLocation::Kind::postgres, std::string(spec), std::move(*display)};
  }
  if (spec.starts_with(kSqliteScheme)) spec.remove_prefix(kSqliteScheme.size());
  if (spec.empty()) return fail(Errc::invalid_request, "sqlite: needs a file path");
  return StoreLocation{StoreLocation::Kind::sqlite, std::string(spec), std::string(spec)};
}

Result<KeyStore> KeyStore::open(const std::string& location, OpenMode mode) {
  StoreOptions options;
  options.mode = mode;
  return open(location, options);
}

Result<KeyStore> KeyStore::open(const std::string& location, const StoreOptions& options) {
  auto where = parse_store_location(location);
  if (!where) return std::unexpected(where.error());
  if (where->kind == StoreLocation::Kind::postgres) {
    auto backend = open_postgres(where->target, options);
    if (!backend) return std::unexpected(backend.error());
    return KeyStore(std::move(*backend), where->display, postgres_journal_base(where->target, options.journal_dir));
  }
  auto backend = open_sqlite(where->target, options.mode);
  if (!backend) return std::unexpected(backend.error());
  // A database without a file (":memory:", URIs in tests) gets no journal.
  const std::string& path = where->target;
  std::filesystem::path journal;
  if (path != ":memory:" && !path.starts_with("file:")) journal = path;
  return KeyStore(std::move(*backend), where->display, std::move(journal));
}

KeyStore::KeyStore(std::unique_ptr<Backend> backend, std::string display, std::filesystem::path journal_base)
    : backend_(std::move(backend)), display_(std::move(display)), journal_base_(std::move(journal_base)) {}

KeyStore::KeyStore(KeyStore&&) noexcept = default;
KeyStore& KeyStore::operator=(KeyStore&&) noexcept = default;
KeyStore::~KeyStore() = default;

Result<CreatedKey> KeyStore::create_key(std::string_view name, KeyEnv env, const KeyLimits& limits) {
  if (name.empty()) return fail(Errc::invalid_request, "a key needs a name");
  if (limits.requests_per_minute < 0 || limits.tokens_per_minute < 0 || limits.max_streams < 0)
    return fail(Errc::invalid_request, "limits must be 0 (unlimited) or positive");
  CreatedKey created;
  created.key = generate_api_key(env);
  auto& r = created.record;
  r.id = std::string(kKeyIdPrefix) + to_hex(crypto::random_array<kKeyIdRandomBytes>());
  r.name = std::string(name);
  r.env = env;
  r.limits = limits;
  r.hash = hash_api_key(created.key);
  r.last4 = created.key.substr(created.key.size() - 4);
  r.created_at = unix_now();
  if (auto ok = backend_->insert_key(r); !ok) return std::unexpected(ok.error());
  return created;
}

Result<std::vector<ApiKeyRecord>> KeyStore::list_keys() { return backend_->list_keys(); }

Result<std::optional<ApiKeyRecord>> KeyStore::find_by_hash(const KeyHash& hash) {
  return checked(backend_->find_by_hash(hash), hash);
}

Result<ApiKeyRecord> KeyStore::revoke(std::string_view id_or_key) {
  // A full key is matched by its hash, anything else as an id.
  const bool is_key = key_env_of(id_or_key).has_value();
  const KeyHash hash = is_key ? hash_api_key(id_or_key) : KeyHash{};
  auto changed = backend_->revoke(is_key ? &hash : nullptr, id_or_key, unix_now());
  if (!changed) return std::unexpected(changed.error());
  auto found = *changed ? (is_key ? find_by_hash(hash) : backend_->find_by_id(id_or_key))
                        : Result<std::optional<ApiKeyRecord>>{std::nullopt};
  if (!found) return std::unexpected(found.error());
  if (!*found)
    return fail(Errc::not_found, is_key ? "no key matches the given key" : "no key with id " + std::string(id_or_key));
  return std::move(**found);
}

Result<std::int64_t> KeyStore::keys_version() { return backend_->keys_version(); }
Status KeyStore::record_usage(const std::vector<UsageRow>& rows) {
  if (rows.empty()) return {};
  return backend_->record_usage(rows);
}
Result<std::vector<UsageTotals>> KeyStore::usage_totals() { return backend_->usage_totals(); }
Result<std::vector<UsageRow>> KeyStore::recent_usage(std::size_t limit) { return backend_->recent_usage(limit); }
Result<int> KeyStore::schema_version() { return backend_->schema_version(); }
bool KeyStore::reachable() const noexcept { return backend_->reachable(); }
void KeyStore::watch_keys(std::function<void()> on_change) { backend_->watch_keys(std::move(on_change)); }

boost::json::object to_json(const UsageRow& row) {
  return boost::json::object{{"requestId", row.request_id},
                             {"keyId", row.key_id},
                             {"atMs", row.at_ms},
                             {"path", row.path},
                             {"status", row.status},
                             {"promptTokens", row.prompt_tokens},
                             {"completionTokens", row.completion_tokens},
                             {"bytesIn", row.bytes_in},
                             {"bytesOut", row.bytes_out},
                             {"durationMs", row.duration_ms},
                             {"final", row.final}};
}

std::optional<UsageRow> usage_row_from_json(const boost::json::value& value) {
  const auto* object = value.if_object();
  if (!object) return std::nullopt;
  bool complete = true;
  const auto text = [&](std::string_view name) {
    const auto* v = object->if_contains(name);
    if (v && v->is_string()) return std::string(v->get_string());
    complete = false;
    return std::string();
  };
  const auto number = [&](std::string_view name) -> std::int64_t {
    const auto* v = object->if_contains(name);
    if (v && v->is_int64()) return v->get_int64();
    complete = false;
    return 0;
  };
  UsageRow row{.request_id = text("requestId"),
               .key_id = text("keyId"),
               .at_ms = number("atMs"),
               .path = text("path"),
               .status = static_cast<int>(number("status")),
               .prompt_tokens = number("promptTokens"),
               .completion_tokens = number("completionTokens"),
               .bytes_in = number("bytesIn"),
               .bytes_out = number("bytesOut"),
               .duration_ms = number("durationMs")};
  if (!complete) return std::nullopt;
  // Journals written before provisional rows have no "final": their rows were final.
  if (const auto* final = object->if_contains("final")) {
    if (!final->is_bool()) return std::nullopt;
    row.final = final->get_bool();
  }
  return row;
}

}  // namespace rvenc::store
