// End to end with real processes: `rvenc enclave` (demo engine, simulated attestation with a
// platform key we made), `rvenc keys create`, `rvenc gateway`, then the SDK and `rvenc chat`,
// `rvenc keygen`, `rvenc attest` as a user runs them.
#include <sys/stat.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "rvenc/client/client.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/http/client.hpp"
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
std::pair<int, std::string> run_rvenc(std::vector<std::string> args,
                                      std::map<std::string, std::string> env = {{"RVENC_API_KEY", ""}}) {
  args.insert(args.begin(), test::rvenc_binary());
  ChildProcess process(args, std::move(env));
  const auto deadline = std::chrono::steady_clock::now() + kProcessTimeout;
  while (process.running() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const int status = process.stop(SIGKILL, std::chrono::milliseconds(0));
  return {status, process.output()};
}

// The platform key and the enclave/gateway token of a test stack in `dir`; the platform public key (hex).
std::string write_stack_secrets(const test::TempDir& dir) {
  crypto::Ed25519Seed seed;
  crypto::random_bytes(seed.span());
  write_secret_file(dir.file("platform.key"), crypto::as_chars(seed.span()));
  write_secret_file(dir.file("token"), to_hex(crypto::random_array<32>()));
  return to_hex(crypto::ed25519_keypair_from_seed(seed).public_key);
}

// A test key named `name` in dir/rvenc.db from `rvenc keys create` (empty, the failure recorded, when none).
std::string create_test_key(const test::TempDir& dir, const std::string& name) {
  auto [status, output] = run_rvenc({"keys", "create", "--db", dir.file("rvenc.db"), "--name", name, "--test"});
  EXPECT_EQ(status, 0) << output;
  std::string key;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);)
    if (line.starts_with("sk_test_")) key = line;
  EXPECT_FALSE(key.empty()) << output;
  return key;
}

// A gateway in front of `enclave_url` with dir's store and token, plus `extra` flags; `url` is where it listens.
ChildProcess* start_gateway(const test::TempDir& dir, const std::string& enclave_url,
                            const std::vector<std::string>& extra, std::string& url) {
  std::vector<std::string> argv{test::rvenc_binary(), "gateway", "--listen", "127.0.0.1:0", "--enclave", enclave_url,
                                "--db", dir.file("rvenc.db"), "--enclave-token-file", dir.file("token")};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto* gateway = new ChildProcess(argv);
  auto listening = gateway->wait_for_url();
  EXPECT_TRUE(listening) << gateway->output();
  url = listening.value_or("");
  return gateway;
}

class EndToEnd : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    platform_public_key_ = write_stack_secrets(*dir_);
    start_enclave("enclave.key", "127.0.0.1:0");
    api_key_ = create_test_key(*dir_, "e2e");
    ASSERT_FALSE(api_key_.empty());
    gateway_ = start_gateway(*dir_, enclave_url_, {}, gateway_url_);
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

// ---- issue 29: settings per field, errors that say what to do, exit codes ---------------------

// DIR/stack.json as `rvenc up` writes it, naming the suite's gateway with `api_key`.
void write_stack(const test::TempDir& dir, const std::string& gateway, const std::string& api_key,
                 const std::string& platform_key) {
  std::ofstream(dir.file("stack.json")) << json::serialize(
      json::object{{"gatewayUrl", gateway}, {"apiKey", api_key}, {"platformPublicKey", platform_key}});
}

TEST_F(EndToEnd, DataWithApiKeyUsesTheStacksGatewayWithThatKey) {
  test::TempDir data;
  write_stack(data, gateway_url_, "sk_test_notthekey0000000000000000000", platform_public_key_);
  // Before: any of --gateway/--api-key/--platform-public-key made the tool ignore --data entirely.
  auto [status, output] = run_rvenc({"chat", "--data", data.path().string(), "--api-key", api_key_, "Hello"});
  EXPECT_EQ(status, 0) << output;
  EXPECT_TRUE(output.starts_with(kDemoGreeting)) << output;
}

TEST_F(EndToEnd, ExplicitDataBeatsTheGatewayVariable) {
  test::TempDir data;
  write_stack(data, gateway_url_, api_key_, platform_public_key_);
  auto [status, output] = run_rvenc({"chat", "--data", data.path().string(), "Hello"},
                                    {{"RVENC_API_KEY", ""}, {"RVENC_GATEWAY_URL", "http://127.0.0.1:1"}});
  EXPECT_EQ(status, 0) << output;
  EXPECT_TRUE(output.starts_with(kDemoGreeting)) << output;
}

TEST_F(EndToEnd, DeprecatedGatewayVariableStillWorksWithAWarning) {
  auto [status, output] =
      run_rvenc({"chat", "--api-key", api_key_, "--platform-public-key", platform_public_key_, "Hello"},
                {{"RVENC_API_KEY", ""}, {"RVENC_GATEWAY_URL", ""}, {"RVENC_GATEWAY", gateway_url_}});
  EXPECT_EQ(status, 0) << output;
  EXPECT_NE(output.find("RVENC_GATEWAY is deprecated; set RVENC_GATEWAY_URL"), std::string::npos) << output;
}

TEST_F(EndToEnd, AStacksKeyIsNeverSentToAnotherGateway) {
  test::TempDir data;
  write_stack(data, "http://127.0.0.1:1", api_key_, platform_public_key_);
  auto [status, output] = run_rvenc({"chat", "--data", data.path().string(), "--gateway", gateway_url_, "Hello"});
  EXPECT_EQ(status, 2) << output;
  EXPECT_NE(output.find("an API key is needed"), std::string::npos) << output;
}

TEST_F(EndToEnd, ParseErrorsSuggestTheClosestName) {
  auto command = run_rvenc({"chatt", "hi"});
  EXPECT_EQ(command.first, 2) << command.second;
  EXPECT_NE(command.second.find("did you mean rvenc chat?"), std::string::npos) << command.second;
  auto flag = run_rvenc({"up", "--gatway-port", "0"});
  EXPECT_EQ(flag.first, 2) << flag.second;
  EXPECT_NE(flag.second.find("unknown flag --gatway-port for rvenc up; did you mean --gateway-port?"),
            std::string::npos)
      << flag.second;
  auto nested = run_rvenc({"keys", "lst"});
  EXPECT_EQ(nested.first, 2) << nested.second;
  EXPECT_NE(nested.second.find("did you mean rvenc keys list?"), std::string::npos) << nested.second;
  auto range = run_rvenc({"chat", "--max-tokens", "0", "hi"});
  EXPECT_EQ(range.first, 2) << range.second;
  EXPECT_NE(range.second.find("--max-tokens: must be ≥ 1"), std::string::npos) << range.second;
  EXPECT_EQ(range.second.find("179769"), std::string::npos) << range.second;
  // Nothing close: CLI11's own message stays.
  auto far = run_rvenc({"zzzzzzzz"});
  EXPECT_EQ(far.first, 2) << far.second;
  EXPECT_EQ(far.second.find("did you mean"), std::string::npos) << far.second;
}

TEST_F(EndToEnd, HelpListsExitCodesAndVariables) {
  auto help = run_rvenc({"--help"});
  EXPECT_EQ(help.first, 0);
  EXPECT_NE(help.second.find("Exit codes: 0 done"), std::string::npos) << help.second;
  EXPECT_NE(help.second.find("130 interrupted"), std::string::npos) << help.second;
  auto proxy = run_rvenc({"proxy", "--help"});
  EXPECT_NE(proxy.second.find("RVENC_GATEWAY_URL"), std::string::npos) << proxy.second;
  auto up = run_rvenc({"up", "--help"});
  EXPECT_NE(up.second.find("RVENC_DEMO_DELAY_MS"), std::string::npos) << up.second;
}

TEST_F(EndToEnd, WrongEndpointsNameTheRightOne) {
  // A gateway URL with /v1 (an OpenAI base URL): refused before anything is sent.
  auto v1 = run_rvenc({"chat", "--gateway", gateway_url_ + "/v1", "--api-key", api_key_, "hi"});
  EXPECT_EQ(v1.first, 2) << v1.second;
  EXPECT_NE(v1.second.find("ends in /v1"), std::string::npos) << v1.second;
  EXPECT_NE(v1.second.find("e.g. " + gateway_url_), std::string::npos) << v1.second;

  // An OpenAI client pointed at the gateway: a 404 naming the proxy, in the full OpenAI shape.
  http::Fields headers;
  headers.set(boost::beast::http::field::content_type, "application/json");
  auto openai = http::fetch("POST", gateway_url_ + "/v1/chat/completions", R"({"model":"m","messages":[]})", headers);
  ASSERT_TRUE(openai);
  EXPECT_EQ(openai->result_int(), 404u);
  const auto error = json::parse(openai->body()).at("error").as_object();
  EXPECT_NE(std::string(error.at("message").as_string()).find("point OpenAI clients at rvenc proxy"), std::string::npos)
      << openai->body();
  for (const char* field : {"message", "type", "param", "code"}) EXPECT_TRUE(error.contains(field)) << field;

  // `rvenc chat --gateway <proxy URL>`: says it is no gateway instead of a bare 404. (The proxy
  // listens on localhost:0, which was refused before.)
  ChildProcess proxy({test::rvenc_binary(), "proxy", "--listen", "localhost:0", "--gateway", gateway_url_,
                      "--platform-public-key", platform_public_key_});
  auto proxy_url = proxy.wait_for_url();
  ASSERT_TRUE(proxy_url) << proxy.output();
  auto wrong = run_rvenc({"chat", "--gateway", *proxy_url, "--api-key", api_key_, "hi"});
  EXPECT_EQ(wrong.first, 1) << wrong.second;
  EXPECT_NE(wrong.second.find("does not answer like an rvenc gateway"), std::string::npos) << wrong.second;
  auto proxy_v1 = run_rvenc({"proxy", "--listen", "127.0.0.1:0", "--gateway", *proxy_url + "/v1"});
  EXPECT_EQ(proxy_v1.first, 2) << proxy_v1.second;
  EXPECT_NE(proxy_v1.second.find("ends in /v1"), std::string::npos) << proxy_v1.second;
  // A proxy whose --gateway is another proxy: one line at start saying so, not a 404 per request.
  auto proxy_of_proxy = run_rvenc({"proxy", "--listen", "127.0.0.1:0", "--gateway", *proxy_url});
  EXPECT_EQ(proxy_of_proxy.first, 2) << proxy_of_proxy.second;
  EXPECT_NE(proxy_of_proxy.second.find("does not answer like an rvenc gateway"), std::string::npos)
      << proxy_of_proxy.second;
}

TEST_F(EndToEnd, ModelListChecksAKeyWhenOneIsSent) {
  auto open = http::fetch("GET", gateway_url_ + "/rvenc/models");
  ASSERT_TRUE(open);
  EXPECT_EQ(open->result_int(), 200u);  // public without a key
  for (const auto& [key, status] : {std::pair{std::string("sk_test_wrong000000000000000000000000"), 401u},
                                    std::pair{std::string("garbage"), 401u}, std::pair{api_key_, 200u}}) {
    http::Fields headers;
    headers.set(boost::beast::http::field::authorization, "Bearer " + key);
    auto checked = http::fetch("GET", gateway_url_ + "/rvenc/models", {}, headers);
    ASSERT_TRUE(checked);
    EXPECT_EQ(checked->result_int(), status) << key << ": " << checked->body();
  }
  // Through the proxy: "is my key right?" has a true answer.
  ChildProcess proxy({test::rvenc_binary(), "proxy", "--listen", "127.0.0.1:0", "--gateway", gateway_url_,
                      "--platform-public-key", platform_public_key_});
  auto proxy_url = proxy.wait_for_url();
  ASSERT_TRUE(proxy_url) << proxy.output();
  http::Fields wrong;
  wrong.set(boost::beast::http::field::authorization, "Bearer sk_test_wrong000000000000000000000000");
  auto listed = http::fetch("GET", *proxy_url + "/v1/models", {}, wrong);
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->result_int(), 401u) << listed->body();
  // models.retrieve of the OpenAI SDK, and /health as an alias of /healthz.
  http::Fields right;
  right.set(boost::beast::http::field::authorization, "Bearer " + api_key_);
  auto one = http::fetch("GET", *proxy_url + "/v1/models/rvenc-demo", {}, right);
  ASSERT_TRUE(one);
  EXPECT_EQ(one->result_int(), 200u) << one->body();
  EXPECT_EQ(json::parse(one->body()).at("id").as_string(), "rvenc-demo") << one->body();
  auto none = http::fetch("GET", *proxy_url + "/v1/models/no-such-model", {}, right);
  ASSERT_TRUE(none);
  EXPECT_EQ(none->result_int(), 404u) << none->body();
  EXPECT_EQ(json::parse(none->body()).at("error").at("code").as_string(), "model_not_found");
  auto health = http::fetch("GET", *proxy_url + "/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->result_int(), 200u);
  // The proxy's access log: the same line as the gateway's, the key masked.
  const std::string proxy_log = proxy.output();
  EXPECT_NE(proxy_log.find("GET /v1/models 401 "), std::string::npos) << proxy_log;
  EXPECT_NE(proxy_log.find("GET /v1/models/rvenc-demo 200 "), std::string::npos) << proxy_log;
  EXPECT_NE(proxy_log.find("ms key …" + api_key_.substr(api_key_.size() - 4)), std::string::npos) << proxy_log;
  EXPECT_EQ(proxy_log.find(api_key_), std::string::npos);  // never the whole key

  // The gateway's access log: one line per request, the key masked to its last 4 characters.
  const std::string log = gateway_->output();
  EXPECT_NE(log.find("GET /rvenc/models 200 "), std::string::npos) << log;
  EXPECT_NE(log.find("GET /rvenc/models 401 "), std::string::npos) << log;
  EXPECT_NE(log.find("ms key …" + api_key_.substr(api_key_.size() - 4)), std::string::npos) << log;
  EXPECT_EQ(log.find(api_key_), std::string::npos);  // never the whole key
}

TEST_F(EndToEnd, ATooLargePromptIsRefusedBeforeSendingInTheUsersTerms) {
  auto models = http::fetch("GET", gateway_url_ + "/rvenc/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(std::string(models->base()["X-Rvenc-Max-Body"]), "8388608");
  auto client = create_client(options());
  ASSERT_TRUE(client);
  // 5 MB of prompt is 10 MB sealed (hex), over the gateway's 8 MiB: before, a 413 about bytes the
  // user never sent (or a Broken pipe for larger ones).
  auto completion = client->chat.completions.create(request(std::string(5'000'000, 'a')));
  ASSERT_FALSE(completion);
  EXPECT_EQ(completion.error().code, Errc::request_too_large);
  EXPECT_NE(completion.error().message.find("bytes of JSON fit"), std::string::npos) << completion.error().message;
  EXPECT_NE(completion.error().message.find("--max-body"), std::string::npos) << completion.error().message;
  EXPECT_TRUE(client->chat.completions.create(request("Hi")));  // a normal one still goes through
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

// --- stream shaping (docs/traffic-shaping.md) ------------------------------------------------

// Two recorded answers of one length bucket that differ in content and token sizes, replayed by
// the demo engine; an enclave offering off and cadence (not pad) with a short interval; a gateway
// recording what it sees.
class ShapedEndToEnd : public EndToEnd {  // for request(); its own stack
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    platform_public_key_ = write_stack_secrets(*dir_);
    std::ofstream(dir_->file("answers.jsonl"))
        << R"({"tokens": ["Yes", "."], "delaysMs": [5, 5]})" << "\n"
        << R"({"tokens": ["The", " answer", " is", " considerably", " longer", ", with", " \u00e9t\u00e9", " words"],)"
        << R"( "delaysMs": [5, 5, 5, 5, 5, 5, 5, 5]})" << "\n";
    enclave_ = new ChildProcess({test::rvenc_binary(), "enclave", "--listen", "127.0.0.1:0", "--attestation",
                                 "simulated", "--key-file", dir_->file("enclave.key"), "--platform-key",
                                 dir_->file("platform.key"), "--gateway-token-file", dir_->file("token"),
                                 "--demo-replay", dir_->file("answers.jsonl"), "--shaping-allow", "off,cadence",
                                 "--shaping-interval-ms", "10"});
    auto enclave_url = enclave_->wait_for_url();
    ASSERT_TRUE(enclave_url) << enclave_->output();
    api_key_ = create_test_key(*dir_, "shaped");
    gateway_ = start_gateway(*dir_, *enclave_url, {"--record-traffic", dir_->file("traffic.jsonl")}, gateway_url_);
  }
  static void TearDownTestSuite() {
    delete gateway_;
    delete enclave_;
    delete dir_;
  }

  static ClientOptions options(std::optional<protocol::ShapingMode> shaping) {
    ClientOptions options;
    options.api_key = api_key_;
    options.base_url = gateway_url_;
    options.attestation.simulated_platform_key =
        *from_hex_exact<crypto::kEd25519PublicKeyBytes>(platform_public_key_, "platform key");
    options.shaping = shaping;
    return options;
  }

  // The streamed content of answer `n` and the gateway's request id for it.
  static std::pair<std::string, std::string> play(const Client& client, int n) {
    std::string content, request_id;
    CallOptions call;
    call.on_response = [&](const ResponseMeta& meta) { request_id = meta.header("x-request-id").value_or(""); };
    auto done = client.chat.completions.create(
        EndToEnd::request("replay:" + std::to_string(n)),
        [&](const Chunk& chunk) -> Status {
          EXPECT_FALSE(chunk.object.contains("rvenc_filler")) << chunk.json();
          const auto& delta = chunk.object.at("choices").at(0).at("delta").as_object();
          if (const auto* text = delta.if_contains("content"); text && text->is_string()) content += text->as_string();
          return {};
        },
        call);
    EXPECT_TRUE(done) << done.error().to_string();
    return {content, request_id};
  }

  // The event sizes the gateway recorded for `request_id` (waits for its line).
  static std::vector<std::int64_t> recorded_sizes(const std::string& request_id) {
    const auto deadline = std::chrono::steady_clock::now() + kProcessTimeout;
    while (std::chrono::steady_clock::now() < deadline) {
      std::ifstream in(dir_->file("traffic.jsonl"));
      for (std::string line; std::getline(in, line);) {
        const auto record = json::parse(line).as_object();
        if (record.at("requestId").as_string() != request_id) continue;
        std::vector<std::int64_t> sizes;
        for (const auto& event : record.at("events").as_array()) sizes.push_back(event.as_array().at(1).to_number<std::int64_t>());
        return sizes;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return {};
  }

  static inline test::TempDir* dir_ = nullptr;
  static inline ChildProcess* enclave_ = nullptr;
  static inline ChildProcess* gateway_ = nullptr;
  static inline std::string gateway_url_, api_key_, platform_public_key_;
};

TEST_F(ShapedEndToEnd, CadenceRecordSizesOfTwoAnswersOfOneBucketAreIdenticalAtTheGateway) {
  auto client = create_client(options(protocol::ShapingMode::cadence));
  ASSERT_TRUE(client) << client.error().to_string();
  const auto [short_text, short_id] = play(*client, 0);
  const auto [long_text, long_id] = play(*client, 1);
  EXPECT_EQ(short_text, "Yes.");
  EXPECT_EQ(long_text, "The answer is considerably longer, with \u00e9t\u00e9 words");
  const auto short_sizes = recorded_sizes(short_id);
  const auto long_sizes = recorded_sizes(long_id);
  ASSERT_GE(short_sizes.size(), protocol::kMinBucket) << gateway_->output();
  EXPECT_EQ(short_sizes, long_sizes);
  // Unshaped, the same two answers differ at the gateway (the test can fail).
  auto plain = create_client(options(protocol::ShapingMode::off));
  ASSERT_TRUE(plain);
  const auto plain_short = play(*plain, 0);
  const auto plain_long = play(*plain, 1);
  EXPECT_NE(recorded_sizes(plain_short.second), recorded_sizes(plain_long.second));
}

TEST_F(ShapedEndToEnd, ChatCommandNeverShowsFillers) {
  auto [status, output] = run_rvenc({"chat", "--gateway", gateway_url_, "--api-key", api_key_, "--platform-public-key",
                                     platform_public_key_, "--shaping", "cadence", "replay:1"});
  EXPECT_EQ(status, 0) << output;
  EXPECT_TRUE(output.starts_with("The answer is considerably longer, with \u00e9t\u00e9 words")) << output;
  EXPECT_EQ(output.find("rvenc_filler"), std::string::npos) << output;
  auto [json_status, json_output] =
      run_rvenc({"chat", "--gateway", gateway_url_, "--api-key", api_key_, "--platform-public-key",
                 platform_public_key_, "--shaping", "cadence", "--json", "replay:0"});
  EXPECT_EQ(json_status, 0) << json_output;
  EXPECT_EQ(json_output.find("rvenc_filler"), std::string::npos) << json_output;
  EXPECT_EQ(json_output.find('\x1e'), std::string::npos) << json_output;
}

TEST_F(ShapedEndToEnd, AModeTheEnclaveDoesNotOfferIsAClearError) {
  auto client = create_client(options(protocol::ShapingMode::pad));
  ASSERT_TRUE(client);
  auto completion = client->chat.completions.create(EndToEnd::request("replay:0"));
  ASSERT_FALSE(completion);
  EXPECT_EQ(completion.error().code, Errc::invalid_inference) << completion.error().to_string();
  EXPECT_EQ(completion.error().http_status, 400);
  EXPECT_NE(completion.error().message.find("\"pad\" is not offered by this enclave (offered: off, cadence)"),
            std::string::npos)
      << completion.error().message;
}

}  // namespace
}  // namespace rvenc::client
