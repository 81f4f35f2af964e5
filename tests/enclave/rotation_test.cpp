// Key rotation in the enclave (issue 21 item 5, docs/key-rotation.md): the ring's schedule, and the
// service driven through http::RecordingWriter on a test clock (no sockets, real crypto).
#include <gtest/gtest.h>

#include <atomic>

#include <boost/json/parse.hpp>

#include "enclave_test_support.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/enclave/key_ring.hpp"
#include "rvenc/enclave/service.hpp"
#include "rvenc/protocol/attestation.hpp"

namespace rvenc::enclave {
namespace {

namespace json = boost::json;
using test::chat_json;
using test::error_code_of;
using test::run_coroutine;
using test::seal;

constexpr std::int64_t kStart = 1'900'000'000;

std::shared_ptr<EnclaveKey> new_key(std::int64_t not_after) {
  crypto::XWingSeed seed;
  crypto::random_bytes(seed.span());
  return std::make_shared<EnclaveKey>(seed, not_after);
}

TEST(KeyRotation, GraceIsThePeriodAtMostAnHour) {
  using std::chrono::seconds;
  EXPECT_EQ(rotation_grace(seconds(2)), seconds(2));
  EXPECT_EQ(rotated_key_lifetime(seconds(2)), seconds(4));
  EXPECT_EQ(rotation_grace(seconds(24 * 3600)), seconds(3600));
  EXPECT_EQ(rotated_key_lifetime(seconds(24 * 3600)), seconds(25 * 3600));
}

TEST(KeyRotation, WithoutAPeriodTheKeyNeverChanges) {
  KeyRing ring(new_key(kStart + 1000), false, RotationOptions{}, kStart);
  const auto first = ring.current().key->key_id();
  ring.maintain(kStart + 999);
  EXPECT_EQ(ring.current().key->key_id(), first);
  EXPECT_EQ(ring.rotations(), 0u);
  EXPECT_FALSE(ring.next_rotation());
}

// A key loaded from a file made without rotation (a long notAfter) is replaced after one period,
// and as a previous key it lives one grace, not until its own far notAfter.
TEST(KeyRotation, ALongLivedStartKeyIsReplacedAfterOnePeriodAndRetiredAfterTheGrace) {
  std::weak_ptr<EnclaveKey> start;
  KeyRing ring(
      [&] {
        auto key = new_key(kStart + 30 * 24 * 3600);
        start = key;
        return key;
      }(),
      true, RotationOptions{.period = std::chrono::seconds(100)}, kStart);
  EXPECT_EQ(ring.next_rotation(), kStart + 100);
  ring.maintain(kStart + 99);
  EXPECT_EQ(ring.rotations(), 0u);
  ring.maintain(kStart + 100);
  EXPECT_EQ(ring.rotations(), 1u);
  const auto previous = ring.previous(kStart + 100);
  ASSERT_EQ(previous.size(), 1u);
  EXPECT_EQ(previous[0].not_after, kStart + 200);
  EXPECT_EQ(ring.current().key->not_after(), kStart + 100 + 200);
  EXPECT_FALSE(ring.current().may_have_been_used) << "a key made while running served no earlier process";
  const auto old_id = start.lock()->key_id();
  EXPECT_TRUE(ring.find(old_id, kStart + 199).may_have_been_used);
  ring.maintain(kStart + 200);  // the start key's grace ends (and the second key is replaced)
  EXPECT_FALSE(ring.find(old_id, kStart + 200).key);
  EXPECT_EQ(ring.rotations(), 2u);
  for (const auto& p : ring.previous(kStart + 200)) EXPECT_NE(p.key_id, old_id);
  EXPECT_TRUE(start.expired()) << "a retired key is dropped (and wiped) once no request holds it";
}

TEST(KeyRotation, TheKeyFileFollowsTheCurrentKey) {
  rvenc::test::TempDir dir;
  const std::filesystem::path file = dir.file("enclave.key");
  auto started = load_enclave_key(file, rotated_key_lifetime(std::chrono::seconds(10)), kStart);
  ASSERT_TRUE(started);
  KeyRing ring(started->key, false, RotationOptions{.period = std::chrono::seconds(10), .key_file = file}, kStart);
  ring.maintain(kStart + 10);
  ASSERT_EQ(ring.rotations(), 1u);
  auto stored = read_key_file(file);
  ASSERT_TRUE(stored && *stored);
  EXPECT_EQ(crypto::key_id(crypto::xwing_keypair_from_seed((*stored)->seed).public_key), ring.current().key->key_id());
  EXPECT_EQ((*stored)->not_after, kStart + 10 + 20);
}

class RotationServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServiceOptions options;
    options.clock = [this] { return clock_.load(); };
    options.rotation.period = std::chrono::seconds(100);
    auto key = new_key(kStart + 200);
    start_key_ = key;
    crypto::Ed25519Seed platform;
    crypto::random_bytes(platform.span());
    auto provider = std::shared_ptr<AttestationProvider>(std::move(*SimulatedProvider::create(platform)));
    policy_.allowed_providers = {"simulated"};
    policy_.simulated_platform_key = provider->platform_public_key();
    std::map<std::string, std::shared_ptr<Engine>> engines;
    engines["rvenc-demo"] = std::make_shared<DemoEngine>();
    service_ = std::make_unique<EnclaveService>(std::move(options), std::move(key), provider, std::move(engines));
  }

  http::RecordingWriter call(http::Request request) {
    http::RecordingWriter writer;
    const auto router = service_->router();
    run_coroutine([&]() -> http::awaitable<void> { co_await router(request, writer); });
    return writer;
  }
  http::RecordingWriter post_chat(const std::string& body) {
    http::Request request{http::Verb::post, "/rvenc/chat/completions", http::kHttp11};
    request.body() = body;
    request.prepare_payload();
    return call(std::move(request));
  }
  // The verified document (binding 2), as a client checks it.
  protocol::AttestationDocument attest() {
    const auto challenge = crypto::random_array<protocol::kChallengeBytes>();
    auto writer = call(http::Request{http::Verb::get, "/rvenc/attestation?challenge=" + to_hex(challenge), 11});
    EXPECT_EQ(writer.status(), 200u) << writer.body();
    auto doc = protocol::parse_attestation(writer.body()).value();
    EXPECT_EQ(doc.binding, protocol::Binding::v2);
    // verify_attestation checks notAfter against the system clock: documents here are in 2030.
    EXPECT_TRUE(protocol::verify_attestation(doc, challenge, policy_)) << writer.body();
    return doc;
  }
  rvenc::test::SealedRequest sealed_to(const protocol::AttestationDocument& doc, const std::string& prompt) {
    return seal(doc.public_key, chat_json("rvenc-demo", prompt), protocol::Version::v3, clock_.load(), doc.key_id);
  }
  json::object health() { return json::parse(call(http::Request{http::Verb::get, "/healthz", 11}).body()).as_object(); }

  std::atomic<std::int64_t> clock_{kStart};
  std::weak_ptr<EnclaveKey> start_key_;
  protocol::AttestationPolicy policy_;
  std::unique_ptr<EnclaveService> service_;
};

// A request sealed under the old key just before the rotation is served during the grace (once:
// replay protection holds per key), refused with unknown_key_id after it; new requests use the
// new key; the retired key is wiped.
TEST_F(RotationServiceTest, OldKeyDecryptsDuringGraceOnlyAndNewRequestsUseTheNewKey) {
  const auto first = attest();
  EXPECT_EQ(first.not_after, kStart + 200);
  EXPECT_TRUE(first.previous_keys.empty());
  clock_ = kStart + 99;
  const auto in_flight = sealed_to(first, "sealed before the rotation");
  EXPECT_EQ(health().at("keyRotations").as_int64(), 0);

  clock_ = kStart + 100;  // the rotation
  const auto second = attest();
  EXPECT_NE(second.key_id, first.key_id);
  EXPECT_EQ(second.not_after, kStart + 100 + 200);
  ASSERT_EQ(second.previous_keys.size(), 1u);
  EXPECT_EQ(second.previous_keys[0].key_id, first.key_id);
  EXPECT_EQ(second.previous_keys[0].not_after, kStart + 200);
  auto h = health();
  EXPECT_EQ(h.at("keyRotations").as_int64(), 1);
  EXPECT_EQ(h.at("keyId").as_string(), to_hex(second.key_id));

  auto old_answer = post_chat(in_flight.body);
  ASSERT_EQ(old_answer.status(), 200u) << old_answer.body();
  EXPECT_TRUE(test::open_stream(in_flight, old_answer.body()).done);
  auto replayed = post_chat(in_flight.body);
  EXPECT_EQ(replayed.status(), 400u);
  EXPECT_EQ(error_code_of(replayed.body()), "replayed_request");

  const auto fresh = sealed_to(second, "after the rotation");
  auto new_answer = post_chat(fresh.body);
  ASSERT_EQ(new_answer.status(), 200u) << new_answer.body();
  EXPECT_TRUE(test::open_stream(fresh, new_answer.body()).done);

  clock_ = kStart + 199;  // the last second of the grace
  auto late = post_chat(sealed_to(first, "late but in the grace").body);
  EXPECT_EQ(late.status(), 200u) << late.body();

  clock_ = kStart + 200;  // the grace is over
  auto after = post_chat(sealed_to(first, "after the grace").body);
  EXPECT_EQ(after.status(), 404u);
  EXPECT_EQ(error_code_of(after.body()), "unknown_key_id");
  // (kStart + 200 is also the second key's rotation: it is the one previous key now.)
  const auto third = attest();
  ASSERT_EQ(third.previous_keys.size(), 1u);
  EXPECT_EQ(third.previous_keys[0].key_id, second.key_id);
  EXPECT_TRUE(start_key_.expired()) << "the retired key is wiped";
}

// Several periods pass without traffic: one rotation when the service is next used (the server's
// timer does this on time), and the key before it is not revived.
TEST_F(RotationServiceTest, AfterALongPauseOneRotationAndNoStaleKey) {
  const auto first = attest();
  clock_ = kStart + 1000;
  service_->maintain_keys();
  const auto now_doc = attest();
  EXPECT_NE(now_doc.key_id, first.key_id);
  EXPECT_EQ(now_doc.not_after, kStart + 1000 + 200);
  EXPECT_TRUE(now_doc.previous_keys.empty()) << "the old key's own notAfter passed long ago";
  auto old = post_chat(sealed_to(first, "x").body);
  EXPECT_EQ(error_code_of(old.body()), "unknown_key_id");
}

}  // namespace
}  // namespace rvenc::enclave
