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
int wait_exit(rvenc::test::ChildProcess& child) {
  const auto deadline = std::chrono::steady_clock::now() + kExitTimeout;
  while (child.running() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (child.running()) return -1;
  return child.stop();
}

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
      seal(public_key, chat_json("rvenc-demo", "x"), protocol::Version::v2, test::unix_now() - 3600).body);
  EXPECT_EQ(stale.result_int(), 400u);
  EXPECT_EQ(error_code_of(stale.body()), "replayed_request");

  // Unknown keyId.
  crypto::KeyId other{};
  auto unknown =
      enclave.chat(seal(public_key, chat_json("rvenc-demo", "x"), protocol::Version::v2, std::nullopt, other).body);
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
    http::Client client;
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

}  // namespace
}  // namespace rvenc::enclave
