// The enclave's handlers driven through http::RecordingWriter: no sockets, real crypto.
#include <gtest/gtest.h>

#include <atomic>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "enclave_test_support.hpp"
#include "rvenc/enclave/service.hpp"
#include "rvenc/protocol/attestation.hpp"

namespace rvenc::enclave {
namespace {

namespace json = boost::json;
using test::chat_json;
using test::error_code_of;
using test::run_coroutine;
using test::seal;

constexpr std::string_view kGatewayToken = "gw-token-for-tests";

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { make_service(ServiceOptions{}); }

  void make_service(ServiceOptions options, std::int64_t key_not_after = 2'000'000'000) {
    crypto::XWingSeed seed;
    crypto::random_bytes(seed.span());
    key_ = std::make_shared<EnclaveKey>(seed, key_not_after);
    crypto::Ed25519Seed platform;
    crypto::random_bytes(platform.span());
    provider_ = std::shared_ptr<AttestationProvider>(std::move(*SimulatedProvider::create(platform)));
    std::map<std::string, std::shared_ptr<Engine>> engines;
    engines["rvenc-demo"] = std::make_shared<DemoEngine>();
    engines["other-model"] = std::make_shared<DemoEngine>(DemoEngineOptions{"other-model"});
    service_ = std::make_unique<EnclaveService>(std::move(options), key_, provider_, std::move(engines));
  }

  http::RecordingWriter call(http::Request request) {
    http::RecordingWriter writer;
    const auto router = service_->router();
    run_coroutine([&]() -> http::awaitable<void> { co_await router(request, writer); });
    return writer;
  }

  http::RecordingWriter post_chat(const std::string& body, const http::Fields& headers = {}) {
    http::Request request{http::Verb::post, "/rvenc/chat/completions", http::kHttp11};
    for (const auto& f : headers) request.set(f.name_string(), f.value());
    request.body() = body;
    request.prepare_payload();
    return call(std::move(request));
  }

  std::shared_ptr<EnclaveKey> key_;
  std::shared_ptr<AttestationProvider> provider_;
  std::unique_ptr<EnclaveService> service_;
};

TEST_F(ServiceTest, AttestationDocumentVerifies) {
  const auto challenge = crypto::random_array<protocol::kChallengeBytes>();
  auto writer = call(http::Request{http::Verb::get, "/rvenc/attestation?challenge=" + to_hex(challenge), 11});
  ASSERT_EQ(writer.status(), 200u) << writer.body();
  auto doc = protocol::parse_attestation(writer.body());
  ASSERT_TRUE(doc) << doc.error().to_string();
  EXPECT_EQ(doc->key_id, key_->key_id());
  EXPECT_EQ(doc->not_after, 2'000'000'000);
  protocol::AttestationPolicy policy;
  policy.allowed_providers = {"simulated"};
  policy.simulated_platform_key = provider_->platform_public_key();
  EXPECT_TRUE(protocol::verify_attestation(*doc, challenge, policy));
}

TEST_F(ServiceTest, AttestationRefusesMissingOrBadChallenge) {
  for (const std::string& target : std::vector<std::string>{"/rvenc/attestation", "/rvenc/attestation?challenge=abcd",
                                   "/rvenc/attestation?challenge=" + std::string(64, 'z'), "/rvenc/attestation?x=1"}) {
    auto writer = call(http::Request{http::Verb::get, target, 11});
    EXPECT_EQ(writer.status(), 400u) << target;
    EXPECT_EQ(error_code_of(writer.body()), "invalid_request") << target;
  }
}

TEST_F(ServiceTest, ModelsAndHealth) {
  auto writer = call(http::Request{http::Verb::get, "/rvenc/models", 11});
  ASSERT_EQ(writer.status(), 200u);
  const auto list = json::parse(writer.body()).as_object();
  EXPECT_EQ(list.at("object").as_string(), "list");
  const auto& data = list.at("data").as_array();
  ASSERT_EQ(data.size(), 2u);
  EXPECT_EQ(data[1].at("id").as_string(), "rvenc-demo");
  EXPECT_EQ(data[1].at("object").as_string(), "model");
  EXPECT_TRUE(data[1].as_object().contains("created"));
  EXPECT_TRUE(data[1].as_object().contains("owned_by"));
  EXPECT_EQ(call(http::Request{http::Verb::get, "/healthz", 11}).status(), 200u);
}

TEST_F(ServiceTest, ChatStreamsSealedEventsThenDoneThenUsage) {
  const auto sealed = seal(key_->public_key(), chat_json("rvenc-demo", "hello enclave"));
  auto writer = post_chat(sealed.body);
  ASSERT_EQ(writer.status(), 200u) << writer.body();
  ASSERT_TRUE(writer.stream_header);
  EXPECT_EQ((*writer.stream_header)[boost::beast::http::field::content_type], "text/event-stream");
  EXPECT_TRUE(writer.stream_ended);
  const auto stream = test::open_stream(sealed, writer.body());
  ASSERT_FALSE(stream.failure) << stream.failure->to_string();
  EXPECT_TRUE(stream.done);
  EXPECT_FALSE(stream.error);
  EXPECT_NE(stream.content.find("13 characters in 2 words"), std::string::npos);
  EXPECT_EQ(stream.finish_reason, "stop");
  ASSERT_TRUE(stream.usage);
  ASSERT_TRUE(stream.chunk_usage);
  // ceil(bytes of the request JSON / 4), never a count of words (issue 30 item 2).
  const std::int64_t prompt = protocol::estimate_tokens(chat_json("rvenc-demo", "hello enclave").size());
  EXPECT_EQ(stream.usage->at("prompt_tokens").as_int64(), prompt);
  EXPECT_EQ(stream.usage->at("completion_tokens").as_int64(), stream.chunk_usage->completion_tokens);
  EXPECT_TRUE(stream.usage->at("final").as_bool());
  // The provisional usage opens the stream: the prompt, before any token.
  ASSERT_TRUE(stream.provisional_usage);
  EXPECT_EQ(stream.events_before_provisional, 0u);
  EXPECT_EQ(stream.provisional_usage->at("prompt_tokens").as_int64(), prompt);
  EXPECT_EQ(stream.provisional_usage->at("completion_tokens").as_int64(), 0);
  // Version 3's salt first, then the provisional usage, both in the stream's first write.
  EXPECT_TRUE(writer.chunks.front().starts_with("event: init\n")) << writer.chunks.front();
  EXPECT_NE(writer.chunks.front().find("\n\nevent: usage\n"), std::string::npos) << writer.chunks.front();
  EXPECT_TRUE(writer.trailers.empty());
  // Nothing readable crosses the wire but the usage event.
  EXPECT_EQ(writer.body().find("enclave"), std::string::npos);
  EXPECT_EQ(writer.body().find("characters"), std::string::npos);
  // The usage event is the very last event, sent right after done with the end of the stream.
  const std::string& last = writer.chunks.back();
  EXPECT_TRUE(last.starts_with("event: done\n")) << last;
  const auto usage_at = last.find("\n\nevent: usage\n");
  ASSERT_NE(usage_at, std::string::npos) << last;
  EXPECT_EQ(last.find("\n\n", usage_at + 2), last.size() - 2) << "nothing after the usage event";
}

TEST_F(ServiceTest, ReusedEncryptionKeysWithFreshNoncesWork) {
  auto encapsulation = crypto::xwing_encapsulate(key_->public_key());
  for (int i = 0; i < 3; ++i) {
    const auto sealed = rvenc::test::seal_with_keys(encapsulation->shared_secret, encapsulation->cipher_text,
                                                    key_->key_id(), chat_json("rvenc-demo", "again"));
    auto writer = post_chat(sealed.body);
    ASSERT_EQ(writer.status(), 200u);
    EXPECT_TRUE(test::open_stream(sealed, writer.body()).done);
  }
  EXPECT_EQ(key_->cache().size(), 1u);
}

TEST_F(ServiceTest, ReplayedNonceIsRefused) {
  const auto sealed = seal(key_->public_key(), chat_json("rvenc-demo", "once"));
  ASSERT_EQ(post_chat(sealed.body).status(), 200u);
  auto again = post_chat(sealed.body);
  EXPECT_EQ(again.status(), 400u);
  EXPECT_EQ(error_code_of(again.body()), "replayed_request");
  EXPECT_FALSE(again.stream_header);
}

TEST_F(ServiceTest, StaleTimestampIsRefused) {
  const auto sealed = seal(key_->public_key(), chat_json("rvenc-demo", "old"), protocol::Version::v3,
                           test::unix_now() - 301);
  auto writer = post_chat(sealed.body);
  EXPECT_EQ(writer.status(), 400u);
  EXPECT_EQ(error_code_of(writer.body()), "replayed_request");
}

TEST_F(ServiceTest, UnknownKeyIdIs404) {
  crypto::KeyId other{};
  other.fill(7);
  const auto sealed =
      seal(key_->public_key(), chat_json("rvenc-demo", "x"), protocol::Version::v3, std::nullopt, other);
  auto writer = post_chat(sealed.body);
  EXPECT_EQ(writer.status(), 404u);
  EXPECT_EQ(error_code_of(writer.body()), "unknown_key_id");
}

// Issue 30 item 3: a key past its notAfter is refused (so clients re-attest), and never offered.
TEST_F(ServiceTest, KeyPastItsNotAfterIsUnknownAndNotOffered) {
  auto clock = std::make_shared<std::atomic<std::int64_t>>(test::unix_now());
  ServiceOptions options;
  options.clock = [clock] { return clock->load(); };
  make_service(std::move(options), clock->load() + 100);
  const auto challenge = "/rvenc/attestation?challenge=" + to_hex(crypto::random_array<protocol::kChallengeBytes>());

  clock->store(clock->load() + 99);  // the last second of the key's life
  EXPECT_EQ(post_chat(seal(key_->public_key(), chat_json("rvenc-demo", "x"), protocol::Version::v3, clock->load()).body)
                .status(),
            200u);
  EXPECT_EQ(call(http::Request{http::Verb::get, challenge, 11}).status(), 200u);

  clock->store(clock->load() + 1);  // notAfter
  auto writer =
      post_chat(seal(key_->public_key(), chat_json("rvenc-demo", "x"), protocol::Version::v3, clock->load()).body);
  EXPECT_EQ(writer.status(), 404u);
  EXPECT_EQ(error_code_of(writer.body()), "unknown_key_id");
  EXPECT_NE(writer.body().find("expired"), std::string::npos) << writer.body();
  EXPECT_FALSE(writer.stream_header);

  auto attestation = call(http::Request{http::Verb::get, challenge, 11});
  EXPECT_EQ(attestation.status(), 503u);
  EXPECT_EQ(error_code_of(attestation.body()), "enclave_unavailable");
  EXPECT_NE(attestation.body().find("expired"), std::string::npos) << attestation.body();
  EXPECT_EQ(attestation.body().find(to_hex(key_->public_key())), std::string::npos) << "the expired key is not offered";
}

TEST_F(ServiceTest, TamperedCiphertextFailsDecryption) {
  auto sealed = seal(key_->public_key(), chat_json("rvenc-demo", "x"));
  auto envelope = json::parse(sealed.body).as_object();
  std::string inference(envelope.at("encryptedInference").as_string());
  inference[10] = inference[10] == '0' ? '1' : '0';
  envelope["encryptedInference"] = inference;
  auto writer = post_chat(json::serialize(envelope));
  EXPECT_EQ(writer.status(), 400u);
  EXPECT_EQ(error_code_of(writer.body()), "decryption_failed");
  EXPECT_EQ(writer.body().find(inference), std::string::npos);
}

TEST_F(ServiceTest, BadEnvelopeIsInvalidRequest) {
  for (const std::string body : {"not json", "{}", R"({"version":2})", "[1,2,3]"}) {
    auto writer = post_chat(body);
    EXPECT_EQ(writer.status(), 400u) << body;
    EXPECT_EQ(error_code_of(writer.body()), "invalid_request") << body;
  }
}

TEST_F(ServiceTest, InvalidDecryptedRequestIsInvalidInferenceWithoutEchoingIt) {
  const auto sealed = seal(key_->public_key(), R"({"model":"rvenc-demo","messages":"secret-words"})");
  auto writer = post_chat(sealed.body);
  EXPECT_EQ(writer.status(), 400u);
  EXPECT_EQ(error_code_of(writer.body()), "invalid_inference");
  EXPECT_EQ(writer.body().find("secret-words"), std::string::npos);
}

TEST_F(ServiceTest, UnknownModelIsInvalidInferenceListingTheServedModels) {
  const auto sealed = seal(key_->public_key(), chat_json("secret-model-name", "x"));
  auto writer = post_chat(sealed.body);
  EXPECT_EQ(writer.status(), 400u);
  EXPECT_EQ(error_code_of(writer.body()), "invalid_inference");
  EXPECT_EQ(writer.body().find("secret-model-name"), std::string::npos);
  EXPECT_NE(writer.body().find("rvenc-demo"), std::string::npos);
}

TEST_F(ServiceTest, VersionOneOnlyWhenAllowed) {
  const auto sealed = seal(key_->public_key(), chat_json("rvenc-demo", "legacy"), protocol::Version::v1);
  auto refused = post_chat(sealed.body);
  EXPECT_EQ(refused.status(), 400u);
  EXPECT_EQ(error_code_of(refused.body()), "unsupported_version");

  ServiceOptions options;
  options.allow_v1 = true;
  make_service(options);
  const auto allowed = seal(key_->public_key(), chat_json("rvenc-demo", "legacy"), protocol::Version::v1);
  auto writer = post_chat(allowed.body);
  ASSERT_EQ(writer.status(), 200u) << writer.body();
  const auto stream = test::open_stream(allowed, writer.body());
  EXPECT_TRUE(stream.done);
  EXPECT_NE(stream.content.find("6 characters in 1 word,"), std::string::npos) << stream.content;
  EXPECT_TRUE(stream.usage);
}

TEST_F(ServiceTest, Version3StreamStartsWithTheSaltInTheFirstWrite) {
  const auto sealed = seal(key_->public_key(), chat_json("rvenc-demo", "salted"));
  auto writer = post_chat(sealed.body);
  ASSERT_EQ(writer.status(), 200u) << writer.body();
  ASSERT_FALSE(writer.chunks.empty());
  // Sent with the head, before the engine runs: a 64-hex-digit salt.
  EXPECT_TRUE(writer.chunks[0].starts_with("event: init\ndata: ")) << writer.chunks[0];
  const auto events = rvenc::test::sse_events(writer.body());
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].event, "init");
  EXPECT_EQ(events[0].data.size(), 64u);
  const auto stream = test::open_stream(sealed, writer.body());
  EXPECT_FALSE(stream.failure);
  EXPECT_TRUE(stream.done);
  // Two answers to two requests never share a salt.
  auto other = post_chat(seal(key_->public_key(), chat_json("rvenc-demo", "salted")).body);
  EXPECT_NE(rvenc::test::sse_events(other.body()).at(0).data, events[0].data);
}

TEST_F(ServiceTest, VersionTwoOnlyWhenAllowedAndNotRightAfterARestart) {
  const auto refused = post_chat(seal(key_->public_key(), chat_json("rvenc-demo", "x"), protocol::Version::v2).body);
  EXPECT_EQ(refused.status(), 400u);
  EXPECT_EQ(error_code_of(refused.body()), "unsupported_version");
  EXPECT_NE(refused.body().find("use version 3"), std::string::npos) << refused.body();

  // A key from an existing key file may have served a predecessor whose replay cache is gone: a
  // v2 request it could have accepted (timestamp up to its last second + 300 s) is refused.
  std::int64_t now = test::unix_now();
  ServiceOptions options;
  options.allow_v2 = true;
  options.clock = [&now] { return now; };
  make_service(options);
  const auto early = post_chat(seal(key_->public_key(), chat_json("rvenc-demo", "x"), protocol::Version::v2, now).body);
  EXPECT_EQ(early.status(), 400u);
  EXPECT_EQ(error_code_of(early.body()), "replayed_request");
  EXPECT_EQ(post_chat(seal(key_->public_key(), chat_json("rvenc-demo", "x")).body).status(), 200u);  // v3 is fine
  now += 301;
  const auto later = seal(key_->public_key(), chat_json("rvenc-demo", "x"), protocol::Version::v2, now);
  auto served = post_chat(later.body);
  ASSERT_EQ(served.status(), 200u) << served.body();
  EXPECT_TRUE(test::open_stream(later, served.body()).done);
  EXPECT_TRUE(rvenc::test::sse_events(served.body()).at(0).event != "init");  // version 2 has no salt

  // A key made at this start has no predecessor: version 2 is served at once.
  options.key_may_have_been_used = false;
  make_service(options);
  EXPECT_EQ(post_chat(seal(key_->public_key(), chat_json("rvenc-demo", "x"), protocol::Version::v2, now).body).status(),
            200u);
}

TEST_F(ServiceTest, GatewayTokenIsChecked) {
  ServiceOptions options;
  options.gateway_token_hash = crypto::sha256(crypto::as_bytes(kGatewayToken));
  make_service(options);
  const auto body = chat_json("rvenc-demo", "x");
  for (const std::string auth : {"", "Bearer wrong", "Bearer ", "gw-token-for-tests", "Basic gw-token-for-tests"}) {
    http::Fields headers;
    if (!auth.empty()) headers.set(boost::beast::http::field::authorization, auth);
    auto writer = post_chat(seal(key_->public_key(), body).body, headers);
    EXPECT_EQ(writer.status(), 401u) << auth;
    EXPECT_EQ(error_code_of(writer.body()), "invalid_api_key");
  }
  http::Fields headers;
  headers.set(boost::beast::http::field::authorization, "Bearer " + std::string(kGatewayToken));
  EXPECT_EQ(post_chat(seal(key_->public_key(), body).body, headers).status(), 200u);
}

// The gateway token is read by the one Bearer parser (common/auth.hpp, RFC 6750) as API keys are:
// the scheme in any case, spaces (not tabs) before the token, token68 characters only.
TEST_F(ServiceTest, GatewayTokenFollowsTheBearerRules) {
  ServiceOptions options;
  options.gateway_token_hash = crypto::sha256(crypto::as_bytes(kGatewayToken));
  make_service(options);
  const auto body = chat_json("rvenc-demo", "x");
  const std::string token(kGatewayToken);
  auto status_with = [&](const std::string& authorization) {
    http::Fields headers;
    headers.set(boost::beast::http::field::authorization, authorization);
    return post_chat(seal(key_->public_key(), body).body, headers).status();
  };
  for (const std::string& accepted : {"bearer " + token, "BEARER " + token, "Bearer  " + token, "Bearer " + token + " "})
    EXPECT_EQ(status_with(accepted), 200u) << accepted;
  for (const std::string& refused : {"Bearer\t" + token, "Bearer " + token + " x", "Bearer " + token + "\x7f"})
    EXPECT_EQ(status_with(refused), 401u) << refused;
}

TEST_F(ServiceTest, TestKeysMayOnlyUseTestModels) {
  http::Fields test_key;
  test_key.set(kKeyEnvHeader, "test");
  auto refused = post_chat(seal(key_->public_key(), chat_json("other-model", "x")).body, test_key);
  EXPECT_EQ(refused.status(), 403u);
  EXPECT_EQ(error_code_of(refused.body()), "test_key_not_allowed");
  EXPECT_EQ(post_chat(seal(key_->public_key(), chat_json("rvenc-demo", "x")).body, test_key).status(), 200u);
  EXPECT_EQ(post_chat(seal(key_->public_key(), chat_json("other-model", "x")).body).status(), 200u);
}

// What the gateway adds to a request of API key `tenant` ("live" or "test" environment).
http::Fields from_gateway(const std::string& tenant, std::string_view env = "live") {
  http::Fields headers;
  headers.set(boost::beast::http::field::authorization, "Bearer " + std::string(kGatewayToken));
  headers.set(kTenantHeader, tenant);
  headers.set(kKeyEnvHeader, env);
  return headers;
}

ServiceOptions behind_gateway(std::size_t replay_cache_entries, std::size_t replay_tenant_share = 0) {
  ServiceOptions options;
  options.gateway_token_hash = crypto::sha256(crypto::as_bytes(kGatewayToken));
  options.replay_cache_entries = replay_cache_entries;
  options.replay_tenant_share = replay_tenant_share;
  return options;
}

// When tenants together fill the cache, a tenant under its share gets 503 overloaded.
TEST_F(ServiceTest, FullReplayCacheAnswersOverloaded) {
  make_service(behind_gateway(2, 1));
  EXPECT_EQ(post_chat(seal(key_->public_key(), chat_json("rvenc-demo", "x")).body, from_gateway("key_a")).status(),
            200u);
  EXPECT_EQ(post_chat(seal(key_->public_key(), chat_json("rvenc-demo", "x")).body, from_gateway("key_b")).status(),
            200u);
  auto full = post_chat(seal(key_->public_key(), chat_json("rvenc-demo", "x")).body, from_gateway("key_c"));
  EXPECT_EQ(full.status(), 503u);
  EXPECT_EQ(error_code_of(full.body()), "overloaded");
}

// Finding 4 of issue 30: a test key's authentic but refused requests (a model it may not use, a
// model not served, an invalid request) filled the shared replay cache, and the next live
// request got 503 overloaded. Refused requests now take no room.
TEST_F(ServiceTest, TestKeyFloodOfRefusedRequestsDoesNotStopALiveKey) {
  make_service(behind_gateway(8));
  const auto test_key = from_gateway("key_test", "test");
  for (int i = 0; i < 40; ++i) {
    const std::string plaintext = i % 3 == 0   ? chat_json("other-model", "not for test keys")
                                  : i % 3 == 1 ? chat_json("not-served", "x")
                                               : std::string(R"({"model":"rvenc-demo","messages":[]})");
    auto refused = post_chat(seal(key_->public_key(), plaintext).body, test_key);
    EXPECT_TRUE(refused.status() == 403u || refused.status() == 400u) << i << ": " << refused.body();
  }
  EXPECT_EQ(service_->replay_cache().size(), 0u);
  const auto live = seal(key_->public_key(), chat_json("rvenc-demo", "still served?"));
  auto served = post_chat(live.body, from_gateway("key_live"));
  ASSERT_EQ(served.status(), 200u) << served.body();
  EXPECT_TRUE(test::open_stream(live, served.body()).done);
  EXPECT_EQ(service_->replay_cache().size(), 1u);
}

// A tenant may hold only its share (capacity 8: 4) and then gets 429 for itself alone.
TEST_F(ServiceTest, TenantOverItsReplayShareGets429WithRetryAfterAndNobodyElseDoes) {
  make_service(behind_gateway(8));
  ASSERT_EQ(service_->replay_cache().tenant_share(), 4u);
  for (int i = 0; i < 4; ++i)
    ASSERT_EQ(post_chat(seal(key_->public_key(), chat_json("rvenc-demo", "x")).body, from_gateway("key_a", "test"))
                  .status(),
              200u);
  auto over = post_chat(seal(key_->public_key(), chat_json("rvenc-demo", "x")).body, from_gateway("key_a", "test"));
  EXPECT_EQ(over.status(), 429u) << over.body();
  EXPECT_EQ(error_code_of(over.body()), "replay_quota_exceeded");
  ASSERT_TRUE(over.response);
  const std::string retry_after((*over.response)[boost::beast::http::field::retry_after]);
  ASSERT_FALSE(retry_after.empty());
  EXPECT_GE(std::stoll(retry_after), 1);
  EXPECT_LE(std::stoll(retry_after), kReplayWindowSeconds + kReplayBucketSeconds);
  const auto live = seal(key_->public_key(), chat_json("rvenc-demo", "x"));
  auto served = post_chat(live.body, from_gateway("key_b"));
  ASSERT_EQ(served.status(), 200u) << served.body();
  EXPECT_TRUE(test::open_stream(live, served.body()).done);
}

// Without a gateway token X-Rvenc-Tenant is anyone's word: every caller is the one anonymous
// tenant, so naming a fresh tenant per request gains no room (nor takes another tenant's).
TEST_F(ServiceTest, WithoutAGatewayTokenEveryCallerIsOneAnonymousTenant) {
  ServiceOptions options;
  options.replay_cache_entries = 8;
  make_service(options);
  for (int i = 0; i < 4; ++i) {
    http::Fields headers;
    headers.set(kTenantHeader, "key_" + std::to_string(i));
    ASSERT_EQ(post_chat(seal(key_->public_key(), chat_json("rvenc-demo", "x")).body, headers).status(), 200u);
  }
  http::Fields fresh;
  fresh.set(kTenantHeader, "key_fresh");
  auto over = post_chat(seal(key_->public_key(), chat_json("rvenc-demo", "x")).body, fresh);
  EXPECT_EQ(over.status(), 429u);
  EXPECT_EQ(error_code_of(over.body()), "replay_quota_exceeded");
  EXPECT_EQ(service_->replay_cache().held(""), 4u);
}

TEST_F(ServiceTest, ClientThatLeavesMidStreamStopsTheEngine) {
  const auto sealed = seal(key_->public_key(), chat_json("rvenc-demo", "bye"));
  http::Request request{http::Verb::post, "/rvenc/chat/completions", http::kHttp11};
  request.body() = sealed.body;
  http::RecordingWriter writer;
  writer.disconnect_after_writes(2);
  run_coroutine([&]() -> http::awaitable<void> { co_await service_->chat(request, writer); });
  EXPECT_EQ(writer.chunks.size(), 2u);
  EXPECT_TRUE(writer.client_gone());
}

// Issue 30 item 2: a caller that leaves is told (a rvenc-mux trailer) what was generated for it:
// the prompt and the tokens produced before the engine stopped.
TEST_F(ServiceTest, ClientThatLeavesMidStreamGetsTheUsageAsATrailer) {
  const std::string json = chat_json("rvenc-demo", "a question the caller will not wait for the end of");
  const auto sealed = seal(key_->public_key(), json);
  http::Request request{http::Verb::post, "/rvenc/chat/completions", http::kHttp11};
  request.body() = sealed.body;
  http::RecordingWriter writer;
  writer.disconnect_after_writes(4);  // the provisional usage and three tokens
  run_coroutine([&]() -> http::awaitable<void> { co_await service_->chat(request, writer); });
  ASSERT_EQ(writer.trailers.size(), 1u);
  const auto trailer = boost::json::parse(writer.trailers[0]).as_object();
  EXPECT_EQ(trailer.at("prompt_tokens").as_int64(), protocol::estimate_tokens(json.size()));
  EXPECT_EQ(trailer.at("completion_tokens").as_int64(), 3);
  EXPECT_FALSE(writer.stream_ended);
}

// Issue 28: the document and /healthz tell what a gateway with several enclaves needs (models,
// capacity, previous keys; versions, streams in flight), none of it inside reportData.
TEST_F(ServiceTest, DocumentAndHealthTellModelsCapacityAndVersions) {
  ServiceOptions options;
  options.max_streams = 4;
  options.allow_v1 = true;
  make_service(options);
  const auto challenge = crypto::random_array<protocol::kChallengeBytes>();
  auto writer = call(http::Request{http::Verb::get, "/rvenc/attestation?challenge=" + to_hex(challenge), 11});
  ASSERT_EQ(writer.status(), 200u);
  auto doc = protocol::parse_attestation(writer.body()).value();
  EXPECT_EQ(doc.models, (std::vector<std::string>{"other-model", "rvenc-demo"}));
  EXPECT_EQ(doc.capacity, 4);
  EXPECT_TRUE(doc.previous_keys.empty());
  EXPECT_EQ(doc.binding, protocol::Binding::v2);
  EXPECT_EQ(doc.report_data, protocol::report_data_v2(key_->public_key(), key_->not_after(), challenge));
  auto health = json::parse(call(http::Request{http::Verb::get, "/healthz", 11}).body()).as_object();
  EXPECT_EQ(health.at("keyId").as_string(), to_hex(key_->key_id()));
  EXPECT_EQ(json::serialize(health.at("versions")), "[1,3]");
  EXPECT_EQ(health.at("inFlight").as_int64(), 0);
  EXPECT_EQ(health.at("capacity").as_int64(), 4);
  make_service(ServiceOptions{});  // unlimited: null
  auto unlimited = call(http::Request{http::Verb::get, "/rvenc/attestation?challenge=" + to_hex(challenge), 11});
  EXPECT_FALSE(protocol::parse_attestation(unlimited.body()).value().capacity);
  EXPECT_TRUE(json::parse(call(http::Request{http::Verb::get, "/healthz", 11}).body()).at("capacity").is_null());
}

// Issue 28 item 2: beyond --max-streams the enclave answers 503 enclave_busy with Retry-After,
// before decrypting (no replay-cache slot taken), and serves again once a stream ended.
TEST_F(ServiceTest, BeyondMaxStreamsIsEnclaveBusyWithRetryAfter) {
  ServiceOptions options;
  options.max_streams = 1;
  std::map<std::string, std::shared_ptr<Engine>> engines;
  engines["rvenc-demo"] = std::make_shared<DemoEngine>(DemoEngineOptions{"rvenc-demo", std::chrono::milliseconds(20)});
  service_ = std::make_unique<EnclaveService>(std::move(options), key_, provider_, std::move(engines));
  const auto first = seal(key_->public_key(), chat_json("rvenc-demo", "first"));
  const auto second = seal(key_->public_key(), chat_json("rvenc-demo", "second"));
  http::Request first_request{http::Verb::post, "/rvenc/chat/completions", http::kHttp11};
  first_request.body() = first.body;
  http::Request second_request = first_request;
  second_request.body() = second.body;
  http::RecordingWriter first_writer, second_writer;
  std::size_t in_flight_seen = 0;
  // One thread: the first stream holds its slot from before its first suspension (the engine's
  // token timer), so the second one, run then, finds the enclave full.
  run_coroutine([&]() -> http::awaitable<void> {
    auto executor = co_await boost::asio::this_coro::executor;
    boost::asio::co_spawn(executor, service_->chat(first_request, first_writer), boost::asio::detached);
    co_await boost::asio::post(executor, boost::asio::use_awaitable);
    in_flight_seen = service_->in_flight();
    co_await service_->chat(second_request, second_writer);
  });
  EXPECT_EQ(in_flight_seen, 1u);
  EXPECT_EQ(second_writer.status(), 503u) << second_writer.body();
  EXPECT_EQ(error_code_of(second_writer.body()), "enclave_busy");
  EXPECT_EQ(second_writer.response->at(boost::beast::http::field::retry_after), "1");
  EXPECT_EQ(first_writer.status(), 200u);
  EXPECT_TRUE(first_writer.stream_ended);
  EXPECT_EQ(service_->in_flight(), 0u);
  EXPECT_EQ(service_->replay_cache().size(), 1u) << "the refused request took no replay slot";
  // Sent again (the same sealed request: it was never decrypted), it is served now.
  http::RecordingWriter again;
  run_coroutine([&]() -> http::awaitable<void> { co_await service_->chat(second_request, again); });
  EXPECT_EQ(again.status(), 200u);
}

}  // namespace
}  // namespace rvenc::enclave
