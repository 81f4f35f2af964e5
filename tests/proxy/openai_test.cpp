// OpenAI shaping of the proxy: request fields, error JSON and statuses, the event stream.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include "rvenc/proxy/openai.hpp"

namespace rvenc::proxy {
namespace {

namespace json = boost::json;

json::object parse_object(std::string_view text) { return json::parse(text).as_object(); }

// "data: X\n\n" -> X parsed.
json::object sse_payload(std::string_view event) {
  EXPECT_TRUE(event.starts_with("data: "));
  EXPECT_TRUE(event.ends_with("\n\n"));
  return parse_object(event.substr(6, event.size() - 8));
}

constexpr std::string_view kChunk =
    R"({"id":"c1","object":"chat.completion.chunk","created":7,"model":"demo","choices":[{"index":0,)"
    R"("delta":{"content":"Hi"},"finish_reason":null}],"usage":null})";
constexpr std::string_view kLastChunk =
    R"({"id":"c1","object":"chat.completion.chunk","created":7,"model":"demo","choices":[{"index":0,)"
    R"("delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2}})";

TEST(OpenAiShaping, ParsesTheFieldsTheProxyNeeds) {
  auto chat = parse_incoming_chat(
      R"({"model":"demo","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true}})");
  ASSERT_TRUE(chat) << chat.error().to_string();
  EXPECT_EQ(chat->model, "demo");
  EXPECT_TRUE(chat->stream);
  EXPECT_TRUE(chat->include_usage);
  EXPECT_EQ(chat->body.at("messages").as_array().size(), 1u);

  auto plain = parse_incoming_chat(R"({"model":"demo","messages":[],"stream":null})");
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain->stream);
  EXPECT_FALSE(plain->include_usage);
}

TEST(OpenAiShaping, RefusesMalformedRequestsNamingTheField) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"not json", "JSON object"},
      {"[1,2]", "JSON object"},
      {R"({"messages":[]})", "`model`"},
      {R"({"model":7,"messages":[]})", "`model`"},
      {R"({"model":"demo"})", "`messages`"},
      {R"({"model":"demo","messages":{}})", "`messages`"},
      {R"({"model":"demo","messages":[],"stream":"yes"})", "`stream`"},
      {R"({"model":"demo","messages":[],"stream_options":1})", "`stream_options`"},
      {R"({"model":"demo","messages":[],"stream_options":{"include_usage":1}})", "include_usage"},
  };
  for (const auto& [body, field] : cases) {
    auto chat = parse_incoming_chat(body);
    ASSERT_FALSE(chat) << body;
    EXPECT_EQ(chat.error().code, Errc::invalid_request);
    EXPECT_NE(chat.error().message.find(field), std::string::npos) << chat.error().message;
    EXPECT_EQ(api_error(chat.error()).status, 400u);
  }
}

TEST(OpenAiShaping, MapsErrorsToTheStatusesOfficialClientsExpect) {
  struct Case {
    Error error;
    unsigned status;
    std::string_view type;
  };
  const Case cases[] = {
      {Error{Errc::invalid_api_key, "bad key", 401}, 401, "authentication_error"},
      {Error{Errc::key_revoked, "revoked", 403}, 403, "permission_error"},
      {Error{Errc::rate_limit_exceeded, "slow down", 429}, 429, "rate_limit_error"},
      {Error{Errc::invalid_inference, "bad messages", 400}, 400, "invalid_request_error"},
      {Error{Errc::request_too_large, "too big", 413}, 413, "invalid_request_error"},
      {Error{Errc::overloaded, "busy", 503}, 503, "api_error"},
      {Error{Errc::upstream_timeout, "slow", 504}, 504, "api_error"},
      {Error{Errc::timeout, "silence"}, 504, "api_error"},
      {Error{Errc::tampered_stream, "bad tag"}, 502, "api_error"},
      {Error{Errc::truncated_stream, "cut"}, 502, "api_error"},
      {Error{Errc::transport_error, "refused"}, 502, "api_error"},
      {Error{Errc::attestation_failed, "untrusted"}, 502, "api_error"},
      {Error{Errc::upstream_error, "engine died"}, 502, "api_error"},
      // Still unknown after the SDK refetched the attestation: not the caller's fault.
      {Error{Errc::unknown_key_id, "gone", 404}, 502, "api_error"},
      {Error{Errc::internal_error, "oops", 500}, 502, "api_error"},
  };
  for (const auto& c : cases) {
    const ApiError out = api_error(c.error);
    EXPECT_EQ(out.status, c.status) << c.error.to_string();
    EXPECT_EQ(out.type, c.type) << c.error.to_string();
    EXPECT_EQ(out.code, code_name(c.error.code));
    EXPECT_EQ(out.message, c.error.message);
  }
}

TEST(OpenAiShaping, ErrorJsonHasTheOpenAiShape) {
  ApiError error = api_error(Error{Errc::rate_limit_exceeded, "slow down", 429});
  const auto body = parse_object(error_json(error));
  const auto& inner = body.at("error").as_object();
  EXPECT_EQ(inner.at("message").as_string(), "slow down");
  EXPECT_EQ(inner.at("type").as_string(), "rate_limit_error");
  EXPECT_EQ(inner.at("code").as_string(), "rate_limit_exceeded");
  EXPECT_TRUE(inner.at("param").is_null());

  const std::string event = stream_error_event(error);
  EXPECT_EQ(sse_payload(event), body);
}

TEST(OpenAiShaping, UnknownModelIsNotFoundAndTheEchoIsBounded) {
  const ApiError error = model_not_found("no-such-model");
  EXPECT_EQ(error.status, 404u);
  EXPECT_EQ(error.code, "model_not_found");
  EXPECT_NE(error.message.find("no-such-model"), std::string::npos);

  const std::string huge(10'000, 'm');
  EXPECT_LT(model_not_found(huge).message.size(), kMaxEchoedModelChars + 100);
}

TEST(StreamShaper, DropsUsageUnlessAskedFor) {
  StreamShaper shaper(false);
  auto first = shaper.chunk(kChunk);
  ASSERT_TRUE(first);
  auto chunk = sse_payload(*first);
  EXPECT_FALSE(chunk.contains("usage"));
  EXPECT_EQ(chunk.at("choices").as_array()[0].at("delta").at("content").as_string(), "Hi");
  auto last = shaper.chunk(kLastChunk);
  ASSERT_TRUE(last);
  EXPECT_FALSE(sse_payload(*last).contains("usage"));
  EXPECT_EQ(shaper.finish(), kSseDone);
}

TEST(StreamShaper, WithIncludeUsageSendsAFinalUsageChunkBeforeDone) {
  StreamShaper shaper(true);
  ASSERT_TRUE(shaper.chunk(kChunk));
  auto last = shaper.chunk(kLastChunk);
  ASSERT_TRUE(last);
  const auto last_chunk = sse_payload(*last);
  EXPECT_TRUE(last_chunk.at("usage").is_null());
  EXPECT_EQ(last_chunk.at("choices").as_array()[0].at("finish_reason").as_string(), "stop");

  const std::string tail = shaper.finish();
  ASSERT_TRUE(tail.ends_with(kSseDone));
  const auto usage_chunk = sse_payload(tail.substr(0, tail.size() - kSseDone.size()));
  EXPECT_EQ(usage_chunk.at("id").as_string(), "c1");
  EXPECT_EQ(usage_chunk.at("model").as_string(), "demo");
  EXPECT_EQ(usage_chunk.at("object").as_string(), "chat.completion.chunk");
  EXPECT_TRUE(usage_chunk.at("choices").as_array().empty());
  EXPECT_EQ(usage_chunk.at("usage").at("prompt_tokens").as_int64(), 3);
  EXPECT_EQ(usage_chunk.at("usage").at("completion_tokens").as_int64(), 2);
  EXPECT_EQ(usage_chunk.at("usage").at("total_tokens").as_int64(), 5);
}

TEST(StreamShaper, IncludeUsageWithoutReportedUsageEndsWithDoneOnly) {
  StreamShaper shaper(true);
  ASSERT_TRUE(shaper.chunk(kChunk));
  EXPECT_EQ(shaper.finish(), kSseDone);
}

TEST(StreamShaper, RefusesAChunkThatIsNotAnObject) {
  StreamShaper shaper(false);
  EXPECT_FALSE(shaper.chunk("[1]"));
  EXPECT_FALSE(shaper.chunk("{"));
}

TEST(CompletionJson, AssemblesToolCallsAndAlwaysCarriesUsage) {
  protocol::CompletionAssembler assembler;
  ASSERT_TRUE(assembler.add_chunk(
      R"({"id":"c2","object":"chat.completion.chunk","created":9,"model":"demo","choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":"}}]},"finish_reason":null}]})"));
  ASSERT_TRUE(assembler.add_chunk(
      R"({"id":"c2","object":"chat.completion.chunk","created":9,"model":"demo","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"finish_reason":"tool_calls"}]})"));
  const auto completion = parse_object(completion_json(assembler.completion()));
  EXPECT_EQ(completion.at("object").as_string(), "chat.completion");
  const auto& message = completion.at("choices").as_array()[0].at("message").as_object();
  const auto& call = message.at("tool_calls").as_array()[0].as_object();
  EXPECT_EQ(call.at("id").as_string(), "call_1");
  EXPECT_EQ(call.at("function").at("name").as_string(), "get_weather");
  EXPECT_EQ(call.at("function").at("arguments").as_string(), R"({"city":"Paris"})");
  EXPECT_EQ(completion.at("choices").as_array()[0].at("finish_reason").as_string(), "tool_calls");
  EXPECT_EQ(completion.at("usage").at("total_tokens").as_int64(), 0);

  ASSERT_TRUE(assembler.add_chunk(
      R"({"id":"c2","object":"chat.completion.chunk","created":9,"model":"demo","choices":[],"usage":{"prompt_tokens":4,"completion_tokens":6}})"));
  const auto with_usage = parse_object(completion_json(assembler.completion()));
  EXPECT_EQ(with_usage.at("usage").at("total_tokens").as_int64(), 10);
}

// Issue 26: the other endpoints (docs/endpoints.md).
TEST(OpenAiShaping, CompletionsNeedPromptEmbeddingsNeedInputAndDoNotStream) {
  using protocol::Endpoint;
  auto completions = parse_incoming_request(R"({"model":"m","prompt":"p","stream":true})", Endpoint::completions);
  ASSERT_TRUE(completions);
  EXPECT_TRUE(completions->stream);
  EXPECT_FALSE(parse_incoming_request(R"({"model":"m","messages":[]})", Endpoint::completions));
  auto embeddings = parse_incoming_request(R"({"model":"m","input":["a","b"]})", Endpoint::embeddings);
  ASSERT_TRUE(embeddings);
  EXPECT_FALSE(embeddings->stream);
  for (const char* bad : {R"({"model":"m"})", R"({"model":"m","input":null})", R"({"input":"x"})",
                          R"({"model":"m","input":"x","stream":true})"}) {
    auto refused = parse_incoming_request(bad, Endpoint::embeddings);
    ASSERT_FALSE(refused) << bad;
    EXPECT_EQ(refused.error().code, Errc::invalid_request);
    EXPECT_EQ(api_error(refused.error()).status, 400u);
  }
}

TEST(StreamShaper, TextCompletionUsageChunkKeepsItsObjectName) {
  StreamShaper shaper(true, "text_completion");
  ASSERT_TRUE(shaper.chunk(
      R"({"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":"a"}],)"
      R"("usage":{"prompt_tokens":1,"completion_tokens":1}})"));
  const std::string tail = shaper.finish();
  const auto usage_chunk = sse_payload(tail.substr(0, tail.size() - kSseDone.size()));
  EXPECT_EQ(usage_chunk.at("object").as_string(), "text_completion");
  EXPECT_EQ(usage_chunk.at("usage").at("total_tokens").as_int64(), 2);
  const auto completion = parse_object(completion_json(parse_object(R"({"id":"cmpl-1","choices":[]})"), "text_completion"));
  EXPECT_EQ(completion.at("object").as_string(), "text_completion");
  EXPECT_EQ(completion.at("usage").at("total_tokens").as_int64(), 0);
}

}  // namespace
}  // namespace rvenc::proxy
