// The real `rvenc enclave` process, driven over HTTP by the core library and the rvenc_http
// client, with a simulated platform key (the only provider a CI machine has).
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include <boost/beast/http/field.hpp>
#include <boost/json/parse.hpp>

#include "enclave_test_support.hpp"
#include "rvenc/enclave/key.hpp"
#include "rvenc/http/client.hpp"
#include "rvenc/protocol/attestation.hpp"
#include "support/test_support.hpp"

namespace rvenc::enclave {
namespace {

namespace json = boost::json;
using test::chat_json;
using test::error_code_of;
using test::seal;

constexpr auto kExitTimeout = std::chrono::seconds(20);

// Waits for a child that should exit by itself; its exit status (or -1 on timeout).
int wait_exit(rvenc::test::ChildProcess& child) { return child.wait_exit(kExitTimeout); }

class RunningEnclave {
 public:
  explicit RunningEnclave(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{rvenc::test::rvenc_binary(), "enclave",    "--listen",
                                  "127.0.0.1:0",               "--key-file", dir.file("enclave.key"),
                                  "--platform-key",            dir.file("platform.key"),
                                  "--attestation",             "simulated"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    child = std::make_unique<rvenc::test::ChildProcess>(argv);
    auto found = child->wait_for_url();
    if (!found) throw std::runtime_error("enclave did not start:\n" + child->output());
    url = *found;
    auto platform = child->wait_for_line(R"(platform public key ([0-9a-f]{64}))");
    if (!platform) throw std::runtime_error("no platform key line:\n" + child->output());
    platform_key = *from_hex_exact<32>(*platform, "platform key");
  }

  // Fetches and verifies the attestation with a fresh challenge; the verified public key.
  crypto::XWingPublicKey attest() {
    const auto challenge = crypto::random_array<protocol::kChallengeBytes>();
    auto response = http::fetch("GET", url + "/rvenc/attestation?challenge=" + to_hex(challenge));
    EXPECT_TRUE(response) << response.error().to_string();
    EXPECT_EQ(response->result_int(), 200u) << response->body();
    auto doc = protocol::parse_attestation(response->body());
    EXPECT_TRUE(doc) << doc.error().to_string();
    protocol::AttestationPolicy policy;
    policy.allowed_providers = {"simulated"};
    policy.simulated_platform_key = platform_key;
    auto verified = protocol::verify_attestation(*doc, challenge, policy);
    EXPECT_TRUE(verified) << verified.error().to_string();
    return doc->public_key;
  }

  http::Response chat(const std::string& body, http::Fields headers = {}) {
    headers.set(boost::beast::http::field::content_type, "application/json");
    auto response = http::fetch("POST", url + "/rvenc/chat/completions", body, headers);
    EXPECT_TRUE(response) << response.error().to_string();
    return response ? *response : http::Response{};
  }

  rvenc::test::TempDir dir;
  std::unique_ptr<rvenc::test::ChildProcess> child;
  std::string url;
  crypto::Ed25519PublicKey platform_key{};
};

TEST(EnclaveProcess, AttestsAndStreamsTheDemoReplyOverVersion2) {
  RunningEnclave enclave;
  const auto public_key = enclave.attest();
  EXPECT_NE(enclave.child->output().find("keyId " + to_hex(crypto::key_id(public_key))), std::string::npos);

  const auto sealed = seal(public_key, chat_json("rvenc-demo", "How private is this?"));
  auto response = enclave.chat(sealed.body);
  ASSERT_EQ(response.result_int(), 200u) << response.body();
  EXPECT_EQ(response[boost::beast::http::field::content_type], "text/event-stream");
  const auto stream = test::open_stream(sealed, response.body());
  ASSERT_FALSE(stream.failure) << stream.failure->to_string();
  EXPECT_TRUE(stream.done);
  EXPECT_FALSE(stream.error);
  EXPECT_NE(stream.content.find("20 characters in 4 words"), std::string::npos) << stream.content;
  EXPECT_FALSE(stream.reasoning.empty());
  EXPECT_EQ(stream.finish_reason, "stop");
  ASSERT_TRUE(stream.usage);
  EXPECT_EQ(stream.usage->at("prompt_tokens").as_int64(),
            protocol::estimate_tokens(chat_json("rvenc-demo", "How private is this?").size()));
  EXPECT_GT(stream.usage->at("completion_tokens").as_int64(), 20);

  auto models = http::fetch("GET", enclave.url + "/rvenc/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(json::parse(models->body()).at("data").as_array().at(0).at("id").as_string(), "rvenc-demo");
  auto health = http::fetch("GET", enclave.url + "/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->result_int(), 200u);

  // The log names the request, never its content.
  EXPECT_EQ(enclave.child->output().find("private"), std::string::npos);
  EXPECT_EQ(enclave.child->stop(SIGTERM), 0);
}

TEST(EnclaveProcess, KeepsItsKeyAcrossRestarts) {
  rvenc::test::TempDir dir;
  std::string first_line;
  for (int run = 0; run < 2; ++run) {
    rvenc::test::ChildProcess child({rvenc::test::rvenc_binary(), "enclave", "--listen", "127.0.0.1:0", "--key-file",
                                     dir.file("k"), "--platform-key", dir.file("p"), "--attestation", "simulated"});
    auto key_line = child.wait_for_line(R"((keyId [0-9a-f]{16}))");
    ASSERT_TRUE(key_line) << child.output();
    if (run == 0) first_line = *key_line;
    EXPECT_EQ(*key_line, first_line);
  }
}

// Security review finding 1: a request replayed to an enclave restarted on the same key file
// (the replay cache died with the process) was answered under the same responseKey and nonces.
// Version 3 answers it under a fresh salt; version 2 (with --allow-v2) is not answered twice.
TEST(EnclaveProcess, ARequestReplayedAfterARestartGetsAFreshKeystream) {
  rvenc::test::TempDir dir;
  const std::vector<std::string> argv{rvenc::test::rvenc_binary(), "enclave", "--listen", "127.0.0.1:0",
                                      "--key-file", dir.file("k"), "--platform-key", dir.file("p"),
                                      "--attestation", "simulated", "--allow-v2"};
  const auto post = [](const std::string& url, const std::string& body) {
    http::Fields headers;
    headers.set(boost::beast::http::field::content_type, "application/json");
    auto response = http::fetch("POST", url + "/rvenc/chat/completions", body, headers);
    EXPECT_TRUE(response) << response.error().to_string();
    return response ? *response : http::Response{};
  };
  auto first = std::make_unique<rvenc::test::ChildProcess>(argv);
  const auto first_url = first->wait_for_url();
  ASSERT_TRUE(first_url) << first->output();
  auto doc = http::fetch("GET", *first_url + "/rvenc/attestation?challenge=" + std::string(64, '0'));
  ASSERT_TRUE(doc && doc->result_int() == 200u);
  const auto public_key = protocol::parse_attestation(doc->body()).value().public_key;

  // A client whose clock runs 2 minutes ahead: its requests stay acceptable after a restart.
  const auto ahead = test::unix_now() + 120;
  const auto v3 = seal(public_key, chat_json("rvenc-demo", "the same prompt"), protocol::Version::v3, ahead);
  const auto v2 = seal(public_key, chat_json("rvenc-demo", "the same prompt"), protocol::Version::v2, ahead);
  const auto answered = post(*first_url, v3.body);
  ASSERT_EQ(answered.result_int(), 200u) << answered.body();
  // This enclave made its key at start: no predecessor, so version 2 is served at once.
  ASSERT_EQ(post(*first_url, v2.body).result_int(), 200u);
  EXPECT_EQ(first->stop(SIGKILL), 128 + SIGKILL);

  rvenc::test::ChildProcess second(argv);
  const auto second_url = second.wait_for_url();
  ASSERT_TRUE(second_url) << second.output();
  const auto replayed = post(*second_url, v3.body);
  ASSERT_EQ(replayed.result_int(), 200u) << replayed.body();
  const auto refused = post(*second_url, v2.body);
  EXPECT_EQ(refused.result_int(), 400u);
  EXPECT_EQ(error_code_of(refused.body()), "replayed_request") << refused.body();

  // Both answers open (the client would accept either), under different salts, keys and nonces.
  const auto events_a = rvenc::test::sse_events(answered.body());
  const auto events_b = rvenc::test::sse_events(replayed.body());
  ASSERT_GE(events_a.size(), 3u);
  ASSERT_GE(events_b.size(), 3u);
  ASSERT_EQ(events_a[0].event, "init");
  ASSERT_EQ(events_b[0].event, "init");
  EXPECT_NE(events_a[0].data, events_b[0].data);
  EXPECT_TRUE(test::open_stream(v3, answered.body()).done);
  EXPECT_TRUE(test::open_stream(v3, replayed.body()).done);
  const auto secret = protocol::derive_v3_keys(v3.shared_secret, v3.nonce).response_secret;
  const auto keys_of = [&](const std::string& salt_hex) {
    return protocol::ResponseKeys::derive_v3(secret, from_hex_exact<protocol::kResponseSaltBytes>(salt_hex, "salt").value());
  };
  const auto a = keys_of(events_a[0].data);
  const auto b = keys_of(events_b[0].data);
  EXPECT_FALSE(a.key == b.key);
  EXPECT_NE(a.prefix, b.prefix);  // so no (key, nonce) pair of one stream appears in the other
  // The first data events carry the same plaintext; their ciphertexts share no keystream.
  const auto first_data = [](const std::vector<protocol::SseEvent>& events) {
    const auto it = std::find_if(events.begin(), events.end(), [](const auto& e) { return e.event == "data"; });
    return it == events.end() ? std::vector<std::uint8_t>{} : from_hex(it->data, "data").value_or(std::vector<std::uint8_t>{});
  };
  const auto data_a = first_data(events_a);
  const auto data_b = first_data(events_b);
  ASSERT_FALSE(data_a.empty());
  ASSERT_EQ(data_a.size(), data_b.size());
  std::size_t equal = 0;
  for (std::size_t i = 0; i < data_a.size(); ++i) equal += data_a[i] == data_b[i];
  EXPECT_LT(equal, data_a.size() / 8);
}

TEST(EnclaveProcess, RefusesBadRequestsWithTheProtocolCodes) {
  RunningEnclave enclave;
  const auto public_key = enclave.attest();

  // Replayed nonce.
  const auto sealed = seal(public_key, chat_json("rvenc-demo", "once"));
  ASSERT_EQ(enclave.chat(sealed.body).result_int(), 200u);
  auto replay = enclave.chat(sealed.body);
  EXPECT_EQ(replay.result_int(), 400u);
  EXPECT_EQ(error_code_of(replay.body()), "replayed_request");

  // Stale timestamp.
  auto stale = enclave.chat(
      seal(public_key, chat_json("rvenc-demo", "x"), protocol::Version::v3, test::unix_now() - 3600).body);
  EXPECT_EQ(stale.result_int(), 400u);
  EXPECT_EQ(error_code_of(stale.body()), "replayed_request");

  // Unknown keyId.
  crypto::KeyId other{};
  auto unknown =
      enclave.chat(seal(public_key, chat_json("rvenc-demo", "x"), protocol::Version::v3, std::nullopt, other).body);
  EXPECT_EQ(unknown.result_int(), 404u);
  EXPECT_EQ(error_code_of(unknown.body()), "unknown_key_id");

  // Tampered ciphertext (the KEM ciphertext this time).
  auto envelope = json::parse(seal(public_key, chat_json("rvenc-demo", "x")).body).as_object();
  std::string kem(envelope.at("cipherText").as_string());
  kem[0] = kem[0] == 'a' ? 'b' : 'a';
  envelope["cipherText"] = kem;
  auto tampered = enclave.chat(json::serialize(envelope));
  EXPECT_EQ(tampered.result_int(), 400u);
  EXPECT_EQ(error_code_of(tampered.body()), "decryption_failed");

  // Bad envelope JSON.
  auto bad = enclave.chat(R"({"version":2,"keyId":)");
  EXPECT_EQ(bad.result_int(), 400u);
  EXPECT_EQ(error_code_of(bad.body()), "invalid_request");

  // A decrypted request that is not a chat request.
  auto invalid = enclave.chat(seal(public_key, R"({"model":"rvenc-demo","messages":[]})").body);
  EXPECT_EQ(invalid.result_int(), 400u);
  EXPECT_EQ(error_code_of(invalid.body()), "invalid_inference");

  // Version 1 is off by default.
  auto v1 = enclave.chat(seal(public_key, chat_json("rvenc-demo", "x"), protocol::Version::v1).body);
  EXPECT_EQ(v1.result_int(), 400u);
  EXPECT_EQ(error_code_of(v1.body()), "unsupported_version");

  // Bad challenge.
  auto challenge = http::fetch("GET", enclave.url + "/rvenc/attestation?challenge=12");
  ASSERT_TRUE(challenge);
  EXPECT_EQ(challenge->result_int(), 400u);
  EXPECT_EQ(error_code_of(challenge->body()), "invalid_request");

  // And it still serves afterwards.
  const auto good = seal(public_key, chat_json("rvenc-demo", "still there?"));
  EXPECT_TRUE(test::open_stream(good, enclave.chat(good.body).body()).done);
}

TEST(EnclaveProcess, VersionOneWithAllowV1) {
  RunningEnclave enclave({"--allow-v1"});
  const auto public_key = enclave.attest();
  const auto sealed = seal(public_key, chat_json("rvenc-demo", "legacy client"), protocol::Version::v1);
  auto response = enclave.chat(sealed.body);
  ASSERT_EQ(response.result_int(), 200u) << response.body();
  const auto stream = test::open_stream(sealed, response.body());
  ASSERT_FALSE(stream.failure) << stream.failure->to_string();
  EXPECT_TRUE(stream.done);
  EXPECT_NE(stream.content.find("13 characters in 2 words"), std::string::npos);
  EXPECT_NE(response.body().find("event: done\ndata: [DONE]"), std::string::npos);
  EXPECT_NE(enclave.child->output().find("--allow-v1"), std::string::npos);
}

TEST(EnclaveProcess, ChecksTheGatewayTokenAndTestKeyModels) {
  rvenc::test::TempDir tokens;
  const auto token_file = tokens.file("gateway.token");
  std::ofstream(token_file) << "s3cret-gateway-token\n";
  RunningEnclave enclave({"--gateway-token-file", token_file, "--test-models", "some-other-model"});
  EXPECT_EQ(enclave.child->output().find("local use only"), std::string::npos);
  const auto public_key = enclave.attest();

  http::Fields wrong;
  wrong.set(boost::beast::http::field::authorization, "Bearer s3cret-gateway-tokeN");
  auto refused = enclave.chat(seal(public_key, chat_json("rvenc-demo", "x")).body, wrong);
  EXPECT_EQ(refused.result_int(), 401u);
  EXPECT_EQ(error_code_of(refused.body()), "invalid_api_key");
  auto missing = enclave.chat(seal(public_key, chat_json("rvenc-demo", "x")).body);
  EXPECT_EQ(missing.result_int(), 401u);

  http::Fields right;
  right.set(boost::beast::http::field::authorization, "Bearer s3cret-gateway-token");
  EXPECT_EQ(enclave.chat(seal(public_key, chat_json("rvenc-demo", "x")).body, right).result_int(), 200u);

  http::Fields test_key = right;
  test_key.set("X-Rvenc-Key-Env", "test");
  auto not_allowed = enclave.chat(seal(public_key, chat_json("rvenc-demo", "x")).body, test_key);
  EXPECT_EQ(not_allowed.result_int(), 403u);
  EXPECT_EQ(error_code_of(not_allowed.body()), "test_key_not_allowed");
  EXPECT_EQ(enclave.child->output().find("s3cret"), std::string::npos);
}

TEST(EnclaveProcess, SigtermLetsAnInFlightStreamFinish) {
  RunningEnclave enclave({"--demo-delay-ms", "20"});
  const auto sealed = seal(enclave.attest(), chat_json("rvenc-demo", "slowly please"));
  const auto url = http::parse_url(enclave.url);
  ASSERT_TRUE(url);
  std::string body;
  test::run_coroutine([&]() -> http::awaitable<void> {
    http::HttpClient client;
    auto stream = co_await client.open(*url, http::make_request(http::Verb::post, "/rvenc/chat/completions", sealed.body));
    EXPECT_TRUE(stream) << stream.error().to_string();
    if (!stream) co_return;
    EXPECT_EQ((*stream)->status(), 200u);
    auto first = co_await (*stream)->read_some();
    EXPECT_TRUE(first && *first);
    if (!first || !*first) co_return;
    body += **first;
    enclave.child->signal(SIGTERM);
    for (;;) {
      auto more = co_await (*stream)->read_some();
      EXPECT_TRUE(more) << more.error().to_string();
      if (!more || !*more) break;
      body += **more;
    }
  });
  const auto opened = test::open_stream(sealed, body);
  ASSERT_FALSE(opened.failure) << opened.failure->to_string();
  EXPECT_TRUE(opened.done);
  EXPECT_EQ(opened.finish_reason, "stop");
  EXPECT_EQ(wait_exit(*enclave.child), 0);
}

TEST(EnclaveProcess, OversizedBodyIs413) {
  RunningEnclave enclave({"--max-body", "4096"});
  auto response = enclave.chat(seal(enclave.attest(), chat_json("rvenc-demo", std::string(8000, 'a'))).body);
  EXPECT_EQ(response.result_int(), 413u);
  EXPECT_EQ(error_code_of(response.body()), "request_too_large");
}

TEST(EnclaveProcess, WarnsWithoutGatewayToken) {
  RunningEnclave enclave;
  EXPECT_NE(enclave.child->output().find("local use only"), std::string::npos);
}

TEST(EnclaveProcess, AutoAttestationWithoutHardwareRefusesToStart) {
  rvenc::test::TempDir dir;
  rvenc::test::ChildProcess child({rvenc::test::rvenc_binary(), "enclave", "--listen", "127.0.0.1:0", "--key-file",
                                   dir.file("k"), "--platform-key", dir.file("p"), "--tsm-root",
                                   dir.file("no-configfs")});
  EXPECT_EQ(wait_exit(child), 3);  // kExitUnavailable
  EXPECT_NE(child.output().find("--attestation simulated"), std::string::npos) << child.output();
  EXPECT_FALSE(std::filesystem::exists(dir.file("p")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("k")));
}

// --key-rotation-hours (and RVENC_KEY_ROTATION_HOURS) outside [0, a year], or not a number: a
// usage error naming the flag, before any key or platform file is made.
TEST(EnclaveProcess, RefusesABadKeyRotationPeriod) {
  rvenc::test::TempDir dir;
  for (const std::string bad : {"-1", "nan", "9000000", "soon"}) {
    rvenc::test::ChildProcess child({rvenc::test::rvenc_binary(), "enclave", "--listen", "127.0.0.1:0", "--key-file",
                                     dir.file("k"), "--platform-key", dir.file("p"), "--attestation", "simulated",
                                     "--key-rotation-hours", bad});
    EXPECT_EQ(wait_exit(child), 2) << bad << ": " << child.output();
    EXPECT_NE(child.output().find("--key-rotation-hours"), std::string::npos) << bad << ": " << child.output();
  }
  rvenc::test::ChildProcess from_env({rvenc::test::rvenc_binary(), "enclave", "--listen", "127.0.0.1:0", "--key-file",
                                      dir.file("k"), "--platform-key", dir.file("p"), "--attestation", "simulated"},
                                     {{"RVENC_KEY_ROTATION_HOURS", "-2"}});
  EXPECT_EQ(wait_exit(from_env), 2) << from_env.output();
  EXPECT_FALSE(std::filesystem::exists(dir.file("k")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("p")));
}

TEST(EnclaveProcess, RefusesAKeyFileOthersCanRead) {
  rvenc::test::TempDir dir;
  std::ofstream(dir.file("k")) << std::string(32, 'k');
  std::filesystem::permissions(dir.file("k"), std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
                                                  std::filesystem::perms::others_read);
  rvenc::test::ChildProcess child({rvenc::test::rvenc_binary(), "enclave", "--listen", "127.0.0.1:0", "--key-file",
                                   dir.file("k"), "--platform-key", dir.file("p"), "--attestation", "simulated"});
  EXPECT_EQ(wait_exit(child), 1);
  EXPECT_NE(child.output().find("chmod 600"), std::string::npos) << child.output();
}

// Issue 30 item 3, with the real process: a restart keeps the key file's notAfter (the old
// enclave reset it to now + lifetime at every start), and a key file whose notAfter has passed
// gives a new key at start.
TEST(EnclaveProcess, KeyFileKeepsItsNotAfterAndAnExpiredKeyIsReplacedAtStart) {
  rvenc::test::TempDir dir;
  struct Started {
    std::string key_id;
    std::int64_t not_after = 0;
    std::string output;
  };
  const auto start = [&]() -> Started {
    rvenc::test::ChildProcess child({rvenc::test::rvenc_binary(), "enclave", "--listen", "127.0.0.1:0", "--key-file",
                                     dir.file("enclave.key"), "--platform-key", dir.file("platform.key"),
                                     "--attestation", "simulated"});
    const auto url = child.wait_for_url();
    if (!url) throw std::runtime_error("enclave did not start:\n" + child.output());
    const auto challenge = crypto::random_array<protocol::kChallengeBytes>();
    auto response = http::fetch("GET", *url + "/rvenc/attestation?challenge=" + to_hex(challenge));
    if (!response || response->result_int() != 200) throw std::runtime_error("no attestation:\n" + child.output());
    auto doc = protocol::parse_attestation(response->body());
    if (!doc) throw std::runtime_error(doc.error().to_string());
    EXPECT_EQ(child.stop(), 0);
    return Started{to_hex(doc->key_id), doc->not_after, child.output()};
  };

  const Started first = start();
  // The next start falls in a later second, so a reset notAfter would differ.
  const auto first_second = test::unix_now();
  while (test::unix_now() == first_second) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const Started again = start();
  EXPECT_EQ(again.key_id, first.key_id);
  EXPECT_EQ(again.not_after, first.not_after) << "a restart does not extend the key's life";

  // The key's notAfter passes (the file is rewritten as time would have made it).
  auto stored = read_key_file(dir.file("enclave.key"));
  ASSERT_TRUE(stored && *stored);
  ASSERT_TRUE(write_key_file(dir.file("enclave.key"), (*stored)->seed, test::unix_now() - 10));
  const Started renewed = start();
  EXPECT_NE(renewed.key_id, first.key_id) << renewed.output;
  EXPECT_GT(renewed.not_after, test::unix_now() + 24 * 3600);
  EXPECT_NE(renewed.output.find("made a new key, keyId " + renewed.key_id), std::string::npos) << renewed.output;
  EXPECT_NE(renewed.output.find(first.key_id), std::string::npos) << "the log names the old key";
}

}  // namespace
}  // namespace rvenc::enclave
