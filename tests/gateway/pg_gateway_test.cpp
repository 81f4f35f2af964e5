// Real gateway processes on a real PostgreSQL store (no Redis): a key made by `rvenc keys
// create --db postgresql://…` is served, a revocation reaches a second gateway through
// LISTEN/NOTIFY, and PostgreSQL crashing while requests run costs no request a charge or a
// double charge, nor the gateway its life.
#include <gtest/gtest.h>

#include <libpq-fe.h>

#include <boost/json.hpp>

#include "gateway_test_support.hpp"
#include "rvenc/gateway/api_key.hpp"
#include "support/pg_server.hpp"

namespace rvenc::gateway {
namespace {

using namespace test_support;
using namespace std::chrono_literals;

constexpr std::string_view kPushed = "key change pushed by the store";

// One number from a constant query (test inspection only).
std::int64_t pg_count(const std::string& url, const char* sql) {
  PGconn* conn = PQconnectdb(url.c_str());
  PGresult* r = PQexec(conn, sql);
  const std::int64_t n = PQresultStatus(r) == PGRES_TUPLES_OK ? std::stoll(PQgetvalue(r, 0, 0)) : -1;
  PQclear(r);
  PQfinish(conn);
  return n;
}

class PgGateways : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server.ready()) << server.output();
    db = server.create_database();
    ASSERT_FALSE(db.empty());
    enclave = start_enclave(dir);
    auto url = enclave->wait_for_url();
    ASSERT_TRUE(url) << enclave->output();
    enclave_url = *url;
  }

  std::unique_ptr<test::ChildProcess> gateway(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args{"--usage-journal-dir", dir.path().string()};
    args.insert(args.end(), extra.begin(), extra.end());
    return start_gateway({enclave_url}, db, dir.file("gateway.token"), args);
  }

  // `rvenc keys create --db postgresql://…`: the key it prints.
  std::string create_key(const std::string& name) {
    auto created = run_cli({"keys", "create", "--db", db, "--name", name});
    EXPECT_EQ(created.exit_code, 0) << created.out;
    // The key alone on its line of stdout.
    const auto at = created.out.find("sk_");
    if (at == std::string::npos) return {};
    std::string key = created.out.substr(at);
    return key.substr(0, key.find_first_of(" \r\n"));
  }

  // A sealed request through `gateway_url` (attested once per gateway): status and error code.
  std::pair<unsigned, std::string> chat(const std::string& gateway_url, const std::string& key) {
    const auto sealed = seal_chat(gateway_url, dir.file("platform.key"));
    auto response = post_chat(gateway_url, sealed.body, key);
    if (!response) return {0, response.error().message};
    const unsigned status = response->result_int();
    return {status, status == 200 ? std::string() : error_code(response->body())};
  }

  test::PgServer& server = test::shared_pg_server();
  test::TempDir dir;
  std::string db;
  std::string enclave_url;
  std::unique_ptr<test::ChildProcess> enclave;
};

TEST_F(PgGateways, AKeyCreatedByTheCliIsServedAndChargedOnce) {
  const std::string key = create_key("pg");
  ASSERT_TRUE(is_well_formed_api_key(key)) << key;
  auto a = gateway();
  auto url = a->wait_for_url();
  ASSERT_TRUE(url) << a->output();
  // The startup facts name the store with its password masked (there is none here) and the policy.
  EXPECT_NE(a->output().find("(PostgreSQL; --store-failure closed"), std::string::npos) << a->output();
  EXPECT_EQ(chat(*url, key).first, 200u) << a->output();
  EXPECT_EQ(chat(*url, "sk_live_" + std::string(43, 'x')).second, "invalid_api_key");
  EXPECT_TRUE(wait_until([&] { return pg_count(db, "SELECT count(*) FROM usage WHERE final") == 1; }));
  auto migrate = run_cli({"keys", "migrate", "--db", db});
  EXPECT_EQ(migrate.exit_code, 0);
  EXPECT_NE(migrate.out.find("schema version 1"), std::string::npos) << migrate.out;
}

TEST_F(PgGateways, ARevocationReachesTheOtherGatewayThroughNotify) {
  const std::string key = create_key("revoked-soon");
  auto a = gateway();
  auto b = gateway();
  auto url_a = a->wait_for_url();
  auto url_b = b->wait_for_url();
  ASSERT_TRUE(url_a && url_b) << a->output() << b->output();
  EXPECT_EQ(chat(*url_a, key).first, 200u);
  EXPECT_EQ(chat(*url_b, key).first, 200u);  // cached at b now
  auto listed = run_cli({"keys", "list", "--db", db, "--json"});
  ASSERT_EQ(listed.exit_code, 0);
  const auto id = std::string(boost::json::parse(listed.out).as_array().at(0).at("id").as_string());
  const auto sealed = seal_chat(*url_b, dir.file("platform.key"));  // attested before the clock runs
  const auto pushes = [&] {
    const std::string out = b->output();
    std::size_t n = 0;
    for (auto at = out.find(kPushed); at != std::string::npos; at = out.find(kPushed, at + 1)) ++n;
    return n;
  };
  // One push when its listener connected; the revoke must add one.
  ASSERT_TRUE(wait_until([&] { return pushes() >= 1; })) << b->output();
  const std::size_t before = pushes();
  ASSERT_EQ(run_cli({"keys", "revoke", "--db", db, id}).exit_code, 0);
  const auto revoked_at = std::chrono::steady_clock::now();
  // b heard it pushed (NOTIFY), not only through its keys_version poll.
  EXPECT_TRUE(wait_until([&] { return pushes() > before; })) << b->output();
  ASSERT_TRUE(wait_until([&] {
    auto response = post_chat(*url_b, sealed.body, key);
    return response && response->result_int() == 403 && error_code(response->body()) == "key_revoked";
  }));
  const auto took = std::chrono::steady_clock::now() - revoked_at;
  std::cout << "revocation refused at the other gateway " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
            << " ms after `rvenc keys revoke` returned\n";
}

TEST_F(PgGateways, PostgresCrashingUnderLoadChargesEveryAcceptedRequestOnce) {
  const std::string key = create_key("outage");
  auto a = gateway();
  auto url = a->wait_for_url();
  ASSERT_TRUE(url) << a->output();
  // Its LISTEN connection up first: connecting drops the key cache (changes it may have missed),
  // and a cache dropped after the first requests would leave the key unknown during the outage.
  ASSERT_TRUE(a->wait_for_line(std::string(kPushed))) << a->output();
  int accepted = 0;
  const auto send = [&](int n) {
    for (int i = 0; i < n; ++i) accepted += chat(*url, key).first == 200u ? 1 : 0;
  };
  send(3);
  server.stop(/*crash=*/true);
  send(3);  // the cached key is served; the rows wait in the journal
  // /healthz says so once the gateway noticed (its listener connection, its next key poll).
  const auto store_state = [&] {
    auto h = http::fetch("GET", *url + "/healthz");
    return h ? std::string(boost::json::parse(h->body()).at("store").as_string()) : std::string("no answer");
  };
  EXPECT_TRUE(wait_until([&] { return store_state() == "down"; })) << store_state();
  // An unknown key cannot be checked: 503 overloaded, not a guess.
  EXPECT_EQ(chat(*url, "sk_live_" + std::string(43, 'y')), (std::pair<unsigned, std::string>{503, "overloaded"}));
  ASSERT_TRUE(server.start()) << server.output();
  send(3);
  EXPECT_EQ(accepted, 9);
  EXPECT_TRUE(a->running()) << a->output();
  EXPECT_TRUE(wait_until([&] { return pg_count(db, "SELECT count(*) FROM usage WHERE final") == accepted; }, 30s))
      << pg_count(db, "SELECT count(*) FROM usage") << " rows\n" << a->output();
  EXPECT_EQ(pg_count(db, "SELECT count(*) FROM usage"), accepted);  // nothing twice, nothing provisional left
  EXPECT_TRUE(wait_until([&] { return store_state() == "ok"; })) << store_state();
}

}  // namespace
}  // namespace rvenc::gateway
