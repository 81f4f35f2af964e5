#include <gtest/gtest.h>

#include <sqlite3.h>

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>

#include "rvenc/gateway/api_key.hpp"
#include "rvenc/gateway/key_cache.hpp"
#include "rvenc/gateway/key_store.hpp"
#include "rvenc/gateway/usage.hpp"
#include "support/test_support.hpp"

namespace rvenc::gateway {
namespace {

TEST(ApiKey, GeneratedKeysAreWellFormedAndDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {
    const auto key = generate_api_key(i % 2 ? KeyEnv::test : KeyEnv::live);
    EXPECT_TRUE(key.starts_with(i % 2 ? "sk_test_" : "sk_live_"));
    EXPECT_EQ(key.size(), 8 + kApiKeyRandomChars);
    EXPECT_TRUE(is_well_formed_api_key(key));
    EXPECT_TRUE(seen.insert(key).second);
  }
}

TEST(ApiKey, Base62CharactersAreAllUsed) {
  std::set<char> chars;
  for (int i = 0; i < 100; ++i)
    for (char c : generate_api_key(KeyEnv::live).substr(8)) chars.insert(c);
  EXPECT_EQ(chars.size(), 62u);
}

TEST(ApiKey, MalformedKeysAreRefused) {
  EXPECT_FALSE(is_well_formed_api_key(""));
  EXPECT_FALSE(is_well_formed_api_key("sk_live_short"));
  EXPECT_FALSE(is_well_formed_api_key("pk_live_" + std::string(40, 'a')));
  EXPECT_FALSE(is_well_formed_api_key("sk_live_" + std::string(39, 'a') + "!"));
  EXPECT_FALSE(is_well_formed_api_key("sk_live_" + std::string(kMaxApiKeyBytes, 'a')));
}

class KeyStoreTest : public ::testing::Test {
 protected:
  test::TempDir dir;
  std::string db = dir.file("keys.db");
};

TEST_F(KeyStoreTest, CreateFindListRevoke) {
  auto store = KeyStore::open(db);
  ASSERT_TRUE(store) << store.error().message;
  auto created = store->create_key("alice", KeyEnv::test, {2, 100, 1});
  ASSERT_TRUE(created);
  EXPECT_TRUE(created->key.starts_with("sk_test_"));
  EXPECT_TRUE(created->record.id.starts_with("key_"));

  auto found = store->find_by_hash(hash_api_key(created->key));
  ASSERT_TRUE(found && *found);
  EXPECT_EQ((*found)->id, created->record.id);
  EXPECT_EQ((*found)->limits.requests_per_minute, 2);
  EXPECT_EQ((*found)->limits.tokens_per_minute, 100);
  EXPECT_EQ((*found)->limits.max_streams, 1);
  EXPECT_EQ((*found)->last4, created->key.substr(created->key.size() - 4));
  EXPECT_FALSE((*found)->revoked());

  auto other = generate_api_key(KeyEnv::test);
  auto missing = store->find_by_hash(hash_api_key(other));
  ASSERT_TRUE(missing);
  EXPECT_FALSE(*missing);

  auto list = store->list_keys();
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);

  auto revoked = store->revoke(created->record.id);
  ASSERT_TRUE(revoked);
  EXPECT_TRUE(revoked->revoked());
  EXPECT_TRUE((*store->find_by_hash(hash_api_key(created->key)))->revoked());
  EXPECT_EQ(store->revoke("key_unknown").error().code, Errc::not_found);
  EXPECT_EQ(store->revoke(other).error().code, Errc::not_found);
}

TEST_F(KeyStoreTest, RevokeByFullKeyAndNoPlaintextStored) {
  std::string key;
  {
    auto store = KeyStore::open(db);
    ASSERT_TRUE(store);
    key = store->create_key("bob", KeyEnv::live, {}).value().key;
    ASSERT_TRUE(store->revoke(key));
  }
  std::ifstream in(db, std::ios::binary);
  std::string content((std::istreambuf_iterator<char>(in)), {});
  std::ifstream wal(db + "-wal", std::ios::binary);
  content.append(std::istreambuf_iterator<char>(wal), {});
  EXPECT_EQ(content.find(key.substr(8)), std::string::npos);
}

TEST_F(KeyStoreTest, VersionMovesOnRevokeButNotOnUsage) {
  auto a = KeyStore::open(db);
  auto b = KeyStore::open(db);  // another gateway's connection
  ASSERT_TRUE(a && b);
  auto created = a->create_key("carol", KeyEnv::live, {});
  ASSERT_TRUE(created);
  const auto v1 = b->keys_version().value();
  ASSERT_TRUE(a->record_usage({UsageRow{"req_1", created->record.id, 1000, "/rvenc/chat/completions", 200, 3, 4, 10, 20, 5}}));
  EXPECT_EQ(b->keys_version().value(), v1);
  ASSERT_TRUE(a->revoke(created->record.id));
  EXPECT_GT(b->keys_version().value(), v1);
}

TEST_F(KeyStoreTest, CacheDropsRevokedKeyAfterPoll) {
  auto admin = KeyStore::open(db);
  ASSERT_TRUE(admin);
  auto created = admin->create_key("dave", KeyEnv::live, {});
  ASSERT_TRUE(created);
  KeyCache cache(KeyStore::open(db).value());
  const auto hash = hash_api_key(created->key);
  ASSERT_FALSE(cache.lookup(hash).value()->revoked());
  ASSERT_TRUE(admin->revoke(created->record.id));
  EXPECT_FALSE(cache.lookup(hash).value()->revoked());  // cached until the poll
  EXPECT_TRUE(cache.poll().value());
  EXPECT_TRUE(cache.lookup(hash).value()->revoked());
  EXPECT_FALSE(cache.poll().value());
}

TEST_F(KeyStoreTest, UsageRowsAreWrittenOnceAndTotalled) {
  auto store = KeyStore::open(db);
  ASSERT_TRUE(store);
  auto created = store->create_key("erin", KeyEnv::live, {});
  ASSERT_TRUE(created);
  {
    UsageRecorder recorder(KeyStore::open(db).value());
    for (int i = 0; i < 3; ++i) {
      UsageRecord record(recorder, UsageRow{"req_" + std::to_string(i), created->record.id, 1'700'000'000'000 + i,
                                            "/rvenc/chat/completions", 200, 10, 20, 100, 200, 0});
    }
    recorder.flush();
    EXPECT_EQ(recorder.rows_written(), 3u);
    // A retried row with the same request id does not count twice.
    recorder.submit(UsageRow{"req_0", created->record.id, 1, "/rvenc/chat/completions", 200, 10, 20, 100, 200, 0});
  }
  auto totals = store->usage_totals();
  ASSERT_TRUE(totals);
  ASSERT_EQ(totals->size(), 1u);
  EXPECT_EQ((*totals)[0].requests, 3);
  EXPECT_EQ((*totals)[0].prompt_tokens, 30);
  EXPECT_EQ((*totals)[0].completion_tokens, 60);
  EXPECT_EQ((*totals)[0].bytes_in, 300);
  EXPECT_EQ((*totals)[0].bytes_out, 600);
  auto recent = store->recent_usage(2);
  ASSERT_TRUE(recent);
  EXPECT_EQ(recent->size(), 2u);
  EXPECT_EQ((*store->list_keys())[0].last_used_at, 1'700'000'000);
}

// Rows that wait for their batch are in a journal beside the database: a gateway killed before
// writing them (here a child process that SIGKILLs itself) loses none, the next one writes them.
class UsageJournalTest : public KeyStoreTest {
 protected:
  // Long enough that no batch is written while a test runs: only the journal has the rows.
  static constexpr std::chrono::minutes kNeverFlush{10};

  std::string key_id() {
    if (id_.empty()) id_ = KeyStore::open(db).value().create_key("frank", KeyEnv::live, {}).value().record.id;
    return id_;
  }
  UsageRow row(int i) {
    return UsageRow{"req_" + std::to_string(i), key_id(), 1'700'000'000'000 + i, "/rvenc/chat/completions", 200, 1, 2,
                    3, 4, 5};
  }
  std::int64_t requests_written() {
    const auto totals = KeyStore::open(db).value().usage_totals().value();
    return totals.empty() ? 0 : totals[0].requests;
  }
  std::size_t journals() const {
    std::size_t count = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
      if (entry.path().extension() == ".journal") ++count;
    return count;
  }
  // Submits `rows` rows in a child process that is then killed with SIGKILL.
  void submit_and_get_killed(int rows) {
    const std::string id = key_id();
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      UsageRecorder recorder(KeyStore::open(db).value(), kNeverFlush);
      for (int i = 0; i < rows; ++i) recorder.submit(row(i));
      ::kill(::getpid(), SIGKILL);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  }

 private:
  std::string id_;
};

TEST_F(UsageJournalTest, RowsOfAKilledGatewayAreWrittenByTheNextOne) {
  ASSERT_NO_FATAL_FAILURE(submit_and_get_killed(5));
  EXPECT_EQ(requests_written(), 0);
  EXPECT_EQ(journals(), 1u);
  {
    UsageRecorder next(KeyStore::open(db).value(), kNeverFlush);
    EXPECT_EQ(requests_written(), 5);
    EXPECT_EQ(journals(), 1u);  // its own
    next.submit(row(0));        // a row already written is not written twice
  }
  EXPECT_EQ(requests_written(), 5);
  EXPECT_EQ(journals(), 0u);
}

TEST_F(UsageJournalTest, ALiveGatewaysJournalIsLeftToIt) {
  UsageRecorder first(KeyStore::open(db).value(), kNeverFlush);
  for (int i = 0; i < 3; ++i) first.submit(row(i));
  {
    UsageRecorder second(KeyStore::open(db).value(), kNeverFlush);
    EXPECT_EQ(requests_written(), 0);
    EXPECT_EQ(journals(), 2u);
  }
  first.flush();
  EXPECT_EQ(requests_written(), 3);
  EXPECT_EQ(journals(), 1u);  // the one the rows after the batch go to
}

TEST_F(UsageJournalTest, JournalsGrowPastTheirInitialSize) {
  constexpr int kRows = 3000;  // ~170 bytes each: about twice detail::kJournalInitialBytes
  ASSERT_NO_FATAL_FAILURE(submit_and_get_killed(kRows));
  std::uintmax_t size = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
    if (entry.path().extension() == ".journal") size = entry.file_size();
  EXPECT_GT(size, detail::kJournalInitialBytes);
  UsageRecorder next(KeyStore::open(db).value(), kNeverFlush);
  EXPECT_EQ(requests_written(), kRows);
}

TEST_F(UsageJournalTest, UnreadableLinesAreSkipped) {
  ASSERT_NO_FATAL_FAILURE(submit_and_get_killed(2));
  // What a gateway killed while copying its third row leaves: part of a line, no newline.
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    if (entry.path().extension() != ".journal") continue;
    std::fstream journal(entry.path(), std::ios::in | std::ios::out | std::ios::binary);
    const std::string content{std::istreambuf_iterator<char>(journal), {}};
    journal.seekp(static_cast<std::streamoff>(content.rfind('\n') + 1));
    journal << "{\"requestId\":\"cut";
  }
  UsageRecorder next(KeyStore::open(db).value(), kNeverFlush);
  EXPECT_EQ(requests_written(), 2);
}

// Issue 30 item 2: a stream's provisional row (its prompt) is replaced by its final row: one row
// per request id, whatever order a journal replay brings them in.
TEST_F(UsageJournalTest, FinalRowReplacesTheProvisionalOneAndNothingReplacesAFinalRow) {
  auto store = KeyStore::open(db);
  ASSERT_TRUE(store);
  UsageRow provisional = row(0);
  provisional.prompt_tokens = 100'000;
  provisional.completion_tokens = 0;
  provisional.final = false;
  UsageRow final = provisional;
  final.completion_tokens = 40;
  final.final = true;
  ASSERT_TRUE(store->record_usage({provisional}));
  ASSERT_TRUE(store->record_usage({final}));
  ASSERT_TRUE(store->record_usage({provisional, final, provisional}));  // replayed journals
  const auto totals = store->usage_totals().value();
  ASSERT_EQ(totals.size(), 1u);
  EXPECT_EQ(totals[0].requests, 1);
  EXPECT_EQ(totals[0].prompt_tokens, 100'000);
  EXPECT_EQ(totals[0].completion_tokens, 40);
  const auto recent = store->recent_usage(10).value();
  ASSERT_EQ(recent.size(), 1u);
  EXPECT_TRUE(recent[0].final);
}

// A gateway killed mid-stream leaves the provisional row in its journal: the prompt is charged.
TEST_F(UsageJournalTest, ProvisionalRowOfAKilledGatewayIsCharged) {
  const std::string id = key_id();
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    UsageRecorder recorder(KeyStore::open(db).value(), kNeverFlush);
    UsageRecord record(recorder, row(7));
    record.row().prompt_tokens = 100'000;
    record.submit_provisional();
    record.row().completion_tokens = 9;
    record.submit();
    UsageRecord cut(recorder, row(8));
    cut.row().prompt_tokens = 50'000;
    cut.row().completion_tokens = 0;
    cut.submit_provisional();
    ::kill(::getpid(), SIGKILL);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  UsageRecorder next(KeyStore::open(db).value(), kNeverFlush);
  const auto totals = KeyStore::open(db).value().usage_totals().value();
  ASSERT_EQ(totals.size(), 1u);
  EXPECT_EQ(totals[0].requests, 2);
  EXPECT_EQ(totals[0].prompt_tokens, 150'000);
  EXPECT_EQ(totals[0].completion_tokens, 9);
}

// A database of schema version 1 gets the `final` column; its rows count as final.
TEST_F(KeyStoreTest, MigratesVersionOneUsageRowsAsFinal) {
  std::string key_id;
  {
    auto store = KeyStore::open(db);
    ASSERT_TRUE(store);
    key_id = store->create_key("grace", KeyEnv::live, {}).value().record.id;
  }
  {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
    // Back to what version 1 had: no `final` column.
    const std::string sql = "ALTER TABLE usage DROP COLUMN final; PRAGMA user_version = 1; "
                            "INSERT INTO usage(request_id, key_id, at_ms, path, status, prompt_tokens) "
                            "VALUES ('req_old', '" + key_id + "', 1, '/rvenc/chat/completions', 200, 5)";
    ASSERT_EQ(sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(raw);
    sqlite3_close(raw);
  }
  auto store = KeyStore::open(db);
  ASSERT_TRUE(store) << store.error().message;
  UsageRow late{"req_old", key_id, 2, "/rvenc/chat/completions", 200, 99, 99, 0, 0, 0};
  late.final = false;
  ASSERT_TRUE(store->record_usage({late}));  // cannot replace a final row
  const auto recent = store->recent_usage(10).value();
  ASSERT_EQ(recent.size(), 1u);
  EXPECT_TRUE(recent[0].final);
  EXPECT_EQ(recent[0].prompt_tokens, 5);
}

TEST_F(KeyStoreTest, RefusesNewerSchema) {
  { ASSERT_TRUE(KeyStore::open(db)); }
  {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(raw, "PRAGMA user_version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(raw);
  }
  auto store = KeyStore::open(db);
  ASSERT_FALSE(store);
  EXPECT_NE(store.error().message.find("schema version 99"), std::string::npos);
}

}  // namespace
}  // namespace rvenc::gateway
