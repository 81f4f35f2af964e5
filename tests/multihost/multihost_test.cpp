// Several "machines" with real rvenc processes (tests/multihost/netns_lab.hpp): PostgreSQL and
// Redis on one host, an enclave on another, gateways A and B on two more (each `--db
// postgresql://…` on the database host), the clients in the root namespace. What a multi-host
// deployment needs (issue 23): a key created on A's host works at B; usage from both gateways
// lands in one ledger, once per request; Redis-shared limits hold across both; a key revoked at A
// is refused at B within a second; PostgreSQL killed under load and restarted charges every
// accepted request exactly once, crashes nothing, and /healthz says the store is down meanwhile.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "gateway_test_support.hpp"
#include "netns_lab.hpp"
#include "rvenc/gateway/key_store.hpp"
#include "support/pg_server.hpp"

namespace rvenc::test::multihost {
namespace {

using namespace gateway::test_support;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

// A client's view of one request.
struct Answer {
  unsigned status = 0;      // 0: no answer
  std::string code;         // the error code ("" on 200)
  std::string request_id;   // X-Request-Id
};

// A key made by `rvenc keys create` on a gateway's host.
struct Key {
  std::string key;
  std::string id;
};

// The hosts and processes of one multi-host deployment.
class Deployment {
 public:
  Deployment()
      : db_host_(lab_.add_host("db")),
        enclave_host_(lab_.add_host("enclave")),
        gateway_hosts_{&lab_.add_host("gateway-a"), &lab_.add_host("gateway-b")} {}

  // postgres on the database host, listening on that host's address (as `nobody` under root);
  // the URL of a fresh database on it.
  std::string start_postgres() {
    postgres_ = std::make_unique<PgServer>(PgServerOptions{db_host_.address, lab_.in(db_host_, {})});
    if (!postgres_->ready()) throw std::runtime_error("postgres: " + postgres_->output());
    db_url_ = postgres_->create_database();
    if (db_url_.empty()) throw std::runtime_error("postgres: cannot create a database: " + postgres_->output());
    return db_url_;
  }

  // redis-server on the database host; its URL ("redis://ADDRESS:PORT").
  std::string start_redis() {
    const std::string port = std::to_string(free_port());
    // Without a password Redis answers only loopback clients unless protected mode is off (the
    // lab's network is the test's own).
    auto& redis = lab_.start_service(db_host_, {"redis-server", "--port", port, "--bind", db_host_.address,
                                                "--protected-mode", "no", "--save", "", "--appendonly", "no"});
    if (!redis.wait_for_line("Ready to accept connections")) throw std::runtime_error("redis: " + redis.output());
    redis_url_ = "redis://" + db_host_.address + ":" + port;
    return redis_url_;
  }

  // `rvenc enclave` (simulated attestation) on its host; its URL.
  std::string start_enclave() {
    std::ofstream(dir_.file("gateway.token")) << "multihost-gateway-token-0123456789abcdef\n";
    auto& enclave = lab_.start_service(
        enclave_host_, {rvenc_binary(), "enclave", "--attestation", "simulated", "--listen", enclave_host_.address + ":0",
                        "--key-file", dir_.file("enclave.key"), "--platform-key", dir_.file("platform.key"),
                        "--gateway-token-file", dir_.file("gateway.token")});
    auto url = enclave.wait_for_url();
    if (!url) throw std::runtime_error("enclave: " + enclave.output());
    enclave_url_ = *url;
    enclave_ = &enclave;
    return *url;
  }

  // `rvenc gateway` number `i` on its host, on the PostgreSQL store (its usage journals in a
  // directory of its own: its host's disk), sharing limits and revocations through Redis.
  ChildProcess& start_gateway(std::size_t i) {
    const std::string journals = dir_.file("journals-" + gateway_hosts_.at(i)->name);
    std::filesystem::create_directories(journals);
    auto& gateway = lab_.start_service(
        *gateway_hosts_[i], {rvenc_binary(), "gateway", "--listen", gateway_hosts_[i]->address + ":0", "--db", db_url_,
                             "--usage-journal-dir", journals, "--enclave", enclave_url_, "--enclave-token-file",
                             dir_.file("gateway.token"), "--redis", redis_url_, "--redis-failure", "closed"});
    auto url = gateway.wait_for_url();
    if (!url) throw std::runtime_error("gateway: " + gateway.output());
    if (!gateway.wait_for_line("subscribed to rvenc:revocations")) throw std::runtime_error("gateway: " + gateway.output());
    // Its LISTEN connection is up (connecting drops the key cache: a key cached before it would be
    // forgotten, and unknown while PostgreSQL is down).
    if (!gateway.wait_for_line("key change pushed by the store")) throw std::runtime_error("gateway: " + gateway.output());
    gateway_urls_.resize(std::max(gateway_urls_.size(), i + 1));
    gateway_urls_[i] = *url;
    gateways_.resize(std::max(gateways_.size(), i + 1));
    gateways_[i] = &gateway;
    return gateway;
  }

  // `rvenc keys create --db postgresql://…` run on gateway `i`'s host (an operator there).
  Key create_key(std::size_t i, const std::string& name, const std::vector<std::string>& limits = {}) {
    std::vector<std::string> argv{rvenc_binary(), "keys", "create", "--db", db_url_, "--name", name};
    argv.insert(argv.end(), limits.begin(), limits.end());
    const auto created = lab_.run(*gateway_hosts_.at(i), argv);
    std::smatch key;
    std::smatch id;
    if (created.exit_code != 0 || !std::regex_search(created.output, key, std::regex(R"(sk_(live|test)_\S+)")) ||
        !std::regex_search(created.output, id, std::regex(R"(created key (\S+))")))
      throw std::runtime_error("rvenc keys create on " + gateway_hosts_[i]->name + ": " + created.output);
    return {key.str(0), id.str(1)};
  }

  // One sealed request through gateway `i` from the root namespace (its enclave attested once:
  // attestations without an API key are rate-limited per client address). Thread-safe.
  Answer send(std::size_t i, const std::string& key) {
    const auto sealed = [&] {
      std::lock_guard lock(attested_mutex_);
      if (attested_.size() <= i) attested_.resize(i + 1);
      if (!attested_[i])
        attested_[i].emplace(attest(gateway_urls_.at(i), dir_.file("platform.key")), first_model(gateway_urls_[i]));
      return seal_chat(attested_[i]->first, attested_[i]->second);
    }();
    auto response = post_chat(gateway_urls_[i], sealed.body, key);
    if (!response) return {0, response.error().message, ""};
    const unsigned status = response->result_int();
    return {status, status == 200 ? std::string() : error_code(response->body()),
            std::string(response->base()["X-Request-Id"])};
  }
  std::pair<unsigned, std::string> chat(std::size_t i, const std::string& key) {
    auto answer = send(i, key);
    return {answer.status, std::move(answer.code)};
  }

  // What gateway `i`'s /healthz says of the store ("ok", "down"; "no answer").
  std::string store_state(std::size_t i) {
    auto health = http::fetch("GET", gateway_urls_.at(i) + "/healthz");
    if (!health) return "no answer";
    const auto parsed = boost::json::parse(health->body());
    const auto* store = parsed.is_object() ? parsed.as_object().if_contains("store") : nullptr;
    return store && store->is_string() ? std::string(store->as_string()) : "no store in " + health->body();
  }

  [[nodiscard]] NetnsLab& lab() { return lab_; }
  [[nodiscard]] PgServer& postgres() { return *postgres_; }
  [[nodiscard]] const Host& db_host() const { return db_host_; }
  [[nodiscard]] const Host& gateway_host(std::size_t i) const { return *gateway_hosts_.at(i); }
  [[nodiscard]] ChildProcess& gateway(std::size_t i) { return *gateways_.at(i); }
  [[nodiscard]] ChildProcess& enclave() { return *enclave_; }
  [[nodiscard]] const std::string& gateway_url(std::size_t i) const { return gateway_urls_.at(i); }
  [[nodiscard]] const std::string& db_url() const { return db_url_; }
  [[nodiscard]] const std::string& redis_url() const { return redis_url_; }

 private:
  TempDir dir_;
  // Before lab_: postgres outlives the gateways (they stop first, their journals flushed).
  std::unique_ptr<PgServer> postgres_;
  NetnsLab lab_;  // after dir_: its services stop before the directory goes
  const Host& db_host_;
  const Host& enclave_host_;
  std::vector<const Host*> gateway_hosts_;
  std::string db_url_;
  std::string redis_url_;
  std::string enclave_url_;
  ChildProcess* enclave_ = nullptr;
  std::vector<std::string> gateway_urls_;
  std::vector<ChildProcess*> gateways_;
  std::mutex attested_mutex_;
  // Per gateway: the attestation verified through it and the model to ask for.
  std::vector<std::optional<std::pair<protocol::AttestationDocument, std::string>>> attested_;
};

class MultiHost : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      auto made = std::make_unique<Deployment>();
      made->start_postgres();
      made->start_redis();
      made->start_enclave();
      made->start_gateway(0);
      made->start_gateway(1);
      deployment = std::move(made);
    } catch (const std::exception& e) {
      setup_error = e.what();  // the half-made deployment is torn down by now
    }
  }
  static void TearDownTestSuite() { deployment.reset(); }

  void SetUp() override { ASSERT_TRUE(deployment) << "the deployment did not start: " << setup_error; }

  // The ledger's rows of `key_id` once `count` final ones are there (or the wait ran out).
  static std::vector<gateway::UsageRow> ledger(const std::string& key_id, std::size_t count) {
    return wait_for_usage(deployment->db_url(), key_id, count, 30s);
  }

  static inline std::unique_ptr<Deployment> deployment;
  static inline std::string setup_error;
};

// The request ids of `rows` (each must be final with status 200), or a failure naming the row.
::testing::AssertionResult charged_once(const std::vector<gateway::UsageRow>& rows, const std::set<std::string>& accepted) {
  std::set<std::string> charged;
  for (const auto& row : rows) {
    if (!row.final || row.status != 200)
      return ::testing::AssertionFailure() << "row " << row.request_id << ": final " << row.final << ", status " << row.status;
    if (!charged.insert(row.request_id).second)
      return ::testing::AssertionFailure() << "request " << row.request_id << " charged twice";
  }
  if (charged != accepted) {
    auto failure = ::testing::AssertionFailure() << charged.size() << " rows for " << accepted.size()
                                                 << " accepted requests; accepted, not charged:";
    for (const auto& id : accepted)
      if (!charged.contains(id)) failure << " " << id;
    failure << "; charged, not accepted:";
    for (const auto& id : charged)
      if (!accepted.contains(id)) failure << " " << id;
    return failure;
  }
  return ::testing::AssertionSuccess();
}

TEST_F(MultiHost, EveryServiceListensOnItsOwnHost) {
  for (std::size_t i : {0u, 1u}) {
    EXPECT_NE(deployment->gateway_url(i).find("//" + deployment->gateway_host(i).address + ":"), std::string::npos)
        << deployment->gateway_url(i);
  }
  EXPECT_NE(deployment->db_url().find("@" + deployment->db_host().address + ":"), std::string::npos)
      << deployment->db_url();
  if (deployment->lab().isolated()) {
    // Another namespace: gateway A's host has no route to the root namespace's loopback.
    auto probe = deployment->lab().run(deployment->gateway_host(0), {"ip", "-o", "addr", "show"});
    EXPECT_EQ(probe.output.find(deployment->gateway_host(1).address + "/"), std::string::npos) << probe.output;
    EXPECT_NE(probe.output.find(deployment->gateway_host(0).address + "/"), std::string::npos) << probe.output;
    // postgres listens on the database host's address, inside that host.
    const std::string address = deployment->db_host().address + ":" + std::to_string(deployment->postgres().port());
    auto listening = deployment->lab().run(deployment->db_host(), {"ss", "-Hltn"});
    EXPECT_NE(listening.output.find(address), std::string::npos)
        << listening.output;
  }
}

TEST_F(MultiHost, AKeyCreatedOnAsHostIsServedAtB) {
  const auto key = deployment->create_key(0, "made-at-a");
  EXPECT_EQ(deployment->chat(1, key.key), (std::pair<unsigned, std::string>{200, ""}));
  EXPECT_EQ(deployment->chat(0, key.key), (std::pair<unsigned, std::string>{200, ""}));
}

TEST_F(MultiHost, UsageFromBothGatewaysLandsInOneLedgerOncePerRequest) {
  const auto key = deployment->create_key(1, "ledger");
  std::set<std::string> accepted;
  for (std::size_t i = 0; i < 10; ++i) {
    const auto answer = deployment->send(i % 2, key.key);
    ASSERT_EQ(answer.status, 200u) << answer.code;
    ASSERT_FALSE(answer.request_id.empty());
    accepted.insert(answer.request_id);
  }
  ASSERT_EQ(accepted.size(), 10u);  // ten distinct request ids across the two gateways
  EXPECT_TRUE(charged_once(ledger(key.id, accepted.size()), accepted));
}

TEST_F(MultiHost, RedisSharedLimitHoldsAcrossBothGateways) {
  constexpr int kLimit = 4;
  const auto key = deployment->create_key(0, "shared", {"--rpm", std::to_string(kLimit)});
  const int admitted = count_admitted(3 * kLimit, [&](int i) { return deployment->chat(static_cast<std::size_t>(i % 2), key.key); });
  // One request refills every 15 s at 4 per minute: none comes back during the loop.
  EXPECT_EQ(admitted, kLimit);
}

TEST_F(MultiHost, KeyRevokedAtARefusedAtBWithinOneSecond) {
  const auto key = deployment->create_key(0, "revoked-at-a");
  ASSERT_EQ(deployment->chat(0, key.key).first, 200u);
  ASSERT_EQ(deployment->chat(1, key.key).first, 200u);
  // The operator revokes on gateway A's host, publishing through Redis.
  auto revoke = deployment->lab().run(deployment->gateway_host(0), {rvenc_binary(), "keys", "revoke", "--db", deployment->db_url(),
                                                                   "--redis", deployment->redis_url(), key.id});
  ASSERT_EQ(revoke.exit_code, 0) << revoke.output;
  const auto revoked_at = SteadyClock::now();
  // B heard it through Redis (and through PostgreSQL's NOTIFY), not through its keys_version poll.
  EXPECT_TRUE(deployment->gateway(1).wait_for_line("revocations: key " + key.id + " revoked"))
      << deployment->gateway(1).output();
  std::this_thread::sleep_until(revoked_at + 1s);
  // A request arriving one second after the revoke is refused at B.
  EXPECT_EQ(deployment->chat(1, key.key), (std::pair<unsigned, std::string>{403, "key_revoked"}));
  EXPECT_EQ(deployment->chat(0, key.key), (std::pair<unsigned, std::string>{403, "key_revoked"}));
}

// One client per gateway, each sending requests one after another (a short pause between) until
// stopped or it sent kMaxPerClient; what every request got.
class Load {
 public:
  static constexpr int kMaxPerClient = 300;  // the ledger check reads the newest 1000 rows

  Load(Deployment& deployment, std::string key) : key_(std::move(key)) {
    for (std::size_t i : {0u, 1u})
      clients_.emplace_back([this, &deployment, i] {
        for (int n = 0; n < kMaxPerClient && !stop_; ++n) {
          Answer answer;
          try {
            answer = deployment.send(i, key_);
          } catch (const std::exception& e) {  // a failed attestation: recorded, never thrown out of the thread
            answer.code = e.what();
          }
          std::lock_guard lock(mutex_);
          answers_.push_back(std::move(answer));
          accepted_ += answers_.back().status == 200 ? 1 : 0;
          std::this_thread::sleep_for(10ms);
        }
      });
  }
  ~Load() { stop(); }

  // Waits until `n` more requests were accepted than now (false when the clients stopped first).
  bool wait_for_more(int n) {
    const int target = accepted_ + n;
    return wait_until([&] { return accepted_ >= target; }, 60s);
  }
  void stop() {
    stop_ = true;
    for (auto& client : clients_)
      if (client.joinable()) client.join();
  }
  // After stop(): every answer.
  [[nodiscard]] const std::vector<Answer>& answers() const { return answers_; }

 private:
  std::string key_;
  std::atomic<bool> stop_ = false;
  std::atomic<int> accepted_ = 0;
  std::mutex mutex_;
  std::vector<Answer> answers_;
  std::vector<std::thread> clients_;
};

TEST_F(MultiHost, PostgresKilledUnderLoadAndRestartedChargesEveryAcceptedRequestOnce) {
  const auto key = deployment->create_key(0, "outage");
  // Known at both gateways before the store goes (an unknown key cannot be admitted without it).
  std::set<std::string> accepted;
  for (std::size_t i : {0u, 1u}) {
    const auto warm = deployment->send(i, key.key);
    ASSERT_EQ(warm.status, 200u) << warm.code;
    accepted.insert(warm.request_id);
  }
  Load load(*deployment, key.key);
  ASSERT_TRUE(load.wait_for_more(6));
  deployment->postgres().stop(/*crash=*/true);
  // Both gateways say so (their next key poll, their LISTEN connection).
  EXPECT_TRUE(wait_until([] { return deployment->store_state(0) == "down" && deployment->store_state(1) == "down"; }))
      << deployment->store_state(0) << " / " << deployment->store_state(1);
  // Cached keys are still served (--store-failure closed, 60 s of grace); an unknown key cannot
  // be checked: 503 overloaded.
  EXPECT_TRUE(load.wait_for_more(10));
  EXPECT_EQ(deployment->chat(1, "sk_live_" + std::string(43, 'y')), (std::pair<unsigned, std::string>{503, "overloaded"}));
  ASSERT_TRUE(deployment->postgres().start()) << deployment->postgres().output();
  EXPECT_TRUE(load.wait_for_more(6));
  load.stop();

  for (const auto& answer : load.answers()) {
    EXPECT_EQ(answer.status, 200u) << answer.code;
    if (answer.status == 200) accepted.insert(answer.request_id);
  }
  std::cout << "multihost: " << accepted.size() << " requests accepted through a PostgreSQL crash and restart\n";
  for (std::size_t i : {0u, 1u}) EXPECT_TRUE(deployment->gateway(i).running()) << deployment->gateway(i).output();
  EXPECT_TRUE(deployment->enclave().running()) << deployment->enclave().output();
  // The rows journaled meanwhile reach the ledger once the store is back, none twice.
  EXPECT_TRUE(charged_once(ledger(key.id, accepted.size()), accepted));
  EXPECT_TRUE(wait_until([] { return deployment->store_state(0) == "ok" && deployment->store_state(1) == "ok"; }, 30s))
      << deployment->store_state(0) << " / " << deployment->store_state(1);
}

}  // namespace
}  // namespace rvenc::test::multihost
