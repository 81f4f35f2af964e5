// Several "machines" with real rvenc processes (tests/multihost/netns_lab.hpp): Redis on one host,
// an enclave on another, gateways A and B on two more, the client in the root namespace. Today's
// multi-host features: one set of Redis-shared limits across both gateways, and a key revoked at
// A refused at B within a second (Redis pub/sub). The deployment takes a --db per gateway, so the
// PostgreSQL store (a service started with NetnsLab::start_service) plugs in beside SQLite.
#include <chrono>
#include <fstream>
#include <iostream>
#include <thread>

#include <gtest/gtest.h>

#include "gateway_test_support.hpp"
#include "netns_lab.hpp"
#include "rvenc/gateway/key_store.hpp"

namespace rvenc::test::multihost {
namespace {

using namespace gateway::test_support;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

// The hosts and processes of one multi-host deployment.
class Deployment {
 public:
  Deployment()
      : redis_host_(lab_.add_host("redis")),
        enclave_host_(lab_.add_host("enclave")),
        gateway_hosts_{&lab_.add_host("gateway-a"), &lab_.add_host("gateway-b")} {}

  // redis-server on its host; its URL ("redis://ADDRESS:PORT").
  std::string start_redis() {
    const std::string port = std::to_string(free_port());
    // Without a password Redis answers only loopback clients unless protected mode is off (the
    // lab's network is the test's own).
    auto& redis = lab_.start_service(redis_host_, {"redis-server", "--port", port, "--bind", redis_host_.address,
                                                   "--protected-mode", "no", "--save", "", "--appendonly", "no"});
    if (!redis.wait_for_line("Ready to accept connections")) throw std::runtime_error("redis: " + redis.output());
    redis_url_ = "redis://" + redis_host_.address + ":" + port;
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
    return *url;
  }

  // `rvenc gateway` number `i` on its host, on the key store `db` (a SQLite file here; a
  // postgresql:// URL once that store exists), sharing limits and revocations through Redis.
  ChildProcess& start_gateway(std::size_t i, const std::string& db) {
    auto& gateway = lab_.start_service(
        *gateway_hosts_.at(i), {rvenc_binary(), "gateway", "--listen", gateway_hosts_[i]->address + ":0", "--db", db,
                                "--enclave", enclave_url_, "--enclave-token-file", dir_.file("gateway.token"),
                                "--redis", redis_url_, "--redis-failure", "closed"});
    auto url = gateway.wait_for_url();
    if (!url) throw std::runtime_error("gateway: " + gateway.output());
    if (!gateway.wait_for_line("subscribed to rvenc:revocations")) throw std::runtime_error("gateway: " + gateway.output());
    gateway_urls_.resize(std::max(gateway_urls_.size(), i + 1));
    gateway_urls_[i] = *url;
    gateways_.resize(std::max(gateways_.size(), i + 1));
    gateways_[i] = &gateway;
    return gateway;
  }

  // One sealed request through gateway `i` from the root namespace: its status and error code.
  std::pair<unsigned, std::string> chat(std::size_t i, const std::string& key) {
    const auto sealed = seal_chat(gateway_urls_.at(i), dir_.file("platform.key"));
    auto response = post_chat(gateway_urls_[i], sealed.body, key);
    if (!response) return {0, response.error().message};
    const unsigned status = response->result_int();
    return {status, status == 200 ? std::string() : error_code(response->body())};
  }

  [[nodiscard]] NetnsLab& lab() { return lab_; }
  [[nodiscard]] const Host& gateway_host(std::size_t i) const { return *gateway_hosts_.at(i); }
  [[nodiscard]] ChildProcess& gateway(std::size_t i) { return *gateways_.at(i); }
  [[nodiscard]] const std::string& gateway_url(std::size_t i) const { return gateway_urls_.at(i); }
  [[nodiscard]] const std::string& redis_url() const { return redis_url_; }
  [[nodiscard]] std::string file(const std::string& name) const { return dir_.file(name); }

 private:
  TempDir dir_;
  NetnsLab lab_;  // after dir_: its services stop before the directory goes
  const Host& redis_host_;
  const Host& enclave_host_;
  std::vector<const Host*> gateway_hosts_;
  std::string redis_url_;
  std::string enclave_url_;
  std::vector<std::string> gateway_urls_;
  std::vector<ChildProcess*> gateways_;
};

class MultiHost : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      auto made = std::make_unique<Deployment>();
      db = made->file("keys.db");
      // Created before the gateways start (two opening a fresh database at once can hit "database is locked").
      if (auto store = gateway::KeyStore::open(db); !store) throw std::runtime_error(store.error().message);
      made->start_redis();
      made->start_enclave();
      made->start_gateway(0, db);
      made->start_gateway(1, db);
      deployment = std::move(made);
    } catch (const std::exception& e) {
      setup_error = e.what();  // the half-made deployment is torn down by now
    }
  }
  static void TearDownTestSuite() { deployment.reset(); }

  void SetUp() override { ASSERT_TRUE(deployment) << "the deployment did not start: " << setup_error; }

  static gateway::CreatedKey create_key(const std::string& name, gateway::KeyLimits limits = {}) {
    return gateway::KeyStore::open(db).value().create_key(name, gateway::KeyEnv::live, limits).value();
  }

  static inline std::unique_ptr<Deployment> deployment;
  static inline std::string db;
  static inline std::string setup_error;
};

TEST_F(MultiHost, GatewaysListenOnTheirOwnHosts) {
  for (std::size_t i : {0u, 1u}) {
    EXPECT_NE(deployment->gateway_url(i).find("//" + deployment->gateway_host(i).address + ":"), std::string::npos)
        << deployment->gateway_url(i);
  }
  if (deployment->lab().isolated()) {
    // Another namespace: gateway A's host has no route to the root namespace's loopback.
    auto probe = deployment->lab().run(deployment->gateway_host(0), {"ip", "-o", "addr", "show"});
    EXPECT_EQ(probe.output.find(deployment->gateway_host(1).address + "/"), std::string::npos) << probe.output;
    EXPECT_NE(probe.output.find(deployment->gateway_host(0).address + "/"), std::string::npos) << probe.output;
  }
}

TEST_F(MultiHost, RedisSharedLimitHoldsAcrossBothGateways) {
  constexpr int kLimit = 4;
  const auto key = create_key("shared", {kLimit, 0, 0});
  const int admitted = count_admitted(3 * kLimit, [&](int i) { return deployment->chat(static_cast<std::size_t>(i % 2), key.key); });
  // One request refills every 15 s at 4 per minute: none comes back during the loop.
  EXPECT_EQ(admitted, kLimit);
}

TEST_F(MultiHost, KeyRevokedAtARefusedAtBWithinOneSecond) {
  const auto key = create_key("revoked-at-a");
  ASSERT_EQ(deployment->chat(0, key.key).first, 200u);
  ASSERT_EQ(deployment->chat(1, key.key).first, 200u);
  // The operator revokes on gateway A's host, publishing through Redis.
  auto revoke = deployment->lab().run(deployment->gateway_host(0), {rvenc_binary(), "keys", "revoke", "--db", db,
                                                                   "--redis", deployment->redis_url(), key.record.id});
  ASSERT_EQ(revoke.exit_code, 0) << revoke.output;
  const auto revoked_at = SteadyClock::now();
  // B heard it through Redis, not through its database poll.
  EXPECT_TRUE(deployment->gateway(1).wait_for_line("revocations: key " + key.record.id + " revoked"))
      << deployment->gateway(1).output();
  std::this_thread::sleep_until(revoked_at + 1s);
  // A request arriving one second after the revoke is refused at B.
  EXPECT_EQ(deployment->chat(1, key.key), (std::pair<unsigned, std::string>{403, "key_revoked"}));
  EXPECT_EQ(deployment->chat(0, key.key), (std::pair<unsigned, std::string>{403, "key_revoked"}));
}

}  // namespace
}  // namespace rvenc::test::multihost
