// Finding 8 of issue 30: the enclave's log is host-visible, so it carries nothing that came inside
// a ciphertext (docs/threat-model.md, "What each component logs"). The real `rvenc enclave`
// process serves a demo model and upstream models (working, failing, unreachable) whose names and
// prompts are markers; after startup (whose lines list the configured models, which is config)
// its output must contain none of them, nor the upstream addresses, while it does log each request.
#include <gtest/gtest.h>

#include <boost/beast/http/field.hpp>

#include "enclave_test_support.hpp"
#include "fake_openai.hpp"
#include "rvenc/enclave/service.hpp"
#include "rvenc/http/client.hpp"
#include "rvenc/protocol/attestation.hpp"
#include "support/test_support.hpp"

namespace rvenc::enclave {
namespace {

using test::chat_json;

constexpr std::string_view kPromptMarker = "PROMPT-MARKER-4711";

TEST(EnclaveLog, CarriesNothingFromInsideTheCiphertext) {
  test::FakeOpenAi fake;
  rvenc::test::TempDir dir;
  const std::string gone = "http://127.0.0.1:" + std::to_string(rvenc::test::free_port()) + "/v1";
  rvenc::test::ChildProcess child(
      {rvenc::test::rvenc_binary(), "enclave", "--listen", "127.0.0.1:0", "--key-file", dir.file("k"), "--platform-key",
       dir.file("p"), "--attestation", "simulated", "--demo-model", "secret-demo-model", "--test-models",
       "secret-demo-model", "--upstream", "secret-good-model=" + fake.base("ok"), "--upstream",
       "secret-broken-model=" + fake.base("err"), "--upstream", "secret-dying-model=" + fake.base("die"), "--upstream",
       "secret-gone-model=" + gone, "--upstream-timeout-ms", "10000"});
  const auto url = child.wait_for_url();
  ASSERT_TRUE(url) << child.output();
  // The startup lines (written with the listening line) list the configured models: config.
  const std::size_t startup = child.output().size();
  ASSERT_NE(child.output().find("secret-good-model"), std::string::npos) << child.output();

  const auto challenge = crypto::random_array<protocol::kChallengeBytes>();
  auto attestation = http::fetch("GET", *url + "/rvenc/attestation?challenge=" + to_hex(challenge));
  ASSERT_TRUE(attestation);
  auto doc = protocol::parse_attestation(attestation->body());
  ASSERT_TRUE(doc);

  const std::vector<std::pair<std::string, std::string>> requests{
      {"secret-demo-model", "live"},   {"secret-good-model", "live"}, {"secret-broken-model", "live"},
      {"secret-dying-model", "live"},  {"secret-gone-model", "live"}, {"secret-unserved-model", "live"},
      {"secret-good-model", "test"}};  // the last two are refused
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const auto& [model, env] = requests[i];
    const auto sealed = test::seal(doc->public_key, chat_json(model, std::string(kPromptMarker)));
    http::Fields headers;
    headers.set(boost::beast::http::field::content_type, "application/json");
    headers.set(kRequestIdHeader, "logtest-" + std::to_string(i));
    headers.set(kKeyEnvHeader, env);
    auto response = http::fetch("POST", *url + "/rvenc/chat/completions", sealed.body, headers);
    ASSERT_TRUE(response) << model;
    // The request's line is written when it ends, maybe after the client has its answer.
    ASSERT_TRUE(child.wait_for_line("chat logtest-" + std::to_string(i) + " ")) << model << "\n" << child.output();
  }

  const std::string log = child.output().substr(startup);
  EXPECT_NE(log.find("chat logtest-0 tenant=- v3 "), std::string::npos) << log;
  EXPECT_NE(log.find("chat logtest-5 tenant=- refused: invalid_inference"), std::string::npos) << log;
  EXPECT_NE(log.find("chat logtest-6 tenant=- refused: test_key_not_allowed"), std::string::npos) << log;
  const std::vector<std::string> secrets{"secret-", std::string(kPromptMarker), "model=", "engine=", "upstream ",
                                         fake.server->url(), gone};
  for (const auto& secret : secrets)
    EXPECT_EQ(log.find(secret), std::string::npos) << "'" << secret << "' in the log:\n" << log;
}

}  // namespace
}  // namespace rvenc::enclave
