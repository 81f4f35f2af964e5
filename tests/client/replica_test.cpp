// The SDK with several enclaves behind one (fake) gateway (PROTOCOL.md section 7): keys per model,
// requests spread over the replicas by this client's in-flight count, and the one re-send, sealed
// anew, after unknown_key_id / enclave_busy / enclave_unavailable; never after the stream began.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "client/replica_set.hpp"
#include "fake_gateway.hpp"
#include "rvenc/client/client.hpp"
#include "rvenc/common/clock.hpp"

namespace rvenc::client {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using test::chunk_json;
using test::FakeGateway;
using test::Reply;

json::object request_for(std::string_view model) {
  return json::object{{"model", model}, {"messages", json::array{json::object{{"role", "user"}, {"content", "Hi"}}}}};
}

Client client_for(const FakeGateway& gateway) {
  ClientOptions options;
  options.api_key = std::string(FakeGateway::kApiKey);
  options.base_url = gateway.url();
  options.attestation.simulated_platform_key = gateway.platform_public_key();
  auto client = create_client(std::move(options));
  if (!client) throw std::runtime_error(client.error().to_string());
  return std::move(*client);
}

// Answers in three pieces `interval` apart, so concurrent requests are in flight together.
void slow_answers(FakeGateway& gateway, std::chrono::milliseconds interval) {
  gateway.set_script([interval](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    return Reply{.pieces = FakeGateway::sealed(sealer, {chunk_json({{"content", "a"}}), chunk_json({{"content", "b"}}, "stop")}),
                 .piece_interval = interval};
  });
}

// `count` concurrent non-streaming requests for `model` on one io_context; their results.
std::vector<Result<json::object>> concurrently(const Client& client, std::string_view model, int count) {
  asio::io_context io;
  std::vector<std::optional<Result<json::object>>> results(static_cast<std::size_t>(count));
  for (std::size_t i = 0; i < results.size(); ++i)
    asio::co_spawn(io, client.chat.completions.async_create(request_for(model)),
                   [&results, i](std::exception_ptr e, Result<json::object> r) {
                     results[i] = e ? Result<json::object>(fail(Errc::internal_error, "exception")) : std::move(r);
                   });
  io.run();
  std::vector<Result<json::object>> out;
  for (auto& result : results) out.push_back(std::move(*result));
  return out;
}

TEST(ClientReplicas, ConcurrentRequestsSpreadOverTheReplicasOfTheModel) {
  FakeGateway gateway;
  (void)gateway.add_replica({"demo"});
  slow_answers(gateway, std::chrono::milliseconds(100));
  auto client = client_for(gateway);
  for (const auto& result : concurrently(client, "demo", 16)) ASSERT_TRUE(result) << result.error().to_string();
  EXPECT_EQ(gateway.attestation_requests, 1);  // one all=1 answer gave the keys of both replicas
  // Each request goes to the replica with fewer of this client's requests in flight: 8 and 8
  // when all 16 are in flight together, and never all on one however the machine schedules.
  EXPECT_GE(gateway.replica_requests(0), 4);
  EXPECT_GE(gateway.replica_requests(1), 4);
  EXPECT_EQ(client.encryption_keys_for("demo").size(), 2u);
}

TEST(ClientReplicas, EachModelGoesToAnEnclaveServingIt) {
  FakeGateway gateway;
  const auto other = gateway.add_replica({"other"});
  auto client = client_for(gateway);
  auto answer = client.chat.completions.create(request_for("other"));
  ASSERT_TRUE(answer) << answer.error().to_string();
  EXPECT_EQ(gateway.replica_requests(other), 1);
  EXPECT_EQ(gateway.replica_requests(0), 0);
  ASSERT_TRUE(client.chat.completions.create(request_for("demo")));
  EXPECT_EQ(gateway.replica_requests(0), 1);
  const auto keys = client.encryption_keys_for("other");
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].key_id, gateway.replica_key_id(other));
  EXPECT_EQ(keys[0].models, std::vector<std::string>{"other"});
}

TEST(ClientReplicas, AModelNoEnclaveServesIsModelNotFound) {
  FakeGateway gateway;
  (void)gateway.add_replica({"other"});
  auto client = client_for(gateway);
  auto answer = client.chat.completions.create(request_for("missing"));
  ASSERT_FALSE(answer);
  EXPECT_EQ(answer.error().code, Errc::model_not_found);
  EXPECT_EQ(answer.error().http_status, 404);
  EXPECT_EQ(gateway.chat_requests, 0);
}

TEST(ClientReplicas, ABusyReplicaSendsTheRequestToTheOther) {
  FakeGateway gateway;
  (void)gateway.add_replica({"demo"});
  gateway.fail_replica(0, Errc::enclave_busy, 1000);  // replica 0 stays full
  auto client = client_for(gateway);
  for (int i = 0; i < 6; ++i) {
    std::vector<unsigned> statuses;
    auto answer = client.chat.completions.create(
        request_for("demo"), {.on_response = [&](const ResponseMeta& meta) { statuses.push_back(meta.status); }});
    ASSERT_TRUE(answer) << i << ": " << answer.error().to_string();
    EXPECT_EQ(statuses, std::vector<unsigned>{200});  // the 503 that caused the re-send is not reported
  }
  EXPECT_EQ(gateway.replica_requests(1), 6);
  EXPECT_EQ(client.encryption_keys_for("demo").size(), 2u);  // a busy enclave's keys stay valid
}

TEST(ClientReplicas, EveryReplicaBusyIsEnclaveBusyWithRetryAfterAfterOneResend) {
  FakeGateway gateway;
  (void)gateway.add_replica({"demo"});
  gateway.fail_replica(0, Errc::enclave_busy, 1000);
  gateway.fail_replica(1, Errc::enclave_busy, 1000);
  auto client = client_for(gateway);
  std::optional<ResponseMeta> reported;
  auto answer = client.chat.completions.create(request_for("demo"),
                                               {.on_response = [&](const ResponseMeta& meta) { reported = meta; }});
  ASSERT_FALSE(answer);
  EXPECT_EQ(answer.error().code, Errc::enclave_busy);
  EXPECT_EQ(answer.error().http_status, 503);
  EXPECT_EQ(gateway.chat_requests, 2);  // sent once more, never again
  EXPECT_EQ(gateway.replica_requests(0), 1);
  EXPECT_EQ(gateway.replica_requests(1), 1);  // the re-send went to the other replica
  ASSERT_TRUE(reported);
  bool retry_after = false;
  for (const auto& [name, value] : reported->headers) retry_after |= name == "Retry-After" || name == "retry-after";
  EXPECT_TRUE(retry_after);
}

TEST(ClientReplicas, AReplicaThatWentDownIsLeftAfterOneReattestation) {
  FakeGateway gateway;
  (void)gateway.add_replica({"demo"});
  slow_answers(gateway, std::chrono::milliseconds(50));
  auto client = client_for(gateway);
  ASSERT_TRUE(client.chat.completions.create(request_for("demo")));  // keys for both replicas
  ASSERT_EQ(client.encryption_keys_for("demo").size(), 2u);
  gateway.set_replica_down(0, true);
  const int served_by_0 = gateway.replica_requests(0);
  // Two requests in flight together go to different replicas: one meets the dead one.
  for (const auto& result : concurrently(client, "demo", 2)) ASSERT_TRUE(result) << result.error().to_string();
  EXPECT_EQ(gateway.attestation_requests, 2);
  EXPECT_EQ(gateway.replica_requests(0), served_by_0);
  const auto keys = client.encryption_keys_for("demo");
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].key_id, gateway.replica_key_id(1));
  for (const auto& result : concurrently(client, "demo", 4)) ASSERT_TRUE(result);
  EXPECT_EQ(gateway.attestation_requests, 2);  // the known replica is used without attesting again
}

TEST(ClientReplicas, AStreamCutAfterItBeganIsNeverSentAgain) {
  FakeGateway gateway;
  (void)gateway.add_replica({"demo"});
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    return Reply{.pieces = {sealer.seal_event(protocol::EventKind::data, chunk_json({{"content", "a"}}))}, .cut = true};
  });
  auto client = client_for(gateway);
  auto answer = client.chat.completions.create(request_for("demo"));
  ASSERT_FALSE(answer);
  EXPECT_EQ(answer.error().code, Errc::truncated_stream);
  EXPECT_EQ(gateway.chat_requests, 1);
}

TEST(ClientReplicas, PreGeneratedKeysOfSeveralReplicasAreUsedPerModel) {
  FakeGateway gateway;
  const auto other = gateway.add_replica({"other"});
  auto maker = client_for(gateway);
  auto demo_keys = maker.generate_replica_keys("demo");
  auto other_keys = maker.generate_replica_keys("other");
  ASSERT_TRUE(demo_keys && other_keys);
  ClientOptions options;
  options.api_key = std::string(FakeGateway::kApiKey);
  options.base_url = gateway.url();
  options.attestation.simulated_platform_key = gateway.platform_public_key();
  options.replica_keys = *demo_keys;
  options.replica_keys.insert(options.replica_keys.end(), other_keys->begin(), other_keys->end());
  auto client = create_client(std::move(options));
  ASSERT_TRUE(client);
  const int attested = gateway.attestation_requests;
  ASSERT_TRUE(client->chat.completions.create(request_for("other")));
  ASSERT_TRUE(client->chat.completions.create(request_for("demo")));
  EXPECT_EQ(gateway.attestation_requests, attested);
  EXPECT_EQ(gateway.replica_requests(other), 1);
  EXPECT_EQ(gateway.replica_requests(0), 1);
}

// A request that failed drops the keys it used, not keys of the same id that another request's
// re-attestation installed meanwhile (which would cost one more attestation).
TEST(ClientReplicaSets, AFailedRequestDropsOnlyTheKeysItUsed) {
  detail::ReplicaSets sets;
  EncryptionKeys made;
  made.key_id[0] = 7;
  made.not_after = unix_now() + 3600;
  const auto used = std::make_shared<const EncryptionKeys>(made);
  const auto newer = std::make_shared<const EncryptionKeys>(made);  // same key id, a later attestation
  const auto install = [&](const std::shared_ptr<const EncryptionKeys>& keys) {
    const std::lock_guard lock(sets.mutex());
    sets.install_locked("m", {std::make_shared<detail::Replica>(detail::Replica{keys, 0})});
  };
  const auto picked = [&]() -> const EncryptionKeys* {
    std::unique_lock lock(sets.mutex());
    auto lease = sets.pick_locked("m", std::nullopt, unix_now());
    const EncryptionKeys* keys = lease ? &lease->keys() : nullptr;
    lock.unlock();  // the lease's end takes the lock
    return keys;
  };
  install(used);
  install(newer);
  sets.forget(*used);  // the late failure of a request sent on the first keys
  EXPECT_EQ(picked(), newer.get());
  sets.forget(*newer);
  EXPECT_EQ(picked(), nullptr);
}

TEST(ClientReplicas, EncryptionKeysJsonCarriesTheirModels) {
  EncryptionKeys keys;
  keys.models = {"model-a", "model-b"};
  auto parsed = EncryptionKeys::from_json(keys.to_json());
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->models, keys.models);
  EXPECT_TRUE(parsed->serves("model-b"));
  EXPECT_FALSE(parsed->serves("model-c"));
  EXPECT_TRUE(EncryptionKeys{}.serves("anything"));  // no list: any model
  auto bad = EncryptionKeys::from_json(
      R"({"sharedSecret":")" + std::string(64, '0') + R"(","cipherText":")" + std::string(2240, '0') +
      R"(","keyId":")" + std::string(16, '0') + R"(","models":"model-a"})");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("models"), std::string::npos);
}

}  // namespace
}  // namespace rvenc::client
