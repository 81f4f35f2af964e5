// End to end with real processes: `rvenc enclave` (demo engine, simulated attestation with a
// platform key we made), `rvenc keys create`, `rvenc gateway`, then the SDK and `rvenc chat`,
// `rvenc keygen`, `rvenc attest` as a user runs them.
#include <sys/stat.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "rvenc/client/client.hpp"
#include "rvenc/common/hex.hpp"
#include "support/test_support.hpp"

namespace rvenc::client {
namespace {

namespace json = boost::json;
using test::ChildProcess;

constexpr std::string_view kDemoGreeting = "Hello from the rvenc demo engine";
constexpr auto kProcessTimeout = std::chrono::seconds(60);

void write_secret_file(const std::string& path, std::string_view bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
  ::chmod(path.c_str(), 0600);
}

// Runs the rvenc binary to completion; returns (exit status, stdout+stderr).
std::pair<int, std::string> run_rvenc(std::vector<std::string> args) {
  args.insert(args.begin(), test::rvenc_binary());
  ChildProcess process(args, {{"RVENC_API_KEY", ""}});
  const auto deadline = std::chrono::steady_clock::now() + kProcessTimeout;
  while (process.running() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const int status = process.stop(SIGKILL, std::chrono::milliseconds(0));
  return {status, process.output()};
}

class EndToEnd : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    crypto::Ed25519Seed seed;
    crypto::random_bytes(seed.span());
    write_secret_file(dir_->file("platform.key"), crypto::as_chars(seed.span()));
    platform_public_key_ = to_hex(crypto::ed25519_keypair_from_seed(seed).public_key);
    write_secret_file(dir_->file("token"), to_hex(crypto::random_array<32>()));

    start_enclave("enclave.key", "127.0.0.1:0");
    auto [status, output] = run_rvenc({"keys", "create", "--db", dir_->file("rvenc.db"), "--name", "e2e", "--test"});
    ASSERT_EQ(status, 0) << output;
    std::istringstream lines(output);
    for (std::string line; std::getline(lines, line);)
      if (line.starts_with("sk_test_")) api_key_ = line;
    ASSERT_FALSE(api_key_.empty()) << output;

    gateway_ = new ChildProcess({test::rvenc_binary(), "gateway", "--listen", "127.0.0.1:0", "--enclave", enclave_url_,
                                 "--db", dir_->file("rvenc.db"), "--enclave-token-file", dir_->file("token")});
    auto url = gateway_->wait_for_url();
    ASSERT_TRUE(url) << gateway_->output();
    gateway_url_ = *url;
  }

  static void start_enclave(const std::string& key_file, const std::string& listen) {
    enclave_ = new ChildProcess({test::rvenc_binary(), "enclave", "--listen", listen, "--attestation", "simulated",
                                 "--key-file", dir_->file(key_file), "--platform-key", dir_->file("platform.key"),
                                 "--gateway-token-file", dir_->file("token")});
    auto url = enclave_->wait_for_url();
    ASSERT_TRUE(url) << enclave_->output();
    enclave_url_ = *url;
  }

  static void TearDownTestSuite() {
    delete gateway_;
    delete enclave_;
    delete dir_;
  }

  static ClientOptions options() {
    ClientOptions options;
    options.api_key = api_key_;
    options.base_url = gateway_url_;
    auto key = from_hex_exact<crypto::kEd25519PublicKeyBytes>(platform_public_key_, "platform key");
    options.attestation.simulated_platform_key = *key;
    return options;
  }

  static json::object request(std::string_view prompt) {
    return {{"model", "rvenc-demo"},
            {"messages", json::array{json::object{{"role", "user"}, {"content", prompt}}}},
            {"stream", true}};
  }

  std::vector<std::string> chat_flags() const {
    return {"chat", "--gateway", gateway_url_, "--api-key", api_key_, "--platform-public-key", platform_public_key_};
  }

  static inline test::TempDir* dir_ = nullptr;
  static inline ChildProcess* enclave_ = nullptr;
  static inline ChildProcess* gateway_ = nullptr;
  static inline std::string enclave_url_, gateway_url_, api_key_, platform_public_key_;
};

TEST_F(EndToEnd, SdkStreamsAndAssemblesThroughTheRealGateway) {
  auto client = create_client(options());
  ASSERT_TRUE(client) << client.error().to_string();

  std::string streamed;
  std::size_t chunks = 0;
  auto done = client->chat.completions.create(request("Hello there"), [&](const Chunk& chunk) -> Status {
    ++chunks;
    const auto& delta = chunk.object.at("choices").at(0).at("delta").as_object();
    if (const auto* content = delta.if_contains("content"); content && content->is_string()) streamed += content->as_string();
    return {};
  });
  ASSERT_TRUE(done) << done.error().to_string();
  EXPECT_GT(chunks, 1u);
  EXPECT_NE(streamed.find(kDemoGreeting), std::string::npos) << streamed;

  auto completion = client->chat.completions.create(request("Hello there"));
  ASSERT_TRUE(completion) << completion.error().to_string();
  const auto& choice = completion->at("choices").at(0).as_object();
  EXPECT_EQ(choice.at("message").at("content").as_string(), streamed);
  EXPECT_EQ(choice.at("finish_reason").as_string(), "stop");
}

TEST_F(EndToEnd, WrongApiKeyIsTheGatewaysTypedError) {
  auto opts = options();
  opts.api_key = "sk_test_not_a_key_of_this_gateway";
  auto client = create_client(opts);
  ASSERT_TRUE(client);
  auto completion = client->chat.completions.create(request("Hello"));
  ASSERT_FALSE(completion);
  EXPECT_EQ(completion.error().code, Errc::invalid_api_key) << completion.error().to_string();
  EXPECT_EQ(completion.error().http_status, 401);
}

TEST_F(EndToEnd, ChatCommandOneShotPrintsTheAnswer) {
  auto args = chat_flags();
  args.push_back("Hello there");
  auto [status, output] = run_rvenc(args);
  EXPECT_EQ(status, 0) << output;
  EXPECT_TRUE(output.starts_with(kDemoGreeting)) << output;
  EXPECT_EQ(output.find("\x1b["), std::string::npos);  // no ANSI codes when not on a terminal
}

TEST_F(EndToEnd, ChatCommandJsonPrintsOneDecryptedChunkPerLine) {
  auto args = chat_flags();
  args.insert(args.end(), {"--json", "-m", "rvenc-demo", "Hi"});
  auto [status, output] = run_rvenc(args);
  ASSERT_EQ(status, 0) << output;
  std::istringstream lines(output);
  int count = 0;
  for (std::string line; std::getline(lines, line); ++count) {
    auto value = json::parse(line);
    EXPECT_EQ(value.at("object").as_string(), "chat.completion.chunk") << line;
  }
  EXPECT_GT(count, 1);
}

TEST_F(EndToEnd, ChatCommandReadsStackJson) {
  test::TempDir data;
  std::ofstream(data.file("stack.json"))
      << json::serialize(json::object{{"gatewayUrl", gateway_url_}, {"apiKey", api_key_},
                                      {"platformPublicKey", platform_public_key_}});
  auto [status, output] = run_rvenc({"chat", "--data", data.path().string(), "Hello"});
  EXPECT_EQ(status, 0) << output;
  EXPECT_TRUE(output.starts_with(kDemoGreeting)) << output;
}

TEST_F(EndToEnd, ChatCommandExitCodes) {
  auto untrusted = run_rvenc({"chat", "--gateway", gateway_url_, "--api-key", api_key_, "-m", "rvenc-demo", "Hi"});
  EXPECT_EQ(untrusted.first, 4) << untrusted.second;
  EXPECT_NE(untrusted.second.find("attestation_failed"), std::string::npos) << untrusted.second;

  auto args = chat_flags();
  args[4] = "sk_test_wrong";
  args.insert(args.end(), {"-m", "rvenc-demo", "Hi"});
  auto refused = run_rvenc(args);
  EXPECT_EQ(refused.first, 1) << refused.second;
  EXPECT_NE(refused.second.find("invalid_api_key (HTTP 401)"), std::string::npos) << refused.second;

  auto unreachable = run_rvenc({"chat", "--gateway", "http://127.0.0.1:1", "--api-key", api_key_, "-m", "x", "Hi"});
  EXPECT_EQ(unreachable.first, 3) << unreachable.second;

  auto usage = run_rvenc({"chat", "--protocol", "4", "Hi"});
  EXPECT_EQ(usage.first, 2) << usage.second;
}

TEST_F(EndToEnd, KeygenAndAttestAgreeOnTheEnclaveKey) {
  auto keygen = run_rvenc({"keygen", "--gateway", gateway_url_, "--platform-public-key", platform_public_key_});
  ASSERT_EQ(keygen.first, 0) << keygen.second;
  auto keys = EncryptionKeys::from_json(keygen.second);
  ASSERT_TRUE(keys) << keys.error().to_string();

  auto attest = run_rvenc({"attest", "--json", "--gateway", gateway_url_, "--platform-public-key", platform_public_key_});
  ASSERT_EQ(attest.first, 0) << attest.second;
  auto facts = json::parse(attest.second).as_object();
  EXPECT_EQ(facts.at("keyId").as_string(), to_hex(keys->key_id));
  EXPECT_EQ(keys->not_after, facts.at("notAfter").as_int64()) << "keygen's keys carry the enclave key's notAfter";
  EXPECT_EQ(facts.at("provider").as_string(), "simulated");
  EXPECT_EQ(facts.at("bindingOk").as_bool(), true);

  // Keys from keygen work in the SDK as pre-generated keys.
  auto opts = options();
  opts.encryption_keys = std::move(*keys);
  auto client = create_client(opts);
  ASSERT_TRUE(client);
  EXPECT_TRUE(client->chat.completions.create(request("Hi")));

  auto untrusted = run_rvenc({"attest", "--gateway", gateway_url_});
  EXPECT_EQ(untrusted.first, 4) << untrusted.second;
}

// Replaces the suite's enclave (declared last: when the whole binary runs, nothing follows it).
TEST_F(EndToEnd, NewEnclaveKeyIsPickedUpAfterUnknownKeyId) {
  auto client = create_client(options());
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->chat.completions.create(request("Hi")));
  const auto before = client->attest();
  ASSERT_TRUE(before);

  // The enclave restarts on the same address with a new key: the client's keys are now unknown.
  const std::string listen = enclave_url_.substr(std::string_view("http://").size());
  delete enclave_;
  enclave_ = nullptr;
  start_enclave("enclave-2.key", listen);

  auto completion = client->chat.completions.create(request("Hi again"));
  ASSERT_TRUE(completion) << completion.error().to_string();
  const auto after = client->attest();
  ASSERT_TRUE(after);
  EXPECT_NE(after->key_id, before->key_id);
}

}  // namespace
}  // namespace rvenc::client
