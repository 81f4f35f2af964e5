// The endpoint marker inside the encrypted request (docs/endpoints.md): the enclave's dispatch to
// the completions and embeddings validators, engines and upstream paths, driven through
// http::RecordingWriter with real crypto; the upstream is FakeOpenAi serving each endpoint natively.
// Responses requests are translated for the demo engine and a chat-only upstream.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "enclave_test_support.hpp"
#include "fake_openai.hpp"
#include "rvenc/enclave/endpoints.hpp"
#include "rvenc/enclave/service.hpp"
#include "rvenc/protocol/attestation.hpp"
#include "rvenc/protocol/shaping.hpp"
#include "rvenc/protocol/sse.hpp"

namespace rvenc::enclave {
namespace {

namespace json = boost::json;
using test::error_code_of;
using test::run_coroutine;
using test::seal;

class EndpointsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    crypto::XWingSeed seed;
    crypto::random_bytes(seed.span());
    key_ = std::make_shared<EnclaveKey>(seed, 2'000'000'000);
    crypto::Ed25519Seed platform;
    crypto::random_bytes(platform.span());
    auto provider = std::shared_ptr<AttestationProvider>(std::move(*SimulatedProvider::create(platform)));
    std::map<std::string, std::shared_ptr<Engine>> engines;
    engines["rvenc-demo"] = std::make_shared<DemoEngine>(DemoEngineOptions{.embedding_dimensions = 12});
    for (const std::string mode : {"ok", "err", "bad"}) {
      auto spec = parse_upstream_spec("up-" + mode + "=" + fake_.base(mode));
      engines["up-" + mode] =
          std::make_shared<UpstreamEngine>(UpstreamEngineOptions{"up-" + mode, spec->base}, client_);
    }
    ServiceOptions options;
    options.test_models = {};
    service_ = std::make_unique<EnclaveService>(std::move(options), key_, provider, std::move(engines));
  }

  struct Answer {
    http::RecordingWriter writer;
    test::OpenedStream stream;
  };

  Answer post(const json::object& plaintext) {
    const auto sealed = seal(key_->public_key(), json::serialize(plaintext));
    http::Request request{http::Verb::post, "/rvenc/chat/completions", http::kHttp11};
    request.body() = sealed.body;
    request.prepare_payload();
    Answer answer;
    const auto router = service_->router();
    run_coroutine([&]() -> http::awaitable<void> { co_await router(request, answer.writer); });
    if (answer.writer.status() == 200) answer.stream = test::open_stream(sealed, answer.writer.body());
    return answer;
  }

  std::string refusal(const json::object& plaintext, std::string* message = nullptr) {
    auto answer = post(plaintext);
    EXPECT_EQ(answer.writer.status(), 400u) << answer.writer.body();
    if (message != nullptr) *message = std::string(json::parse(answer.writer.body()).at("error").at("message").as_string());
    return error_code_of(answer.writer.body());
  }

  using Cases = std::vector<std::pair<json::object, std::string>>;
  // Each case (members added to a demo-model request of `endpoint`, text its message must hold) is
  // refused with invalid_inference; the message never holds `never` (content) when given.
  void expect_refusals(std::string_view endpoint, const Cases& cases, std::string_view never = {}) {
    for (const auto& [extra, expected] : cases) {
      json::object body{{"rvenc_endpoint", json::string(endpoint)}, {"model", "rvenc-demo"}};
      for (const auto& [k, v] : extra) body[k] = v;
      std::string message;
      EXPECT_EQ(refusal(body, &message), "invalid_inference") << expected;
      EXPECT_NE(message.find(expected), std::string::npos) << message;
      if (!never.empty()) {
        EXPECT_EQ(message.find(never), std::string::npos) << "never echoes content: " << message;
      }
    }
  }

  test::FakeOpenAi fake_;
  std::shared_ptr<http::HttpClient> client_ = std::make_shared<http::HttpClient>();
  std::shared_ptr<EnclaveKey> key_;
  std::unique_ptr<EnclaveService> service_;
};

json::array strings(std::size_t n) {
  json::array out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(json::string("input " + std::to_string(i)));
  return out;
}

TEST_F(EndpointsTest, EmbeddingsGoToTheUpstreamEmbeddingsPathWithoutTheMarkerAsOneEvent) {
  auto answer = post({{"rvenc_endpoint", "embeddings"}, {"model", "up-ok"}, {"input", strings(3)},
                      {"encoding_format", "float"}});
  ASSERT_EQ(answer.writer.status(), 200u) << answer.writer.body();
  ASSERT_TRUE(answer.stream.done);
  ASSERT_FALSE(answer.stream.error);
  ASSERT_EQ(answer.stream.chunks.size(), 1u);  // exactly one data event: the whole list
  const auto list = json::parse(answer.stream.chunks[0]).as_object();
  EXPECT_EQ(list.at("object").as_string(), "list");
  EXPECT_EQ(list.at("data").as_array().size(), 3u);
  EXPECT_EQ(fake_.last_path(), "/ok/v1/embeddings");
  const auto sent = fake_.last_request();
  EXPECT_FALSE(sent.contains("rvenc_endpoint"));
  EXPECT_FALSE(sent.contains("stream"));
  EXPECT_EQ(sent.at("input").as_array().size(), 3u);
  EXPECT_EQ(sent.at("encoding_format").as_string(), "float");
  // The gateway's usage: the engine's prompt tokens, no completion tokens.
  ASSERT_TRUE(answer.stream.usage);
  EXPECT_EQ(answer.stream.usage->at("prompt_tokens").as_int64(), 5);
  EXPECT_EQ(answer.stream.usage->at("completion_tokens").as_int64(), 0);
}

// The data plaintexts of a stream joined as a client's shaping reader joins them.
std::vector<std::string> joined_chunks(const std::vector<std::string>& plaintexts, bool* finished = nullptr) {
  protocol::ShapedReader reader(protocol::kDefaultMaxEventBytes);
  std::vector<std::string> out;
  for (const auto& text : plaintexts) {
    EXPECT_TRUE(reader.feed({reinterpret_cast<const std::uint8_t*>(text.data()), text.size()}, out));
  }
  if (finished != nullptr) *finished = static_cast<bool>(reader.finish());
  return out;
}

TEST_F(EndpointsTest, ALargeEmbeddingsAnswerLeavesInRecordsThatJoinIntoTheList) {
  auto answer = post({{"rvenc_endpoint", "embeddings"}, {"model", "up-ok"}, {"input", strings(2000)}});
  ASSERT_EQ(answer.writer.status(), 200u) << answer.writer.body();
  ASSERT_TRUE(answer.stream.done);
  ASSERT_FALSE(answer.stream.error);
  // ~120 KiB of JSON: four records of 32 KiB - 1 bytes of plaintext, unfilled, the last shorter.
  ASSERT_EQ(answer.stream.chunks.size(), 4u);
  for (std::size_t i = 0; i < answer.stream.chunks.size(); ++i) {
    EXPECT_EQ(answer.stream.chunks[i].front(), '\x1e');
    if (i + 1 < answer.stream.chunks.size()) {
      EXPECT_EQ(answer.stream.chunks[i].size(), protocol::kAnswerRecordBytes - 1);
    }
  }
  bool finished = false;
  const auto chunks = joined_chunks(answer.stream.chunks, &finished);
  EXPECT_TRUE(finished);
  ASSERT_EQ(chunks.size(), 1u);
  const auto list = json::parse(chunks[0]).as_object();
  EXPECT_EQ(list.at("data").as_array().size(), 2000u);
  EXPECT_EQ(list.at("data").as_array()[1999].at("index").as_int64(), 1999);
  ASSERT_TRUE(answer.stream.usage);
  EXPECT_EQ(answer.stream.usage->at("prompt_tokens").as_int64(), 5);  // read on the way, for the bill
}

TEST_F(EndpointsTest, AnAnswerThatStopsBeingJsonAfterItsFirstRecordsEndsWithTheErrorAndNoChunk) {
  auto answer = post({{"rvenc_endpoint", "embeddings"}, {"model", "up-bad"}, {"input", strings(2)}});
  ASSERT_EQ(answer.writer.status(), 200u) << answer.writer.body();
  ASSERT_TRUE(answer.stream.done);
  EXPECT_GE(answer.stream.chunks.size(), 1u);  // records left before the check failed
  ASSERT_TRUE(answer.stream.error);
  EXPECT_EQ(answer.stream.error->at("error").at("code").as_string(), "upstream_error");
  EXPECT_EQ(answer.stream.error->at("error").at("message").as_string(), "the model server's answer is not a JSON object");
  bool finished = true;
  EXPECT_TRUE(joined_chunks(answer.stream.chunks, &finished).empty());  // the line never ended
  EXPECT_FALSE(finished);
}

TEST_F(EndpointsTest, CompletionsAreRelayedFromTheUpstreamCompletionsPath) {
  auto answer = post({{"rvenc_endpoint", "completions"}, {"model", "up-ok"}, {"prompt", "Once upon"},
                      {"max_tokens", 5}});
  ASSERT_EQ(answer.writer.status(), 200u) << answer.writer.body();
  ASSERT_TRUE(answer.stream.done);
  ASSERT_FALSE(answer.stream.error);
  ASSERT_EQ(answer.stream.chunks.size(), 3u);
  EXPECT_EQ(json::parse(answer.stream.chunks[0]).at("object").as_string(), "text_completion");
  EXPECT_EQ(fake_.last_path(), "/ok/v1/completions");
  const auto sent = fake_.last_request();
  EXPECT_FALSE(sent.contains("rvenc_endpoint"));
  EXPECT_EQ(sent.at("prompt").as_string(), "Once upon");
  EXPECT_TRUE(sent.at("stream").as_bool());
  EXPECT_TRUE(sent.at("stream_options").at("include_usage").as_bool());
  ASSERT_TRUE(answer.stream.usage);
  EXPECT_EQ(answer.stream.usage->at("prompt_tokens").as_int64(), 4);
  EXPECT_EQ(answer.stream.usage->at("completion_tokens").as_int64(), 2);
}

TEST_F(EndpointsTest, ChatNamedExplicitlyOrNotIsChat) {
  for (const bool named : {false, true}) {
    json::object body{{"model", "up-ok"},
                      {"messages", json::array{json::object{{"role", "user"}, {"content", "hi"}}}}};
    if (named) body["rvenc_endpoint"] = "chat.completions";
    auto answer = post(body);
    ASSERT_EQ(answer.writer.status(), 200u) << answer.writer.body();
    EXPECT_TRUE(answer.stream.done);
    EXPECT_EQ(answer.stream.content, "Upstream says hello.");
    EXPECT_FALSE(fake_.last_request().contains("rvenc_endpoint"));
  }
}

TEST_F(EndpointsTest, UpstreamEmbeddingsErrorIsASealedUpstreamError) {
  auto answer = post({{"rvenc_endpoint", "embeddings"}, {"model", "up-err"}, {"input", "x"}});
  ASSERT_EQ(answer.writer.status(), 200u);
  ASSERT_TRUE(answer.stream.error);
  EXPECT_EQ(answer.stream.error->at("error").at("code").as_string(), "upstream_error");
  EXPECT_NE(json::serialize(*answer.stream.error).find("HTTP 503"), std::string::npos);
  EXPECT_TRUE(answer.stream.done);
  EXPECT_EQ(fake_.last_path(), "/err/v1/embeddings");
}

// The responses row (docs/responses.md): validated by translation, answered with Responses events
// translated from the engine's chat chunks (demo engine, and an upstream serving chat only).
TEST_F(EndpointsTest, ResponsesAreAnsweredWithResponsesEventsFromChatEngines) {
  for (const std::string model : {"rvenc-demo", "up-ok"}) {
    auto answer = post({{"rvenc_endpoint", "responses"}, {"model", model}, {"input", "hi"}, {"max_output_tokens", 2000}});
    ASSERT_EQ(answer.writer.status(), 200u) << answer.writer.body();
    ASSERT_TRUE(answer.stream.done) << model;
    ASSERT_FALSE(answer.stream.error) << model;
    ASSERT_GE(answer.stream.chunks.size(), 3u) << model;
    EXPECT_EQ(json::parse(answer.stream.chunks.front()).at("type").as_string(), "response.created");
    const auto last = json::parse(answer.stream.chunks.back()).as_object();
    EXPECT_EQ(last.at("type").as_string(), "response.completed") << model;
    EXPECT_EQ(last.at("response").at("object").as_string(), "response");
  }
  const auto sent = fake_.last_request();
  EXPECT_FALSE(sent.contains("rvenc_endpoint"));
  EXPECT_FALSE(sent.contains("input"));
  EXPECT_EQ(sent.at("messages").as_array().size(), 1u);
  EXPECT_EQ(sent.at("max_tokens").as_int64(), 2000);
}

TEST_F(EndpointsTest, BadResponsesAreRefusedNamingTheMember) {
  const Cases cases{
      {{{"input", "x"}, {"background", true}}, "background"},
      {{{"input", "x"}, {"tools", json::array{json::object{{"type", "web_search"}}}}}, "tools"},
      {{{"input", "x"}, {"messages", json::array{}}}, "messages"},
      {{}, "input is required"},
  };
  expect_refusals("responses", cases);
}

TEST_F(EndpointsTest, UnknownOrMistypedEndpointIsInvalidInferenceNamingTheMember) {
  for (const json::value& name : {json::value("images"), json::value(7), json::value(nullptr)}) {
    std::string message;
    EXPECT_EQ(refusal({{"rvenc_endpoint", name}, {"model", "rvenc-demo"}, {"input", "x"}}, &message),
              "invalid_inference");
    EXPECT_NE(message.find("rvenc_endpoint"), std::string::npos) << message;
    EXPECT_NE(message.find("embeddings"), std::string::npos) << message;  // lists the known ones
  }
}

TEST_F(EndpointsTest, BadEmbeddingsInputsAreRefusedNamingTheMember) {
  const Cases cases{
      {{{"input", strings(protocol::kMaxEmbeddingInputs + 1)}}, "more than 2048"},
      {{{"input", 42}}, "input must be"},
      {{{"input", json::array{"a", 1}}}, "one kind per array"},
      {{{"input", ""}}, "empty string"},
      {{{"input", json::array{}}}, "empty array"},
      {{{"input", json::array{-1, 2}}}, "non-negative"},
      {{{"input", "x"}, {"encoding_format", "int8"}}, "encoding_format"},
      {{{"input", "x"}, {"dimensions", 0}}, "dimensions"},
      {{{"input", "x"}, {"dimensions", protocol::kMaxEmbeddingDimensions + 1}}, "dimensions"},
      {{{"input", "x"}, {"stream", true}}, "stream"},
      {{{"input", "x"}, {"temperature", 1}}, "temperature"},
      {{}, "input is required"},
      {{{"input", std::string(protocol::kMaxEmbeddingInputBytes + 1, 'a')}}, "longer than"},
  };
  expect_refusals("embeddings", cases, "input 0");
}

TEST_F(EndpointsTest, BadCompletionsAreRefusedNamingTheMember) {
  const Cases cases{
      {{}, "prompt is required"},
      {{{"prompt", json::object{}}}, "prompt must be"},
      {{{"prompt", strings(protocol::kMaxCompletionPrompts + 1)}}, "more than 128"},
      {{{"prompt", "x"}, {"messages", json::array{}}}, "unknown member \"messages\""},
      {{{"prompt", "x"}, {"max_tokens", 0}}, "max_tokens"},
      {{{"prompt", "x"}, {"logprobs", 6}}, "logprobs"},
      {{{"prompt", "x"}, {"echo", "yes"}}, "echo"},
      {{{"prompt", "x"}, {"n", 2}}, "n must be 1"},
  };
  expect_refusals("completions", cases);
}

TEST_F(EndpointsTest, DemoEmbeddingsAreDeterministicUnitVectorsInBothEncodings) {
  auto first = post({{"rvenc_endpoint", "embeddings"}, {"model", "rvenc-demo"}, {"input", json::array{"a", "b"}}});
  auto again = post({{"rvenc_endpoint", "embeddings"}, {"model", "rvenc-demo"}, {"input", json::array{"a"}}});
  ASSERT_EQ(first.stream.chunks.size(), 1u) << first.writer.body();
  ASSERT_EQ(again.stream.chunks.size(), 1u);
  const auto list = json::parse(first.stream.chunks[0]).as_object();
  const auto& data = list.at("data").as_array();
  ASSERT_EQ(data.size(), 2u);
  const auto& a = data[0].at("embedding").as_array();
  ASSERT_EQ(a.size(), 12u);  // --embedding-dimensions
  double norm = 0;
  for (const auto& x : a) norm += x.as_double() * x.as_double();
  EXPECT_NEAR(norm, 1.0, 1e-5);
  EXPECT_EQ(json::parse(again.stream.chunks[0]).at("data").at(0).at("embedding"), data[0].at("embedding"));
  EXPECT_NE(data[0].at("embedding"), data[1].at("embedding"));

  auto base64 = post({{"rvenc_endpoint", "embeddings"}, {"model", "rvenc-demo"}, {"input", "a"},
                      {"encoding_format", "base64"}, {"dimensions", 5}});
  ASSERT_EQ(base64.stream.chunks.size(), 1u);
  const auto encoded = json::parse(base64.stream.chunks[0]).at("data").at(0).at("embedding").as_string();
  auto bytes = protocol::base64_decode(std::string_view(encoded), "embedding");
  ASSERT_TRUE(bytes);
  EXPECT_EQ(bytes->size(), 5u * sizeof(float));
  const auto five = demo_embedding("\"a\"", 5);
  EXPECT_EQ(std::memcmp(bytes->data(), five.data(), bytes->size()), 0);
}

TEST_F(EndpointsTest, DemoCompletionsStreamTextCompletionChunksWithinMaxTokens) {
  auto answer = post({{"rvenc_endpoint", "completions"}, {"model", "rvenc-demo"},
                      {"prompt", json::array{"one", "two words"}}, {"max_tokens", 3}});
  ASSERT_EQ(answer.writer.status(), 200u) << answer.writer.body();
  ASSERT_TRUE(answer.stream.done);
  std::map<std::int64_t, std::string> text;
  std::map<std::int64_t, std::string> finish;
  for (const auto& chunk : answer.stream.chunks) {
    const auto object = json::parse(chunk).as_object();
    EXPECT_EQ(object.at("object").as_string(), "text_completion");
    for (const auto& choice : object.at("choices").as_array()) {
      const auto index = choice.at("index").as_int64();
      text[index] += choice.at("text").as_string();
      if (choice.at("finish_reason").is_string()) finish[index] = choice.at("finish_reason").as_string();
    }
  }
  ASSERT_EQ(text.size(), 2u);
  EXPECT_EQ(finish[0], "length");
  EXPECT_EQ(finish[1], "length");
  EXPECT_EQ(answer.stream.usage->at("completion_tokens").as_int64(), 6);
}

TEST(EndpointRoutes, EveryServedEndpointHasAValidatorAndAHandler) {
  for (const auto endpoint :
       {protocol::Endpoint::chat_completions, protocol::Endpoint::completions, protocol::Endpoint::embeddings}) {
    const auto* route = find_route(endpoint);
    ASSERT_NE(route, nullptr) << protocol::endpoint_name(endpoint);
    EXPECT_NE(route->validate, nullptr);
    EXPECT_TRUE(route->handle);
  }
  EXPECT_EQ(find_route(protocol::Endpoint::embeddings)->upstream.path, "/embeddings");
  EXPECT_FALSE(find_route(protocol::Endpoint::embeddings)->upstream.event_stream);
  EXPECT_EQ(find_route(protocol::Endpoint::completions)->upstream.path, "/completions");
}

}  // namespace
}  // namespace rvenc::enclave
