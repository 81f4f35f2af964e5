// rvenc keys create|list|revoke|usage|migrate: API key administration on the gateway's store.
//
// The store is --db FILE or --db postgresql://… (RVENC_DB), else DIR/rvenc.db with --data DIR, else the "db" of ./.rvenc/stack.json
// (as the client commands find a stack). Only `create` may create the file, and says so: a typo in
// --db must not silently list an empty new database.
#include <chrono>
#include <ctime>
#include <filesystem>
#include <iostream>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include "command.hpp"
#include "table.hpp"
#include "rvenc/client/settings.hpp"
#include "rvenc/gateway/key_store.hpp"
#include "rvenc/gateway/redis_revocations.hpp"

namespace rvenc::cli {
namespace {

constexpr std::size_t kRecentUsageRows = 20;

std::string format_time(std::optional<std::int64_t> unix_seconds) {
  if (!unix_seconds) return "-";
  const std::time_t t = static_cast<std::time_t>(*unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string limit_text(std::int64_t v) { return v > 0 ? std::to_string(v) : "unlimited"; }

boost::json::value optional_json(std::optional<std::int64_t> v) {
  return v ? boost::json::value(*v) : boost::json::value(nullptr);
}

int open_failed(const Error& error) {
  std::cerr << "rvenc keys: " << error.message << "\n";
  return kExitFailure;
}

struct KeysOptions {
  std::string db;
  std::string data;
  std::string name;
  bool test = false;
  std::int64_t rpm = 0;
  std::int64_t tpm = 0;
  std::int64_t max_streams = 0;
  bool json = false;
  std::string id;
  std::string redis;  // revoke: publish the revocation there too
};

// The database file the flags name (see the top of this file); nullopt after saying why.
std::optional<std::string> database_path(const KeysOptions& o) {
  if (!o.db.empty()) return o.db;
  if (!o.data.empty()) return (std::filesystem::path(o.data) / "rvenc.db").string();
  const auto file = std::filesystem::path(client::kDefaultDataDir) / client::kStackFileName;
  auto stack = client::read_stack_file(file);
  if (!stack) {
    std::cerr << "rvenc keys: " << stack.error().message << "\n";
    return std::nullopt;
  }
  if (*stack && !(*stack)->db.empty()) return (*stack)->db;
  std::cerr << "rvenc keys: which database? give --db FILE or --data DIR (" << file.string()
            << (*stack ? " names no db" : " does not exist") << ")\n";
  return std::nullopt;
}

// The store the flags name, or the exit code after the reason went to stderr. Only `create`
// (create_if_missing) makes a new file, and then says so.
std::expected<gateway::KeyStore, int> open_store(const KeysOptions& o, gateway::KeyStore::OpenMode mode) {
  const auto path = database_path(o);
  if (!path) return std::unexpected(kExitUsage);
  const auto where = store::parse_store_location(*path);
  if (!where) return std::unexpected(open_failed(where.error()));
  const bool is_file = where->kind == store::StoreLocation::Kind::sqlite;
  const bool existed = !is_file || std::filesystem::exists(where->target);
  auto store = gateway::KeyStore::open(*path, mode);
  if (!store) return std::unexpected(open_failed(store.error()));
  if (!existed) std::cerr << "rvenc keys: created a new key database at " << *path << "\n";
  return std::move(*store);
}

int run_create(const KeysOptions& o) {
  auto store = open_store(o, gateway::KeyStore::OpenMode::create_if_missing);
  if (!store) return store.error();
  auto created = store->create_key(o.name, o.test ? gateway::KeyEnv::test : gateway::KeyEnv::live,
                                   {o.rpm, o.tpm, o.max_streams});
  if (!created) return open_failed(created.error());
  // The key alone on stdout (scripts capture it); the facts on stderr.
  std::cout << created->key << std::endl;
  std::cerr << "created key " << created->record.id << " (" << created->record.name << ", "
            << gateway::env_name(created->record.env) << ", rpm " << limit_text(o.rpm) << ", tpm "
            << limit_text(o.tpm) << ", max streams " << limit_text(o.max_streams)
            << "); it is shown only this once, the database keeps its hash\n";
  return kExitOk;
}

int run_list(const KeysOptions& o) {
  auto store = open_store(o, gateway::KeyStore::OpenMode::existing_only);
  if (!store) return store.error();
  auto keys = store->list_keys();
  if (!keys) return open_failed(keys.error());
  if (o.json) {
    boost::json::array out;
    for (const auto& k : *keys)
      out.push_back(boost::json::object{{"id", k.id},
                                        {"name", k.name},
                                        {"env", gateway::env_name(k.env)},
                                        {"rpm", k.limits.requests_per_minute},
                                        {"tpm", k.limits.tokens_per_minute},
                                        {"maxStreams", k.limits.max_streams},
                                        {"createdAt", k.created_at},
                                        {"lastUsedAt", optional_json(k.last_used_at)},
                                        {"key", "…" + k.last4},
                                        {"revoked", k.revoked()},
                                        {"revokedAt", optional_json(k.revoked_at)}});
    std::cout << boost::json::serialize(out) << std::endl;
    return kExitOk;
  }
  using Align = TextTable::Align;
  TextTable table({{"ID"}, {"NAME"}, {"ENV"}, {"RPM", Align::right}, {"TPM", Align::right}, {"STREAMS", Align::right},
                   {"CREATED"}, {"LAST USED"}, {"KEY"}, {"REVOKED"}});
  for (const auto& k : *keys)
    table.add({k.id, k.name, std::string(gateway::env_name(k.env)), limit_text(k.limits.requests_per_minute),
               limit_text(k.limits.tokens_per_minute), limit_text(k.limits.max_streams), format_time(k.created_at),
               format_time(k.last_used_at), "…" + k.last4, k.revoked() ? format_time(k.revoked_at) : "no"});
  table.print(std::cout);
  return kExitOk;
}

int run_revoke(const KeysOptions& o) {
  auto store = open_store(o, gateway::KeyStore::OpenMode::existing_only);
  if (!store) return store.error();
  auto revoked = store->revoke(o.id);
  if (!revoked) {
    // Never echo the argument: it may be a full key.
    std::cerr << "rvenc keys revoke: " << (revoked.error().code == Errc::not_found ? "no such key" : revoked.error().message)
              << "\n";
    return kExitFailure;
  }
  std::cout << "revoked " << revoked->id << " (" << revoked->name << ", key …" << revoked->last4 << ")" << std::endl;
  if (!o.redis.empty()) {
    auto url = gateway::parse_redis_url(o.redis);
    auto sent = url ? gateway::publish_revocation(gateway::RedisOptions{.url = *url}, revoked->id)
                    : Result<std::int64_t>(std::unexpected(url.error()));
    // The revocation stands either way: gateways still see it through the database within a second.
    if (!sent) {
      std::cerr << "rvenc keys revoke: not published to Redis (" << sent.error().message
                << "); gateways sharing the database still see it within a second\n";
      return kExitOk;
    }
    std::cout << "published to " << *sent << " gateway(s) via " << url->to_string() << std::endl;
  }
  return kExitOk;
}

int run_usage(const KeysOptions& o) {
  auto store = open_store(o, gateway::KeyStore::OpenMode::existing_only);
  if (!store) return store.error();
  auto totals = store->usage_totals();
  if (!totals) return open_failed(totals.error());
  auto recent = store->recent_usage(kRecentUsageRows);
  if (!recent) return open_failed(recent.error());
  if (o.json) {
    boost::json::array keys, rows;
    for (const auto& t : *totals)
      keys.push_back(boost::json::object{{"id", t.key_id},
                                         {"name", t.name},
                                         {"requests", t.requests},
                                         {"promptTokens", t.prompt_tokens},
                                         {"completionTokens", t.completion_tokens},
                                         {"bytesIn", t.bytes_in},
                                         {"bytesOut", t.bytes_out}});
    for (const auto& r : *recent) rows.push_back(gateway::to_json(r));
    std::cout << boost::json::serialize(boost::json::object{{"keys", keys}, {"recent", rows}}) << std::endl;
    return kExitOk;
  }
  using Align = TextTable::Align;
  TextTable keys_table({{"ID"}, {"NAME"}, {"REQUESTS", Align::right}, {"PROMPT_TOKENS", Align::right},
                        {"COMPLETION_TOKENS", Align::right}, {"BYTES_IN", Align::right}, {"BYTES_OUT", Align::right}});
  for (const auto& t : *totals)
    keys_table.add({t.key_id, t.name, std::to_string(t.requests), std::to_string(t.prompt_tokens),
                    std::to_string(t.completion_tokens), std::to_string(t.bytes_in), std::to_string(t.bytes_out)});
  keys_table.print(std::cout);
  TextTable recent_table({{"TIME"}, {"REQUEST"}, {"KEY"}, {"STATUS", Align::right}, {"PROMPT", Align::right},
                          {"COMPL", Align::right}, {"IN", Align::right}, {"OUT", Align::right}, {"MS", Align::right}});
  for (const auto& r : *recent)
    recent_table.add({format_time(r.at_ms / 1000), r.request_id, r.key_id, std::to_string(r.status),
                      std::to_string(r.prompt_tokens), std::to_string(r.completion_tokens), std::to_string(r.bytes_in),
                      std::to_string(r.bytes_out), std::to_string(r.duration_ms)});
  std::cout << "\nrecent requests:\n";
  recent_table.print(std::cout);
  return kExitOk;
}

// Opening the store applies its migrations; this says where it stands.
int run_migrate(const KeysOptions& o) {
  auto store = open_store(o, gateway::KeyStore::OpenMode::existing_only);
  if (!store) return store.error();
  auto version = store->schema_version();
  if (!version) return open_failed(version.error());
  std::cout << "store " << store->path() << ": schema version " << *version << " (up to date)" << std::endl;
  return kExitOk;
}

void add_database_flags(CLI::App& cmd, KeysOptions& o) {
  option(cmd, "--db", o.db,
         "The gateway's store: a SQLite file, or postgresql://USER[:PASSWORD]@HOST:PORT/DBNAME (default: "
         "DIR/rvenc.db, or ./.rvenc/stack.json's db)");
  option(cmd, "--data", o.data, "The state directory of `rvenc up`: use DIR/rvenc.db (--db wins)");
}

void setup(CLI::App& app, std::function<int()>& run) {
  auto* keys = app.add_subcommand("keys", "Manage the gateway's API keys (create, list, revoke, usage, migrate)");
  keys->require_subcommand(1);
  auto o = std::make_shared<KeysOptions>();

  auto* create = keys->add_subcommand(
      "create", "Create an API key; prints it once, stores only its hash (creates a new database, saying so)");
  add_database_flags(*create, *o);
  option(*create, "--name", o->name, "A name for the key")->required();
  flag(*create, "--test", o->test, "Create a test key (sk_test_...) instead of a live one");
  option(*create, "--rpm", o->rpm, "Requests per minute (0 = unlimited)")->check(at_least(0));
  option(*create, "--tpm", o->tpm, "Tokens per minute (0 = unlimited)")->check(at_least(0));
  option(*create, "--max-streams", o->max_streams, "Concurrent streams (0 = unlimited)")->check(at_least(0));
  create->callback([&run, o] { run = [o] { return run_create(*o); }; });

  auto* list = keys->add_subcommand("list", "List API keys (masked to their last 4 characters)");
  add_database_flags(*list, *o);
  flag(*list, "--json", o->json, "Print JSON");
  list->callback([&run, o] { run = [o] { return run_list(*o); }; });

  auto* revoke = keys->add_subcommand("revoke", "Revoke an API key by id (or by the full key)");
  add_database_flags(*revoke, *o);
  revoke->add_option("ID", o->id, "The key's id (key_...) or the full key")->required();
  option(*revoke, "--redis", o->redis, "redis://HOST:PORT[/DB]: also tell every gateway subscribed there at once");
  revoke->callback([&run, o] { run = [o] { return run_revoke(*o); }; });

  auto* usage = keys->add_subcommand("usage", "Usage per key (requests, tokens, bytes) and recent requests");
  add_database_flags(*usage, *o);
  flag(*usage, "--json", o->json, "Print JSON");
  usage->callback([&run, o] { run = [o] { return run_usage(*o); }; });

  auto* migrate = keys->add_subcommand(
      "migrate", "Apply the store's schema migrations now (gateways also apply them at start) and print its version");
  add_database_flags(*migrate, *o);
  migrate->callback([&run, o] { run = [o] { return run_migrate(*o); }; });
}

const Registrar registrar{{"keys", setup}};

}  // namespace
}  // namespace rvenc::cli
