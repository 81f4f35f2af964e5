// The client cache: one SDK client per API key, bounded and idle-expiring, and the rotation of
// its encryption keys, against an in-process gateway+enclave stand-in (real HTTP, real crypto).
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "client/fake_gateway.hpp"
#include "rvenc/proxy/client_cache.hpp"
#include "support/test_support.hpp"

namespace rvenc::proxy {
namespace {

namespace asio = boost::asio;

const std::string kKeyA = "sk_test_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const std::string kKeyB = "sk_test_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const std::string kKeyC = "sk_test_cccccccccccccccccccccccccccccccc";

client::ClientOptions options_for(const test::FakeGateway& gateway) {
  client::ClientOptions options;
  options.base_url = gateway.url();
  options.attestation.allowed_providers = {"simulated"};
  options.attestation.simulated_platform_key = gateway.platform_public_key();
  return options;
}

// A cache on the DEK store in `path`, as a proxy (re)started on it has.
struct CacheOnStore {
  CacheOnStore(const test::FakeGateway& gateway, const std::string& path)
      : store(DekStore::open(path).value()), cache(CacheOptions{}, options_for(gateway), store.get()) {}
  std::unique_ptr<DekStore> store;
  ClientCache cache;
};

Status run_prepare(ClientCache& cache, std::shared_ptr<CachedClient> entry, std::int64_t now) {
  asio::io_context io;
  auto future = asio::co_spawn(io, cache.prepare_keys(std::move(entry), "demo", now), asio::use_future);
  io.run();
  return future.get();
}

TEST(ClientCache, OneClientPerKeyBoundedAndIdleOnesDropped) {
  test::FakeGateway gateway;
  CacheOptions options;
  options.max_clients = 2;
  options.idle_timeout = std::chrono::seconds(100);
  ClientCache cache(options, options_for(gateway), nullptr);

  auto a = cache.get(kKeyA, 1000);
  ASSERT_TRUE(a) << a.error().to_string();
  auto again = cache.get(kKeyA, 1001);
  ASSERT_TRUE(again);
  EXPECT_EQ(a->get(), again->get());
  EXPECT_EQ((*a)->digest, api_key_digest(kKeyA));

  auto b = cache.get(kKeyB, 1002);
  ASSERT_TRUE(b);
  EXPECT_NE(a->get(), b->get());
  EXPECT_EQ(cache.size(), 2u);

  // Full: the least recently used (A, last used at 1001) makes room for C.
  ASSERT_TRUE(cache.get(kKeyC, 1003));
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_FALSE(cache.contains(kKeyA));
  EXPECT_TRUE(cache.contains(kKeyB));
  EXPECT_TRUE(cache.contains(kKeyC));

  // B idle since 1002, C used again at 1050: at 1102 only B has been idle for 100 s.
  ASSERT_TRUE(cache.get(kKeyC, 1050));
  EXPECT_EQ(cache.evict_idle(1102), 1u);
  EXPECT_FALSE(cache.contains(kKeyB));
  EXPECT_TRUE(cache.contains(kKeyC));
}

TEST(ClientCache, RefusesAMalformedKeyAsInvalidApiKey) {
  test::FakeGateway gateway;
  ClientCache cache(CacheOptions{}, options_for(gateway), nullptr);
  for (const std::string key : {"", "sk_test_with space", "sk_test_\x01control"}) {
    auto entry = cache.get(key, 1000);
    ASSERT_FALSE(entry) << key;
    EXPECT_EQ(entry.error().code, Errc::invalid_api_key);
    if (!key.empty()) {
      EXPECT_EQ(entry.error().message.find(key), std::string::npos) << "never echo the key";
    }
  }
  EXPECT_EQ(cache.size(), 0u);
}

TEST(ClientCache, ReusesKeysThenRotatesAfterTheRequestCountAndAge) {
  test::FakeGateway gateway;
  CacheOptions options;
  options.dek.max_requests = 3;
  options.dek.max_age = std::chrono::seconds(500);
  ClientCache cache(options, options_for(gateway), nullptr);
  auto entry = cache.get(std::string(test::FakeGateway::kApiKey), 1000);
  ASSERT_TRUE(entry);
  EXPECT_FALSE((*entry)->dek_of("demo"));

  ASSERT_TRUE(run_prepare(cache, *entry, 1000));
  ASSERT_TRUE((*entry)->dek_of("demo"));
  EXPECT_EQ(gateway.attestation_requests.load(), 1);
  EXPECT_EQ((*entry)->dek_of("demo")->keys.key_id, gateway.key_id());
  const crypto::XWingCipherText first = (*entry)->dek_of("demo")->keys.cipher_text;

  ASSERT_TRUE(run_prepare(cache, *entry, 1001));
  ASSERT_TRUE(run_prepare(cache, *entry, 1002));
  EXPECT_EQ((*entry)->dek_of("demo")->requests, 3u);
  EXPECT_EQ((*entry)->dek_of("demo")->keys.cipher_text, first) << "keys are reused until the policy says otherwise";
  EXPECT_EQ(gateway.attestation_requests.load(), 1);

  // The fourth request finds the keys used up: fresh attestation, fresh encapsulation.
  ASSERT_TRUE(run_prepare(cache, *entry, 1003));
  EXPECT_EQ(gateway.attestation_requests.load(), 2);
  EXPECT_NE((*entry)->dek_of("demo")->keys.cipher_text, first);
  EXPECT_EQ((*entry)->dek_of("demo")->requests, 1u);
  EXPECT_EQ((*entry)->dek_of("demo")->created_at, 1003);
  const crypto::XWingCipherText second = (*entry)->dek_of("demo")->keys.cipher_text;

  // Too old (500 s) even though barely used.
  ASSERT_TRUE(run_prepare(cache, *entry, 1503));
  EXPECT_EQ(gateway.attestation_requests.load(), 3);
  EXPECT_NE((*entry)->dek_of("demo")->keys.cipher_text, second);

  // The enclave gets a new key: new keys made from then on are for it.
  gateway.rotate_key();
  ASSERT_TRUE(run_prepare(cache, *entry, 2100));
  EXPECT_EQ((*entry)->dek_of("demo")->keys.key_id, gateway.key_id());
}

TEST(ClientCache, StoresNewKeysAndStartsFromStoredOnes) {
  test::FakeGateway gateway;
  test::TempDir dir;
  const std::string key(test::FakeGateway::kApiKey);
  crypto::XWingCipherText stored_cipher_text{};
  {
    CacheOnStore proxy(gateway, dir.file("deks.json"));
    auto entry = proxy.cache.get(key, 1000);
    ASSERT_TRUE(entry);
    ASSERT_TRUE(run_prepare(proxy.cache, *entry, 1000));
    EXPECT_EQ(proxy.store->size(), 0u) << "keys are stored only once a request with them succeeded";
    proxy.cache.confirm(**entry, "demo");
    EXPECT_EQ(proxy.store->size(), 1u);
    ASSERT_TRUE(run_prepare(proxy.cache, *entry, 1001));
    stored_cipher_text = (*entry)->dek_of("demo")->keys.cipher_text;
    ASSERT_TRUE(proxy.cache.flush());
  }
  EXPECT_EQ(gateway.attestation_requests.load(), 1);

  // A restarted proxy: the keys come from the store, no attestation round trip.
  CacheOnStore restarted(gateway, dir.file("deks.json"));
  auto entry = restarted.cache.get(key, 2000);
  ASSERT_TRUE(entry);
  ASSERT_TRUE((*entry)->dek_of("demo"));
  EXPECT_EQ((*entry)->dek_of("demo")->keys.cipher_text, stored_cipher_text);
  EXPECT_EQ((*entry)->dek_of("demo")->requests, 2u);
  ASSERT_TRUE(run_prepare(restarted.cache, *entry, 2000));
  EXPECT_EQ(gateway.attestation_requests.load(), 1);
  EXPECT_EQ((*entry)->dek_of("demo")->requests, 3u);
}

TEST(ClientCache, KeysTheSdkReplacedAreTheOnesStored) {
  test::FakeGateway gateway;
  test::TempDir dir;
  const std::string key(test::FakeGateway::kApiKey);
  const boost::json::object chat{{"model", "demo"},
                                 {"messages", boost::json::array{boost::json::object{{"role", "user"}, {"content", "hi"}}}}};
  {
    CacheOnStore proxy(gateway, dir.file("deks.json"));
    auto entry = proxy.cache.get(key, 1000);
    ASSERT_TRUE(entry);
    ASSERT_TRUE(run_prepare(proxy.cache, *entry, 1000));
    // The enclave restarts with a new key: the call gets 404 unknown_key_id, and the SDK
    // re-attests, makes new keys and retries.
    gateway.rotate_key();
    auto answer = (*entry)->client.chat.completions.create(chat);
    ASSERT_TRUE(answer) << answer.error().to_string();
    proxy.cache.confirm(**entry, "demo");
    EXPECT_EQ((*entry)->dek_of("demo")->keys.key_id, gateway.key_id());
    ASSERT_TRUE(proxy.cache.flush());
  }
  EXPECT_EQ(gateway.attestation_requests.load(), 2);

  // A restarted proxy starts from the keys that work: no 404, no attestation.
  CacheOnStore restarted(gateway, dir.file("deks.json"));
  auto entry = restarted.cache.get(key, 2000);
  ASSERT_TRUE(entry);
  ASSERT_TRUE((*entry)->dek_of("demo"));
  EXPECT_EQ((*entry)->dek_of("demo")->keys.key_id, gateway.key_id());
  ASSERT_TRUE(run_prepare(restarted.cache, *entry, 2000));
  const int chats_before = gateway.chat_requests.load();
  ASSERT_TRUE((*entry)->client.chat.completions.create(chat));
  EXPECT_EQ(gateway.chat_requests.load(), chats_before + 1);
  EXPECT_EQ(gateway.attestation_requests.load(), 2);
}

TEST(ClientCache, ForgetDropsTheEntry) {
  test::FakeGateway gateway;
  ClientCache cache(CacheOptions{}, options_for(gateway), nullptr);
  auto entry = cache.get(kKeyA, 1000);
  ASSERT_TRUE(entry);
  cache.forget(**entry);
  EXPECT_FALSE(cache.contains(kKeyA));
  auto fresh = cache.get(kKeyA, 1001);
  ASSERT_TRUE(fresh);
  EXPECT_NE(fresh->get(), entry->get());
}

TEST(ClientCache, FailedFirstKeysFailTheRequest) {
  test::FakeGateway gateway;
  gateway.set_attestation_flaw(test::AttestationFlaw::other_platform_key);
  ClientCache cache(CacheOptions{}, options_for(gateway), nullptr);
  auto entry = cache.get(std::string(test::FakeGateway::kApiKey), 1000);
  ASSERT_TRUE(entry);
  auto status = run_prepare(cache, *entry, 1000);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, Errc::attestation_failed);
  EXPECT_FALSE((*entry)->dek_of("demo"));
}

// Issue 30 item 3: a rotation that fails attestation fails closed: the old keys are dropped
// (entry and store), and requests fail until an attestation succeeds.
TEST(ClientCache, FailedRotationDropsTheOldKeysUntilAttestationSucceeds) {
  test::FakeGateway gateway;
  test::TempDir dir;
  const std::string key(test::FakeGateway::kApiKey);
  auto store = DekStore::open(dir.file("deks.json")).value();
  CacheOptions options;
  options.dek.max_requests = 1;
  ClientCache cache(options, options_for(gateway), store.get());
  auto entry = cache.get(key, 1000);
  ASSERT_TRUE(entry);
  ASSERT_TRUE(run_prepare(cache, *entry, 1000));
  cache.confirm(**entry, "demo");
  ASSERT_EQ(store->size(), 1u);

  gateway.set_attestation_flaw(test::AttestationFlaw::other_platform_key);
  for (int i = 0; i < 2; ++i) {
    auto status = run_prepare(cache, *entry, 1001 + i);
    ASSERT_FALSE(status) << "no request with the old keys";
    EXPECT_EQ(status.error().code, Errc::attestation_failed);
    EXPECT_NE(status.error().message.find("nothing is sent until it does"), std::string::npos) << status.error().message;
    EXPECT_FALSE((*entry)->dek_of("demo"));
  }
  EXPECT_EQ(store->size(), 0u) << "a restarted proxy does not find them either";

  gateway.set_attestation_flaw(test::AttestationFlaw::none);
  ASSERT_TRUE(run_prepare(cache, *entry, 1003));
  ASSERT_TRUE((*entry)->dek_of("demo"));
  EXPECT_EQ(gateway.attestation_requests.load(), 4);
}

TEST(ClientCache, StoredKeysVerifiedUnderOtherTrustSettingsAreNotUsed) {
  test::FakeGateway gateway;
  test::TempDir dir;
  const std::string key(test::FakeGateway::kApiKey);
  {
    CacheOnStore proxy(gateway, dir.file("deks.json"));
    auto entry = proxy.cache.get(key, 1000);
    ASSERT_TRUE(entry);
    ASSERT_TRUE(run_prepare(proxy.cache, *entry, 1000));
    proxy.cache.confirm(**entry, "demo");
    ASSERT_EQ(proxy.store->size(), 1u);
  }
  // Restarted with a measurement requirement: the stored keys were not checked against it.
  auto store = DekStore::open(dir.file("deks.json")).value();
  auto strict = options_for(gateway);
  strict.attestation.expected_measurement = gateway.measurement();
  ClientCache cache(CacheOptions{}, strict, store.get());
  EXPECT_EQ(store->size(), 0u);
  auto entry = cache.get(key, 2000);
  ASSERT_TRUE(entry);
  EXPECT_FALSE((*entry)->dek_of("demo")) << "no stored keys under new trust settings";
  ASSERT_TRUE(run_prepare(cache, *entry, 2000));
  EXPECT_EQ(gateway.attestation_requests.load(), 2);
}

}  // namespace
}  // namespace rvenc::proxy

namespace rvenc::proxy {
namespace {

// Several enclaves (PROTOCOL.md section 7): the keys of every replica of a model are made, stored
// under (API key digest, model, keyId) and found again by a restarted proxy; another model gets
// its own set.
TEST(ClientCacheReplicas, KeysPerModelAndReplicaAreStoredAndReloaded) {
  test::FakeGateway gateway;
  (void)gateway.add_replica({"demo"});
  const auto other = gateway.add_replica({"other"});
  test::TempDir dir;
  const std::string key(test::FakeGateway::kApiKey);
  {
    CacheOnStore proxy(gateway, dir.file("deks.json"));
    auto entry = proxy.cache.get(key, 1000);
    ASSERT_TRUE(entry);
    ASSERT_TRUE(run_prepare(proxy.cache, *entry, 1000));
    asio::io_context io;
    auto future = asio::co_spawn(io, proxy.cache.prepare_keys(*entry, "other", 1000), asio::use_future);
    io.run();
    ASSERT_TRUE(future.get());
    proxy.cache.confirm(**entry, "demo");
    proxy.cache.confirm(**entry, "other");
    EXPECT_EQ(proxy.store->size(), 3u);  // two replicas of demo, one of other
    const auto digest = api_key_digest(key);
    EXPECT_TRUE(proxy.store->find(DekStore::entry_key(digest, "other", gateway.replica_key_id(other))));
    EXPECT_TRUE(proxy.store->find(DekStore::entry_key(digest, "demo", gateway.replica_key_id(0))));
  }
  const int attested = gateway.attestation_requests;
  CacheOnStore restarted(gateway, dir.file("deks.json"));
  auto entry = restarted.cache.get(key, 2000);
  ASSERT_TRUE(entry);
  EXPECT_EQ((*entry)->models.at("demo").deks.size(), 2u);
  ASSERT_TRUE((*entry)->client.chat.completions.create(
      boost::json::object{{"model", "other"}, {"messages", boost::json::array{boost::json::object{{"role", "user"}, {"content", "hi"}}}}}));
  EXPECT_EQ(gateway.replica_requests(other), 1);
  EXPECT_EQ(gateway.attestation_requests, attested) << "stored keys of every model are used without attesting";
}

// A store written by an older release (one entry per API key, indexed by its digest alone) still
// loads; its keys serve any model until they rotate into the model's own set.
TEST(ClientCacheReplicas, AStoreOfAnOlderReleaseStillServes) {
  test::FakeGateway gateway;
  test::TempDir dir;
  const std::string key(test::FakeGateway::kApiKey);
  auto keys = client::generate_encryption_keys(options_for(gateway));
  ASSERT_TRUE(keys);
  keys->models.clear();
  {
    auto store = DekStore::open(dir.file("deks.json")).value();
    ClientCache cache(CacheOptions{}, options_for(gateway), store.get());
    ASSERT_TRUE(store->put(api_key_digest(key), Dek{*keys, 1000, 5, trust_digest(options_for(gateway).attestation)}));
  }
  const int attested = gateway.attestation_requests;
  CacheOnStore restarted(gateway, dir.file("deks.json"));
  auto entry = restarted.cache.get(key, 2000);
  ASSERT_TRUE(entry);
  ASSERT_TRUE((*entry)->dek_of("demo"));
  EXPECT_EQ((*entry)->dek_of("demo")->keys.cipher_text, keys->cipher_text);
  ASSERT_TRUE(run_prepare(restarted.cache, *entry, 2000));
  EXPECT_EQ((*entry)->dek_of("demo")->requests, 6u);
  EXPECT_EQ(gateway.attestation_requests, attested);
}

}  // namespace
}  // namespace rvenc::proxy
