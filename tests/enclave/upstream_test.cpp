// The upstream engine against an OpenAI-style server started here (rvenc_http Server on port 0):
// in-process through UpstreamEngine, and end to end through the real `rvenc enclave` process.
#include <signal.h>

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include "enclave_test_support.hpp"
#include "fake_openai.hpp"
#include "rvenc/enclave/engine.hpp"
#include "rvenc/http/server.hpp"
#include "rvenc/protocol/attestation.hpp"
#include "support/test_support.hpp"

namespace rvenc::enclave {
namespace {

namespace json = boost::json;
using test::chat_json;

using test::FakeOpenAi;

struct Relayed {
  std::vector<std::string> chunks;
  EngineOutcome outcome;
};

Relayed relay(FakeOpenAi& fake, std::string_view mode, http::HttpClient& client,
              std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto spec = parse_upstream_spec("m=" + fake.base(mode));
  EXPECT_TRUE(spec);
  UpstreamEngine engine(UpstreamEngineOptions{"m", spec->base, timeout},
                        std::shared_ptr<http::HttpClient>(&client, [](http::HttpClient*) {}));
  const auto request = *protocol::validate_chat_request(chat_json("m", "hi", {{"stream", false}}));
  Relayed out;
  out.outcome = test::run_coroutine([&]() -> http::awaitable<EngineOutcome> {
    co_return co_await engine.generate(request, [&](std::string chunk) -> http::awaitable<bool> {
      out.chunks.push_back(std::move(chunk));
      co_return true;
    });
  });
  return out;
}

TEST(UpstreamEngine, RelaysChunksAndUsageAndAlwaysAsksForAStream) {
  FakeOpenAi fake;
  http::HttpClient client;
  auto out = relay(fake, "ok", client);
  ASSERT_FALSE(out.outcome.error) << out.outcome.error->to_string();
  ASSERT_EQ(out.chunks.size(), 4u);
  EXPECT_NE(out.chunks[0].find("Upstream "), std::string::npos);
  EXPECT_EQ(out.outcome.usage.prompt_tokens, 7);
  EXPECT_EQ(out.outcome.usage.completion_tokens, 3);
  const auto sent = fake.last_request();
  EXPECT_EQ(sent.at("model").as_string(), "m");
  EXPECT_TRUE(sent.at("stream").as_bool());
  EXPECT_TRUE(sent.at("stream_options").at("include_usage").as_bool());
  EXPECT_EQ(sent.at("messages").as_array().size(), 1u);

  // The connection went back to the pool and is reused.
  EXPECT_EQ(client.idle_connections(), 1u);
  ASSERT_FALSE(relay(fake, "ok", client).outcome.error);
  EXPECT_EQ(fake.server->accepted_connections(), 1u);
}

TEST(UpstreamEngine, FailuresAreErrorsNeverACleanEnd) {
  FakeOpenAi fake;
  http::HttpClient client;
  for (const std::string mode : {"err", "die", "garbage", "nodone"}) {
    auto out = relay(fake, mode, client);
    ASSERT_TRUE(out.outcome.error) << mode;
    EXPECT_EQ(out.outcome.error->code, Errc::upstream_error) << mode;
    if (mode == "err") {
      EXPECT_TRUE(out.chunks.empty());
      EXPECT_NE(out.outcome.error->message.find("503"), std::string::npos);
      EXPECT_NE(out.outcome.error->message.find("still loading"), std::string::npos);
    } else {
      EXPECT_EQ(out.chunks.size(), 2u) << mode;
    }
  }
}

TEST(UpstreamEngine, SilentServerTimesOut) {
  FakeOpenAi fake;
  http::HttpClient client;
  auto out = relay(fake, "stall", client, std::chrono::milliseconds(500));
  ASSERT_TRUE(out.outcome.error);
  EXPECT_EQ(out.outcome.error->code, Errc::upstream_timeout);
  EXPECT_LE(out.chunks.size(), 2u);
}

TEST(UpstreamEngine, UnreachableServerIsAnError) {
  http::HttpClient client;
  auto spec = parse_upstream_spec("m=http://127.0.0.1:" + std::to_string(rvenc::test::free_port()) + "/v1");
  UpstreamEngine engine(UpstreamEngineOptions{"m", spec->base, std::chrono::seconds(5)},
                        std::shared_ptr<http::HttpClient>(&client, [](http::HttpClient*) {}));
  const auto request = *protocol::validate_chat_request(chat_json("m", "hi"));
  auto outcome = test::run_coroutine([&]() -> http::awaitable<EngineOutcome> {
    co_return co_await engine.generate(request, [](std::string) -> http::awaitable<bool> { co_return true; });
  });
  ASSERT_TRUE(outcome.error);
  EXPECT_EQ(outcome.error->code, Errc::upstream_error);
}

// End to end: client -> real enclave process -> fake model server.
TEST(EnclaveProcess, UpstreamModelsStreamAndFailuresBecomeEncryptedErrorEvents) {
  FakeOpenAi fake;
  rvenc::test::TempDir dir;
  rvenc::test::ChildProcess child({rvenc::test::rvenc_binary(), "enclave", "--listen", "127.0.0.1:0", "--key-file",
                                   dir.file("k"), "--platform-key", dir.file("p"), "--attestation", "simulated",
                                   "--upstream", "good=" + fake.base("ok"), "--upstream", "broken=" + fake.base("err"),
                                   "--upstream", "dying=" + fake.base("die"), "--upstream-timeout-ms", "10000"});
  const auto url = child.wait_for_url();
  ASSERT_TRUE(url) << child.output();
  // With upstreams and no --demo-model, only the upstream models are served.
  EXPECT_NE(child.output().find("model good: upstream"), std::string::npos) << child.output();
  EXPECT_EQ(child.output().find("rvenc-demo"), std::string::npos);

  const auto challenge = crypto::random_array<protocol::kChallengeBytes>();
  auto doc = protocol::parse_attestation(http::fetch("GET", *url + "/rvenc/attestation?challenge=" + to_hex(challenge))->body());
  ASSERT_TRUE(doc);

  auto chat = [&](const std::string& model) {
    auto sealed = test::seal(doc->public_key, chat_json(model, "tell me"));
    auto response = http::fetch("POST", *url + "/rvenc/chat/completions", sealed.body);
    EXPECT_TRUE(response);
    EXPECT_EQ(response->result_int(), 200u) << response->body();
    return test::open_stream(sealed, response->body());
  };

  const auto good = chat("good");
  ASSERT_FALSE(good.failure);
  EXPECT_TRUE(good.done);
  EXPECT_FALSE(good.error);
  EXPECT_EQ(good.content, "Upstream says hello.");
  ASSERT_TRUE(good.usage);
  EXPECT_EQ(good.usage->at("prompt_tokens").as_int64(), 7);
  EXPECT_EQ(good.usage->at("completion_tokens").as_int64(), 3);

  for (const std::string model : {"broken", "dying"}) {
    const auto failed = chat(model);
    ASSERT_FALSE(failed.failure) << model;
    ASSERT_TRUE(failed.error) << model;
    EXPECT_EQ(failed.error->at("error").at("code").as_string(), "upstream_error") << model;
    EXPECT_TRUE(failed.done) << model;  // the error event is followed by an authenticated done
    EXPECT_TRUE(failed.usage) << model;
  }
  EXPECT_EQ(chat("dying").content, "Upstream says ");
  EXPECT_EQ(child.stop(SIGTERM), 0);
}

}  // namespace
}  // namespace rvenc::enclave
