// Two real gateway processes sharing one Redis and one database: one set of limits, revocations
// seen by both, and the closed failure policy while Redis is down.
#include <gtest/gtest.h>

#include "gateway_test_support.hpp"
#include "redis_server.hpp"
#include "rvenc/gateway/api_key.hpp"

namespace rvenc::gateway {
namespace {

using namespace test_support;
using namespace std::chrono_literals;
using test::eventually;
using test::RedisServer;

class RedisGateways : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(redis.ready());
    // Created first: two gateways creating a fresh database at the same moment can hit
    // "database is locked" on PRAGMA journal_mode=WAL (KeyStore::open; reported to the gateway owner).
    ASSERT_TRUE(KeyStore::open(db));
    enclave = start_enclave(dir);
    auto url = enclave->wait_for_url();
    ASSERT_TRUE(url) << enclave->output();
    for (auto* gateway : {&a, &b}) {
      std::vector<std::string> argv{rvenc::test::rvenc_binary(), "gateway", "--listen", "127.0.0.1:0", "--db", db,
                                    "--enclave", *url, "--enclave-token-file", dir.file("gateway.token"),
                                    "--redis", redis.url(2), "--redis-failure", "closed"};
      *gateway = std::make_unique<rvenc::test::ChildProcess>(argv);
    }
    auto url_a = a->wait_for_url();
    auto url_b = b->wait_for_url();
    ASSERT_TRUE(url_a) << a->output();
    ASSERT_TRUE(url_b) << b->output();
    gateway_urls = {*url_a, *url_b};
    // Both subscribed to revocations (the log line comes from the subscriber).
    ASSERT_TRUE(a->wait_for_line("subscribed to rvenc:revocations")) << a->output();
    ASSERT_TRUE(b->wait_for_line("subscribed to rvenc:revocations")) << b->output();
  }

  CreatedKey create_key(const std::string& name, KeyLimits limits = {}) {
    auto store = KeyStore::open(db);
    return store.value().create_key(name, KeyEnv::live, limits).value();
  }

  // One sealed request through gateway `i`: its status and error code ("" on success).
  std::pair<unsigned, std::string> chat(std::size_t i, const std::string& key) {
    const auto sealed = seal_chat(gateway_urls[i], dir.file("platform.key"));
    auto response = post_chat(gateway_urls[i], sealed.body, key);
    if (!response) return {0, response.error().message};
    const unsigned status = response->result_int();
    return {status, status == 200 ? std::string() : error_code(response->body())};
  }

  rvenc::test::TempDir dir;
  std::string db = dir.file("gateway.db");
  RedisServer redis;
  std::unique_ptr<rvenc::test::ChildProcess> enclave;
  std::unique_ptr<rvenc::test::ChildProcess> a;
  std::unique_ptr<rvenc::test::ChildProcess> b;
  std::vector<std::string> gateway_urls;
};

TEST_F(RedisGateways, ExactlyTheKeysLimitGetsThroughAcrossBoth) {
  constexpr int kLimit = 4;
  const auto key = create_key("shared", {kLimit, 0, 0});
  const int admitted = count_admitted(3 * kLimit, [&](int i) { return chat(static_cast<std::size_t>(i % 2), key.key); });
  // One request refills every 15 s at 4 per minute: none comes back during the loop.
  EXPECT_EQ(admitted, kLimit);
}

TEST_F(RedisGateways, ARevokePublishedThroughRedisReachesBoth) {
  const auto key = create_key("revoked-soon");
  EXPECT_EQ(chat(0, key.key).first, 200u);
  EXPECT_EQ(chat(1, key.key).first, 200u);
  auto revoke = run_cli({"keys", "revoke", "--db", db, "--redis", redis.url(2), key.record.id});
  ASSERT_EQ(revoke.exit_code, 0) << revoke.out;
  EXPECT_NE(revoke.out.find("2 gateway"), std::string::npos) << revoke.out;
  // Both heard it through Redis (not only through their database poll).
  const std::string heard = "revocations: key " + key.record.id + " revoked";
  EXPECT_TRUE(a->wait_for_line(heard)) << a->output();
  EXPECT_TRUE(b->wait_for_line(heard)) << b->output();
  for (std::size_t i : {0u, 1u}) {
    EXPECT_TRUE(eventually([&] { return chat(i, key.key) == std::pair<unsigned, std::string>{403, "key_revoked"}; }));
  }
}

TEST_F(RedisGateways, RevokeStandsWhenRedisCannotBeReached) {
  const auto key = create_key("revoked-anyway");
  const std::string nowhere = "redis://127.0.0.1:" + std::to_string(rvenc::test::free_port());
  auto revoke = run_cli({"keys", "revoke", "--db", db, "--redis", nowhere, key.record.id});
  EXPECT_EQ(revoke.exit_code, 0) << revoke.out;
  EXPECT_EQ(revoke.out.find("published"), std::string::npos) << revoke.out;
  // The database poll still tells both gateways.
  for (std::size_t i : {0u, 1u}) {
    EXPECT_TRUE(eventually([&] { return chat(i, key.key) == std::pair<unsigned, std::string>{403, "key_revoked"}; }));
  }
}

TEST_F(RedisGateways, ClosedPolicyRefusesWhileRedisIsDownThenRecovers) {
  const auto limited = create_key("limited", {1000, 0, 0});
  const auto unlimited = create_key("unlimited");
  EXPECT_EQ(chat(0, limited.key).first, 200u);
  redis.kill();
  const auto down = chat(1, limited.key);
  EXPECT_EQ(down.first, 503u);
  EXPECT_EQ(down.second, "overloaded");
  // Keys without limits do not need Redis.
  EXPECT_EQ(chat(1, unlimited.key).first, 200u);
  redis.start();
  ASSERT_TRUE(redis.ready());
  for (std::size_t i : {0u, 1u}) EXPECT_TRUE(eventually([&] { return chat(i, limited.key).first == 200u; }));
  EXPECT_NE(b->output().find("rate limiter: redis at"), std::string::npos) << b->output();
}

}  // namespace
}  // namespace rvenc::gateway
