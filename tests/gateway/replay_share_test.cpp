// Finding 4 of issue 30, with real processes: a gateway in front of an enclave whose replay cache
// holds 300 requests (`--replay-cache-entries 300`, so 64 per tenant). Before the fix, 300
// authentic but refused requests of an sk_test key filled the cache (entries were kept from
// decryption on, refused or not, with no share per tenant) and the next sk_live request got
// 503 overloaded.
#include <gtest/gtest.h>

#include <boost/beast/http/field.hpp>

#include "gateway_test_support.hpp"
#include "rvenc/gateway/key_store.hpp"

namespace rvenc::gateway {
namespace {

using namespace test_support;

std::string chat_json(const std::string& model) {
  return R"({"model":")" + model + R"(","stream":true,"messages":[{"role":"user","content":"hi"}]})";
}

TEST(ReplayShare, TestKeyFloodDoesNotStopALiveKeyAndATenantBeyondItsShareGets429) {
  test::TempDir dir;
  const std::string db = dir.file("gateway.db");
  // rvenc-demo (test keys may use it) and live-only, which a test key may not use (its upstream
  // is never reached: the test-key check comes first).
  auto enclave = start_enclave(dir, 0,
                               {"--replay-cache-entries", "300", "--demo-model", "rvenc-demo", "--upstream",
                                "live-only=http://127.0.0.1:9/v1"});
  const auto enclave_url = enclave->wait_for_url();
  ASSERT_TRUE(enclave_url) << enclave->output();
  auto gateway = start_gateway({*enclave_url}, db, dir.file("gateway.token"));
  const auto gateway_url = gateway->wait_for_url();
  ASSERT_TRUE(gateway_url) << gateway->output();

  auto store = KeyStore::open(db);
  ASSERT_TRUE(store);
  const auto test_key = store->create_key("tester", KeyEnv::test, {});
  const auto live_key = store->create_key("customer", KeyEnv::live, {});
  ASSERT_TRUE(test_key && live_key);
  ASSERT_TRUE(test_key->key.starts_with("sk_test_"));
  const auto doc = attest(*gateway_url, dir.file("platform.key"));
  auto send = [&](const std::string& model, const std::string& api_key) {
    auto sealed = test::seal(doc.public_key, chat_json(model), protocol::Version::v3, std::nullopt, doc.key_id);
    auto response = post_chat(*gateway_url, sealed.body, api_key);
    EXPECT_TRUE(response) << response.error().to_string();
    return std::make_pair(std::move(sealed), response ? std::move(*response) : http::Response{});
  };

  // 300 authentic requests that the enclave refuses after decrypting them.
  for (int i = 0; i < 300; ++i) {
    const bool not_served = i % 2 == 0;
    const auto [sealed, refused] = send(not_served ? "not-served" : "live-only", test_key->key);
    ASSERT_EQ(refused.result_int(), not_served ? 400u : 403u) << i << ": " << refused.body();
    ASSERT_EQ(error_code(refused.body()), not_served ? "invalid_inference" : "test_key_not_allowed") << i;
  }
  const auto [live_sealed, live] = send("rvenc-demo", live_key->key);
  ASSERT_EQ(live.result_int(), 200u) << live.body();
  EXPECT_TRUE(open_stream(live_sealed, rvenc::test::sse_events(live.body()))) << live.body();

  // Valid requests of the test key take room, up to its share, and then it alone is refused.
  for (int i = 0; i < 64; ++i) ASSERT_EQ(send("rvenc-demo", test_key->key).second.result_int(), 200u) << i;
  const auto [over_sealed, over] = send("rvenc-demo", test_key->key);
  EXPECT_EQ(over.result_int(), 429u) << over.body();
  EXPECT_EQ(error_code(over.body()), "replay_quota_exceeded");
  const std::string retry_after(over[boost::beast::http::field::retry_after]);
  ASSERT_FALSE(retry_after.empty()) << "the gateway passes the enclave's Retry-After on";
  EXPECT_GE(std::stoll(retry_after), 1);
  EXPECT_LE(std::stoll(retry_after), 660);
  const auto [again_sealed, again] = send("rvenc-demo", live_key->key);
  ASSERT_EQ(again.result_int(), 200u) << again.body();
  EXPECT_TRUE(open_stream(again_sealed, rvenc::test::sse_events(again.body())));
  EXPECT_EQ(gateway->stop(), 0);
  EXPECT_EQ(enclave->stop(), 0);
}

}  // namespace
}  // namespace rvenc::gateway
