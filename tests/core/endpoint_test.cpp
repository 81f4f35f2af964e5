// The endpoint marker and the completions / embeddings validators (docs/endpoints.md), and the
// assembly of a non-streaming legacy completion.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "rvenc/protocol/endpoint.hpp"
#include "rvenc/protocol/text_completion.hpp"

namespace rvenc::protocol {
namespace {

namespace json = boost::json;

TEST(EndpointMarker, AbsentIsChatAndTheMemberIsRemoved) {
  auto plain = parse_endpoint_request(R"({"model":"m","messages":[]})");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->endpoint, Endpoint::chat_completions);
  for (const auto& [name, endpoint] : {std::pair{"completions", Endpoint::completions},
                                       std::pair{"embeddings", Endpoint::embeddings},
                                       std::pair{"responses", Endpoint::responses},
                                       std::pair{"chat.completions", Endpoint::chat_completions}}) {
    auto parsed = parse_endpoint_request(R"({"rvenc_endpoint":")" + std::string(name) + R"(","model":"m"})");
    ASSERT_TRUE(parsed) << name;
    EXPECT_EQ(parsed->endpoint, endpoint);
    EXPECT_FALSE(parsed->body.contains(kEndpointMember));
    EXPECT_EQ(endpoint_name(endpoint), name);
  }
}

TEST(EndpointMarker, UnknownValueIsInvalidInferenceNamingTheMember) {
  for (const std::string value : {R"("Embeddings")", R"("")", "1", "null", R"(["embeddings"])"}) {
    auto parsed = parse_endpoint_request(R"({"model":"m","rvenc_endpoint":)" + value + "}");
    ASSERT_FALSE(parsed) << value;
    EXPECT_EQ(parsed.error().code, Errc::invalid_inference);
    EXPECT_NE(parsed.error().message.find("rvenc_endpoint"), std::string::npos);
  }
  EXPECT_FALSE(parse_endpoint_request("[1]"));
  EXPECT_FALSE(parse_endpoint_request("{"));
}

Result<ChatRequest> embeddings(std::string_view text) {
  auto parsed = parse_endpoint_request(text);
  if (!parsed) return std::unexpected(parsed.error());
  return validate_embeddings_body(std::move(parsed->body), parsed->json_bytes);
}

TEST(EmbeddingsValidator, AcceptsEveryOpenAiInputShape) {
  for (const char* input : {R"("text")", R"(["a","b"])", R"([1,2,3])", R"([[1],[2,3]])"}) {
    auto request = embeddings(std::string(R"({"model":"m","encoding_format":"base64","dimensions":64,"user":"u","input":)") +
                              input + "}");
    ASSERT_TRUE(request) << input << ": " << request.error().message;
    EXPECT_EQ(request->endpoint, Endpoint::embeddings);
    EXPECT_EQ(request->model, "m");
  }
  EXPECT_EQ(embedding_input_count(json::parse(R"(["a","b"])")), 2u);
  EXPECT_EQ(embedding_input_count(json::parse(R"([1,2,3])")), 1u);
  EXPECT_EQ(embedding_input_count(json::parse(R"("a")")), 1u);
}

TEST(EmbeddingsValidator, BatchOfExactly2048IsAcceptedOneMoreIsNot) {
  json::array inputs;
  for (std::size_t i = 0; i < kMaxEmbeddingInputs; ++i) inputs.push_back("x");
  json::object body{{"model", "m"}, {"input", inputs}};
  EXPECT_TRUE(validate_embeddings_body(body, 0));
  body["input"].as_array().push_back("x");
  auto refused = validate_embeddings_body(body, 0);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("more than 2048"), std::string::npos);
}

TEST(CompletionsValidator, AcceptsOpenAiMembersAndRefusesOthers) {
  auto parsed = parse_endpoint_request(
      R"({"rvenc_endpoint":"completions","model":"m","prompt":["a","b"],"max_tokens":4,"stream":true,"stop":"\n",)"
      R"("echo":false,"logprobs":1,"best_of":1,"suffix":null,"seed":3,"presence_penalty":-1.5,"logit_bias":{},)"
      R"("stream_options":{"include_usage":true},"user":"u","temperature":0.2,"top_p":1,"n":1})");
  ASSERT_TRUE(parsed);
  auto request = validate_completions_body(parsed->body, parsed->json_bytes);
  ASSERT_TRUE(request) << request.error().message;
  EXPECT_TRUE(request->stream);
  EXPECT_EQ(request->max_tokens, 4);
  EXPECT_EQ(request->stop, std::vector<std::string>{"\n"});
  auto refused = validate_completions_body(json::object{{"model", "m"}, {"prompt", "p"}, {"tools", json::array{}}}, 0);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("\"tools\""), std::string::npos);
  EXPECT_FALSE(validate_completions_body(json::object{{"model", "m"}, {"prompt", "p"}, {"frequency_penalty", 3}}, 0));
  EXPECT_FALSE(validate_completions_body(json::object{{"model", ""}, {"prompt", "p"}}, 0));
}

TEST(TextCompletionAssembler, ConcatenatesTextPerChoiceAndKeepsFinishAndUsage) {
  TextCompletionAssembler assembler;
  for (const char* chunk : {
           R"({"id":"cmpl-1","object":"text_completion","created":5,"model":"m","choices":[{"index":0,"text":"Hel","finish_reason":null,"logprobs":{"tokens":["Hel"]}}]})",
           R"({"id":"cmpl-1","choices":[{"index":1,"text":"B","finish_reason":"stop"},{"index":0,"text":"lo","finish_reason":null,"logprobs":{"tokens":["lo"]}}]})",
           R"({"id":"cmpl-1","choices":[{"index":0,"text":"","finish_reason":"length"},{"index":999,"text":"ignored"}]})",
           R"({"id":"cmpl-1","choices":[],"usage":{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5}})"})
    assembler.add_chunk(json::parse(chunk).as_object());
  const auto completion = assembler.completion();
  EXPECT_EQ(completion.at("object").as_string(), "text_completion");
  EXPECT_EQ(completion.at("id").as_string(), "cmpl-1");
  const auto& choices = completion.at("choices").as_array();
  ASSERT_EQ(choices.size(), 2u);
  EXPECT_EQ(choices[0].at("text").as_string(), "Hello");
  EXPECT_EQ(choices[0].at("finish_reason").as_string(), "length");
  EXPECT_EQ(choices[0].at("logprobs").at("tokens").as_array().size(), 2u);
  EXPECT_EQ(choices[1].at("text").as_string(), "B");
  EXPECT_EQ(completion.at("usage").at("completion_tokens").as_int64(), 3);
  ASSERT_TRUE(assembler.usage());
  EXPECT_EQ(assembler.usage()->prompt_tokens, 2);
}

// The fields both assemblers share go through one walk (CompletionWalk): the first id, model and
// created, the last fingerprint and non-null usage, choice indices outside [0, 128) ignored, a
// choice without an index is choice 0.
TEST(CompletionWalk, ChatAndTextAssemblersReadTheSharedFieldsAlike) {
  const char* chunks[] = {
      R"({"id":"a","model":"m1","created":7,"system_fingerprint":"fp1","choices":[{"index":-1},{"index":128},"x"]})",
      R"({"id":"b","model":"m2","created":9,"system_fingerprint":"fp2","usage":{"prompt_tokens":1,"completion_tokens":2}})",
      R"({"usage":null,"choices":[{"finish_reason":"stop"}]})"};
  CompletionAssembler chat;
  TextCompletionAssembler text;
  for (const char* chunk : chunks) {
    chat.add_chunk(json::parse(chunk).as_object());
    text.add_chunk(json::parse(chunk).as_object());
  }
  const auto c = chat.completion();
  const auto t = text.completion();
  for (const auto* out : {&c, &t}) {
    EXPECT_EQ(out->at("id").as_string(), "a");
    EXPECT_EQ(out->at("model").as_string(), "m1");
    EXPECT_EQ(out->at("created").as_int64(), 7);
    EXPECT_EQ(out->at("system_fingerprint").as_string(), "fp2");
    EXPECT_EQ(out->at("usage").at("completion_tokens").as_int64(), 2);
    ASSERT_EQ(out->at("choices").as_array().size(), 1u);
    EXPECT_EQ(out->at("choices").as_array()[0].at("index").as_int64(), 0);
    EXPECT_EQ(out->at("choices").as_array()[0].at("finish_reason").as_string(), "stop");
  }
  EXPECT_EQ(c.at("object").as_string(), "chat.completion");
  EXPECT_EQ(t.at("object").as_string(), "text_completion");
  ASSERT_TRUE(chat.usage() && text.usage());
  EXPECT_EQ(chat.usage()->prompt_tokens, text.usage()->prompt_tokens);
}

}  // namespace
}  // namespace rvenc::protocol
