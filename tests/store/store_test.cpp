// The store's conformance suite, run against both backends (SQLite in a temporary file, and a
// real PostgreSQL with a database per test): the same semantics for keys, revocation, the keys
// version, usage charged exactly once, migrations; then what only PostgreSQL does (NOTIFY,
// password masking, an unreachable server, an outage with the usage writer running).
#include <gtest/gtest.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "rvenc/gateway/key_cache.hpp"
#include "rvenc/gateway/usage.hpp"
#include "rvenc/store/pg_store.hpp"
#include "rvenc/store/store.hpp"
#include "support/pg_server.hpp"
#include "support/test_support.hpp"

namespace rvenc::store {
namespace {

using namespace std::chrono_literals;

template <class F>
bool eventually(F condition, std::chrono::milliseconds timeout = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return condition();
}

// One SQL statement on a PostgreSQL URL (test set-up only; constant SQL).
bool pg_exec(const std::string& url, const char* sql) {
  PGconn* conn = PQconnectdb(url.c_str());
  PGresult* r = PQexec(conn, sql);
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
  PQclear(r);
  PQfinish(conn);
  return ok;
}

struct SqliteKind {
  static constexpr const char* kName = "sqlite";
  test::TempDir dir;
  std::string location() { return dir.file("keys.db"); }
  // Makes the stored schema newer than this build understands.
  bool bump_schema(const std::string& location) {
    sqlite3* db = nullptr;
    const bool ok = sqlite3_open(location.c_str(), &db) == SQLITE_OK &&
                    sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr) == SQLITE_OK;
    sqlite3_close(db);
    return ok;
  }
};

struct PostgresKind {
  static constexpr const char* kName = "postgres";
  std::string location() {
    auto& server = test::shared_pg_server();
    EXPECT_TRUE(server.ready()) << server.output();
    return server.create_database();
  }
  bool bump_schema(const std::string& location) {
    return pg_exec(location, "INSERT INTO schema_migrations(version) VALUES (99)");
  }
};

template <class Kind>
class StoreConformance : public ::testing::Test {
 protected:
  void SetUp() override {
    location = kind.location();
    ASSERT_FALSE(location.empty());
  }
  KeyStore open() {
    auto store = KeyStore::open(location);
    EXPECT_TRUE(store) << store.error().message;
    return std::move(store.value());
  }
  static UsageRow row(const std::string& request, const std::string& key, std::int64_t prompt, bool final = true) {
    return UsageRow{request, key, 1'700'000'000'000, "/rvenc/chat/completions", 200, prompt, 5, 100, 200, 7, final};
  }

  Kind kind;
  std::string location;
};

using Kinds = ::testing::Types<SqliteKind, PostgresKind>;
struct KindNames {
  template <class T>
  static std::string GetName(int) {
    return T::kName;
  }
};
TYPED_TEST_SUITE(StoreConformance, Kinds, KindNames);

TYPED_TEST(StoreConformance, CreateFindListRevoke) {
  auto store = this->open();
  auto created = store.create_key("alice", KeyEnv::test, {2, 100, 1});
  ASSERT_TRUE(created) << created.error().message;
  auto found = store.find_by_hash(hash_api_key(created->key));
  ASSERT_TRUE(found && *found);
  EXPECT_EQ((*found)->id, created->record.id);
  EXPECT_EQ((*found)->env, KeyEnv::test);
  EXPECT_EQ((*found)->limits.tokens_per_minute, 100);
  EXPECT_EQ((*found)->hash, hash_api_key(created->key));
  EXPECT_EQ((*found)->last4, created->key.substr(created->key.size() - 4));
  EXPECT_FALSE((*found)->revoked());
  auto unknown = store.find_by_hash(hash_api_key(generate_api_key(KeyEnv::live)));
  ASSERT_TRUE(unknown);
  EXPECT_FALSE(*unknown);
  auto revoked = store.revoke(created->record.id);
  ASSERT_TRUE(revoked) << revoked.error().message;
  EXPECT_TRUE(revoked->revoked());
  // Twice is fine; the first time stands.
  EXPECT_EQ(store.revoke(created->key).value().revoked_at, revoked->revoked_at);
  auto missing = store.revoke("key_0000000000000000");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found);
  const auto keys = store.list_keys().value();
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_TRUE(keys[0].revoked());
}

TYPED_TEST(StoreConformance, HostileNamesAreDataNotSql) {
  auto store = this->open();
  const std::string name = "x'); DROP TABLE api_keys; --\"\\";
  ASSERT_TRUE(store.create_key(name, KeyEnv::live, {}));
  auto missing = store.revoke("key_' OR '1'='1");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found);
  const auto keys = store.list_keys().value();
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].name, name);
  EXPECT_FALSE(keys[0].revoked());
}

TYPED_TEST(StoreConformance, VersionMovesOnKeyChangesButNotOnUsage) {
  auto a = this->open();
  auto b = this->open();  // another gateway's handle
  const auto key = a.create_key("bob", KeyEnv::live, {}).value();
  const auto v1 = b.keys_version().value();
  ASSERT_TRUE(a.record_usage({this->row("req_1", key.record.id, 1)}));
  EXPECT_EQ(b.keys_version().value(), v1);
  ASSERT_TRUE(a.revoke(key.record.id));
  EXPECT_GT(b.keys_version().value(), v1);
}

TYPED_TEST(StoreConformance, UsageIsChargedExactlyOncePerRequest) {
  auto store = this->open();
  const auto key = store.create_key("carol", KeyEnv::live, {}).value();
  const auto& id = key.record.id;
  // A stream: its provisional row, then its final row, in one batch (as a busy writer sees them).
  ASSERT_TRUE(store.record_usage({this->row("req_s", id, 10, false), this->row("req_s", id, 12, true)}));
  // A replayed journal (the same rows again, in any order) and a late provisional change nothing.
  ASSERT_TRUE(store.record_usage({this->row("req_s", id, 10, false), this->row("req_s", id, 12, true)}));
  ASSERT_TRUE(store.record_usage({this->row("req_a", id, 3), this->row("req_a", id, 99)}));
  const auto totals = store.usage_totals().value();
  ASSERT_EQ(totals.size(), 1u);
  EXPECT_EQ(totals[0].requests, 2);
  EXPECT_EQ(totals[0].prompt_tokens, 12 + 3);
  EXPECT_EQ(totals[0].completion_tokens, 10);
  const auto recent = store.recent_usage(10).value();
  ASSERT_EQ(recent.size(), 2u);
  for (const auto& r : recent) EXPECT_TRUE(r.final) << r.request_id;
  EXPECT_EQ(store.list_keys().value()[0].last_used_at, 1'700'000'000);
}

TYPED_TEST(StoreConformance, UsagePathsAreDataNotSqlNorArraySyntax) {
  auto store = this->open();
  const auto key = store.create_key("frank", KeyEnv::live, {}).value();
  const std::vector<std::string> paths{R"(/v1/a"},{"b\",NULL,c)", "');DROP TABLE usage;--", "", "NULL", "{}"};
  std::vector<UsageRow> rows;
  for (std::size_t i = 0; i < paths.size(); ++i) {
    rows.push_back(this->row("req_p" + std::to_string(i), key.record.id, 1));
    rows.back().path = paths[i];
  }
  ASSERT_TRUE(store.record_usage(rows));
  const auto recent = store.recent_usage(10).value();
  ASSERT_EQ(recent.size(), paths.size());
  for (const auto& r : recent) EXPECT_EQ(r.path, paths.at(std::stoul(r.request_id.substr(5)))) << r.request_id;
}

TYPED_TEST(StoreConformance, UsageForAnUnknownKeyFailsTheWholeBatch) {
  auto store = this->open();
  const auto key = store.create_key("dave", KeyEnv::live, {}).value();
  EXPECT_FALSE(store.record_usage({this->row("req_ok", key.record.id, 1), this->row("req_bad", "key_nobody", 1)}));
  EXPECT_EQ(store.usage_totals().value()[0].requests, 0);  // one transaction: nothing half-written
}

TYPED_TEST(StoreConformance, MigratesOnceAndRefusesANewerSchema) {
  { auto first = this->open(); }
  auto again = KeyStore::open(this->location);
  ASSERT_TRUE(again);
  EXPECT_GE(again->schema_version().value(), 1);
  ASSERT_TRUE(this->kind.bump_schema(this->location));
  auto newer = KeyStore::open(this->location);
  ASSERT_FALSE(newer);
  EXPECT_NE(newer.error().message.find("newer than this rvenc understands"), std::string::npos)
      << newer.error().message;
}

TYPED_TEST(StoreConformance, RecorderWritesEveryRowOnce) {
  auto store = this->open();
  const auto key = store.create_key("erin", KeyEnv::live, {}).value();
  test::TempDir journals;
  StoreOptions options;
  options.journal_dir = journals.path();
  {
    gateway::UsageRecorder recorder(KeyStore::open(this->location, options).value());
    for (int i = 0; i < 50; ++i) recorder.submit(this->row("req_" + std::to_string(i), key.record.id, 1));
    recorder.flush();
    EXPECT_EQ(recorder.rows_written(), 50u);
    recorder.submit(this->row("req_0", key.record.id, 1));  // a retry of a written row
  }
  EXPECT_EQ(store.usage_totals().value()[0].requests, 50);
}

// ---- PostgreSQL only ---------------------------------------------------------------------------

TEST(PgLocation, PasswordsAreMaskedAndSchemesPicked) {
  auto pg = parse_store_location("postgresql://alice:s3cret@db.example:5433/rvenc?sslmode=require&password=two");
  ASSERT_TRUE(pg) << pg.error().message;
  EXPECT_EQ(pg->kind, StoreLocation::Kind::postgres);
  EXPECT_EQ(pg->display, "postgresql://alice:****@db.example:5433/rvenc?sslmode=require&password=****");
  EXPECT_EQ(pg->display.find("s3cret"), std::string::npos);
  EXPECT_EQ(parse_store_location("postgres://bob@h/db").value().display, "postgres://bob@h/db");
  EXPECT_EQ(parse_store_location("sqlite:/var/lib/rvenc/rvenc.db").value().target, "/var/lib/rvenc/rvenc.db");
  EXPECT_EQ(parse_store_location("rvenc.db").value().kind, StoreLocation::Kind::sqlite);
  auto bad = parse_store_location("postgresql://alice:s3cret@[::1/db");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::invalid_request);
  EXPECT_EQ(bad.error().message.find("s3cret"), std::string::npos) << bad.error().message;
  EXPECT_FALSE(parse_store_location(""));
}

TEST(PgStore, AnUnreachableServerIsOverloadedNotAHang) {
  const std::string url = "postgresql://rvenc:pw@127.0.0.1:" + std::to_string(test::free_port()) + "/nothing";
  const auto started = std::chrono::steady_clock::now();
  auto store = KeyStore::open(url);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, Errc::overloaded);
  EXPECT_EQ(store.error().message.find(":pw@"), std::string::npos) << store.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 30s);  // bounded by connect_timeout, not forever
}

// The number of times the server log shows `needle` (logged statements).
std::size_t occurrences(const std::string& text, std::string_view needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

TEST(PgStore, AUsageBatchIsOneStatementNotOnePerRow) {
  auto& server = test::shared_pg_server();
  ASSERT_TRUE(server.ready()) << server.output();
  const auto url = server.create_database();
  ASSERT_FALSE(url.empty());
  // Every data-changing statement of this database's sessions goes to the server's log.
  const std::string alter = "ALTER DATABASE " + url.substr(url.rfind('/') + 1) + " SET log_statement = 'mod'";
  ASSERT_TRUE(pg_exec(url, alter.c_str()));
  auto store = KeyStore::open(url).value();
  const auto key = store.create_key("batch", KeyEnv::live, {}).value();
  std::vector<UsageRow> rows;
  for (int i = 0; i < 500; ++i)
    rows.push_back({"req_b" + std::to_string(i), key.record.id, 1'700'000'000'000 + i, "/rvenc/chat/completions", 200,
                    1, 2, 3, 4, 5, true});
  const std::size_t before = occurrences(server.output(), "INSERT INTO usage");
  ASSERT_TRUE(store.record_usage(rows));
  EXPECT_EQ(store.usage_totals().value()[0].requests, 500);
  // One round trip for the batch (was one per row: 500).
  EXPECT_TRUE(eventually([&] { return occurrences(server.output(), "INSERT INTO usage") > before; }));
  EXPECT_EQ(occurrences(server.output(), "INSERT INTO usage") - before, 1u);
}

// A database whose sessions log every parse, bind and execute (with the statement's name) to the
// server's log; its URL.
std::string logged_database(test::PgServer& server) {
  const auto url = server.create_database();
  if (url.empty()) return url;
  const std::string alter =
      "ALTER DATABASE " + url.substr(url.rfind('/') + 1) + " SET log_min_duration_statement = 0";
  return pg_exec(url, alter.c_str()) ? url : std::string();
}

// The fixed statements are server-side prepared statements: on one pooled connection, N lookups
// are one parse of rvenc_find_by_hash and N executions of it (were N parses of an unnamed one).
TEST(PgStore, StatementsArePreparedOncePerConnection) {
  auto& server = test::shared_pg_server();
  ASSERT_TRUE(server.ready()) << server.output();
  const auto url = logged_database(server);
  ASSERT_FALSE(url.empty());
  const auto count = [&](std::string_view what) { return occurrences(server.output(), what); };
  const std::size_t parses = count("parse rvenc_find_by_hash:");
  const std::size_t executions = count("execute rvenc_find_by_hash:");
  StoreOptions options;
  options.pool_size = 1;
  auto store = KeyStore::open(url, options).value();
  const auto key = store.create_key("prepared", KeyEnv::live, {}).value();
  const auto hash = hash_api_key(key.key);
  // A batch that fails (an unknown key) is rolled back; what it prepared stays prepared (session
  // state, not transactional), so the next batch's execute finds it.
  EXPECT_FALSE(store.record_usage({UsageRow{"req_p1", "no_such_key", 1, "/p", 200, 1, 1, 1, 1, 1, true}}));
  auto recorded = store.record_usage({UsageRow{"req_p2", key.record.id, 1, "/p", 200, 1, 1, 1, 1, 1, true}});
  EXPECT_TRUE(recorded) << recorded.error().message;
  constexpr std::size_t kCalls = 20;
  for (std::size_t i = 0; i < kCalls; ++i) {
    auto found = store.find_by_hash(hash);
    ASSERT_TRUE(found) << found.error().message;
    ASSERT_TRUE(*found);
  }
  EXPECT_TRUE(eventually([&] { return count("execute rvenc_find_by_hash:") - executions >= kCalls; }))
      << count("execute rvenc_find_by_hash:") - executions;
  EXPECT_EQ(count("parse rvenc_find_by_hash:") - parses, 1u);
}

// A restarted server: the pooled connection (and what was prepared on it) died with it; the next
// call retries once on a new connection, prepares its statement there, and succeeds.
TEST(PgStore, AfterARestartStatementsArePreparedOnTheNewConnection) {
  auto& server = test::shared_pg_server();
  ASSERT_TRUE(server.ready()) << server.output();
  const auto url = logged_database(server);
  ASSERT_FALSE(url.empty());
  const auto parses = [&, before = occurrences(server.output(), "parse rvenc_find_by_hash:")] {
    return occurrences(server.output(), "parse rvenc_find_by_hash:") - before;
  };
  StoreOptions options;
  options.pool_size = 1;
  auto store = KeyStore::open(url, options).value();
  const auto key = store.create_key("restart", KeyEnv::live, {}).value();
  const auto hash = hash_api_key(key.key);
  ASSERT_TRUE(store.find_by_hash(hash).value());
  ASSERT_TRUE(eventually([&] { return parses() == 1; })) << parses();
  server.stop();
  ASSERT_TRUE(server.start()) << server.output();
  for (int i = 0; i < 3; ++i) {
    auto found = store.find_by_hash(hash);
    ASSERT_TRUE(found) << found.error().message;  // not "prepared statement … does not exist"
    ASSERT_TRUE(*found);
  }
  EXPECT_TRUE(eventually([&] { return parses() == 2; })) << parses();
  auto revoked = store.revoke(key.record.id);  // another statement, prepared on first use there
  ASSERT_TRUE(revoked) << revoked.error().message;
  EXPECT_EQ(parses(), 2u);  // prepared once on the new connection, not per call
}

TEST(PgStore, ConcurrentFirstOpensMigrateOnce) {
  auto& server = test::shared_pg_server();
  ASSERT_TRUE(server.ready()) << server.output();
  const std::string url = server.create_database();
  std::vector<std::thread> threads;
  std::atomic<int> opened{0};
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&] { opened += KeyStore::open(url).has_value() ? 1 : 0; });
  for (auto& t : threads) t.join();
  EXPECT_EQ(opened, 4);
  EXPECT_EQ(KeyStore::open(url).value().schema_version().value(), 1);
}

TEST(PgStore, ANotifyReachesAnotherHandleWellWithinASecond) {
  auto& server = test::shared_pg_server();
  ASSERT_TRUE(server.ready()) << server.output();
  const std::string url = server.create_database();
  auto admin = KeyStore::open(url).value();
  const auto key = admin.create_key("frank", KeyEnv::live, {}).value();
  gateway::KeyCache cache(KeyStore::open(url).value());
  std::atomic<int> pushed{0};
  auto watched = KeyStore::open(url).value();
  watched.watch_keys([&] { ++pushed; });
  ASSERT_TRUE(eventually([&] { return watched.reachable() && pushed > 0; }));  // connected (one call on connect)
  const int before = pushed;
  ASSERT_TRUE(admin.revoke(key.record.id));
  // The push arrives without any poll; 1 s is the requirement, the bound here is generous.
  EXPECT_TRUE(eventually([&] { return pushed > before; }, 10s));
  watched.watch_keys(nullptr);
}

// --store-failure with the store down: closed serves cached keys for the grace period (0 here)
// only, open serves them until the store returns; neither admits a key the store did not answer
// for (nothing could check or charge it).
TEST(PgStore, TheFailurePoliciesServeOnlyCachedKeys) {
  auto& server = test::shared_pg_server();
  ASSERT_TRUE(server.ready()) << server.output();
  const std::string url = server.create_database();
  auto admin = KeyStore::open(url).value();
  const auto hash = hash_api_key(admin.create_key("policy", KeyEnv::live, {}).value().key);
  const auto unknown = hash_api_key(generate_api_key(KeyEnv::live));
  using Policy = gateway::StoreFailure::Policy;
  gateway::KeyCache closed(KeyStore::open(url).value(), {Policy::closed, 0s});
  gateway::KeyCache open(KeyStore::open(url).value(), {Policy::open, 0s});
  ASSERT_TRUE(closed.lookup(hash).value());
  ASSERT_TRUE(open.lookup(hash).value());
  server.stop(/*crash=*/true);
  // The next call to the store (the gateway's 250 ms poll) finds it gone.
  EXPECT_FALSE(closed.poll());
  EXPECT_FALSE(open.poll());
  EXPECT_FALSE(closed.store_reachable());
  const auto refused = [](const auto& r) {
    return !r && r.error().code == Errc::overloaded;
  };
  EXPECT_TRUE(refused(closed.lookup(hash)));  // its grace is over
  auto served = open.lookup(hash);
  ASSERT_TRUE(served);
  EXPECT_TRUE(*served);
  EXPECT_TRUE(refused(closed.lookup(unknown)));
  EXPECT_TRUE(refused(open.lookup(unknown)));
  ASSERT_TRUE(server.start()) << server.output();
  // Back (after the pool's backoff): the closed cache serves the key again.
  EXPECT_TRUE(eventually([&] { return closed.poll().has_value(); }));
  auto again = closed.lookup(hash);
  ASSERT_TRUE(again);
  EXPECT_TRUE(*again);
}

// PostgreSQL stopped while the usage writer runs, and started again: every row lands exactly
// once (held and retried, its journal kept meanwhile), and lookups fail fast while it is down.
TEST(PgStore, AnOutageLosesNoUsageAndChargesNothingTwice) {
  auto& server = test::shared_pg_server();
  ASSERT_TRUE(server.ready()) << server.output();
  const std::string url = server.create_database();
  auto admin = KeyStore::open(url).value();
  const auto key = admin.create_key("grace", KeyEnv::live, {}).value();
  test::TempDir journals;
  StoreOptions options;
  options.journal_dir = journals.path();
  gateway::KeyCache cache(KeyStore::open(url, options).value());
  ASSERT_TRUE(cache.lookup(hash_api_key(key.key)).value());
  {
    gateway::UsageRecorder recorder(KeyStore::open(url, options).value(), 50ms);
    for (int i = 0; i < 20; ++i) recorder.submit({"req_a" + std::to_string(i), key.record.id, 1, "/p", 200, 1, 1, 1, 1, 1});
    recorder.flush();
    server.stop(/*crash=*/true);
    for (int i = 0; i < 20; ++i) recorder.submit({"req_b" + std::to_string(i), key.record.id, 1, "/p", 200, 1, 1, 1, 1, 1});
    recorder.flush();  // tried and refused: held
    // Cached keys are still served; an unknown key is refused as overloaded (503), quickly.
    EXPECT_TRUE(cache.lookup(hash_api_key(key.key)).value());
    auto unknown = cache.lookup(hash_api_key(generate_api_key(KeyEnv::live)));
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, Errc::overloaded);
    ASSERT_TRUE(server.start()) << server.output();
    EXPECT_TRUE(eventually([&] { return recorder.rows_written() == 40u; }, 30s)) << recorder.rows_written();
  }
  EXPECT_EQ(admin.usage_totals().value()[0].requests, 40);
  // Every journal was removed once its rows were in.
  std::size_t left = 0;
  for (const auto& entry : std::filesystem::directory_iterator(journals.path())) left += entry.is_regular_file();
  EXPECT_EQ(left, 0u);
}

}  // namespace
}  // namespace rvenc::store
