// Chat request validation and non-streaming completion assembly.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "rvenc/protocol/chat.hpp"
#include "rvenc/protocol/endpoint.hpp"
#include "rvenc/protocol/responses.hpp"

namespace rvenc::protocol {
namespace {

namespace json = boost::json;

json::object valid_request() {
  return json::parse(R"({"model":"openai/gpt-oss-120b","messages":[{"role":"system","content":"Be brief."},
    {"role":"user","content":"SECRET-PROMPT"}],"stream":true,"max_tokens":64})")
      .as_object();
}

Error invalid(const json::object& body, std::string_view field) {
  auto r = validate_chat_request(json::serialize(body));
  EXPECT_FALSE(r.has_value()) << json::serialize(body);
  if (r) return {};
  EXPECT_EQ(r.error().code, Errc::invalid_inference);
  EXPECT_NE(r.error().message.find(field), std::string::npos) << r.error().message;
  EXPECT_EQ(r.error().message.find("SECRET"), std::string::npos);
  return r.error();
}

TEST(ChatRequest, ValidRequests) {
  auto r = validate_chat_request(json::serialize(valid_request()));
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->model, "openai/gpt-oss-120b");
  EXPECT_TRUE(r->stream);
  EXPECT_EQ(r->max_tokens, 64);
  EXPECT_EQ(r->body.at("messages").as_array().size(), 2u);

  auto body = valid_request();
  body.erase("max_tokens");
  body["max_completion_tokens"] = 10;
  body["temperature"] = 0;
  body["top_p"] = 1.0;
  body["n"] = 1;
  body["stop"] = json::array{"a", "b"};
  body["stream"] = nullptr;
  body["tools"] = json::array{json::object{{"type", "function"}}};
  body["messages"].as_array().push_back(json::object{
      {"role", "assistant"}, {"tool_calls", json::array{json::object{{"id", "c1"}, {"type", "function"}}}}});
  body["messages"].as_array().push_back(json::object{{"role", "tool"}, {"content", "42"}, {"tool_call_id", "c1"}});
  body["messages"].as_array().push_back(
      json::object{{"role", "user"}, {"content", json::array{json::object{{"type", "text"}, {"text", "hi"}}}}});
  body["messages"].as_array().push_back(json::object{{"role", "developer"}, {"content", nullptr}});
  r = validate_chat_request(json::serialize(body));
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_FALSE(r->stream);
  EXPECT_EQ(r->max_tokens, 10);
  EXPECT_EQ(r->stop, (std::vector<std::string>{"a", "b"}));
  body["stop"] = "END";
  EXPECT_EQ(validate_chat_request(json::serialize(body)).value().stop, std::vector<std::string>{"END"});
}

TEST(ChatRequest, NotJsonOrNotObject) {
  for (std::string text : {"", "nope", "[]", "1", "{\"model\":"}) {
    auto r = validate_chat_request(text);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, Errc::invalid_inference);
  }
}

TEST(ChatRequest, EachFieldChecked) {
  const std::vector<std::tuple<std::string, json::value, std::string>> cases = {
      {"model", nullptr, "model"},          {"model", "", "model"},
      {"model", 5, "model"},                {"messages", json::array{}, "messages"},
      {"messages", "SECRET", "messages"},   {"messages", json::array{"SECRET"}, "messages[0]"},
      {"stream", "yes", "stream"},          {"max_tokens", 0, "max_tokens"},
      {"max_tokens", -5, "max_tokens"},     {"max_tokens", 1.5, "max_tokens"},
      {"max_tokens", "10", "max_tokens"},   {"max_completion_tokens", 0, "max_completion_tokens"},
      {"temperature", 2.5, "temperature"},  {"temperature", -0.1, "temperature"},
      {"temperature", "hot", "temperature"}, {"top_p", 1.01, "top_p"},
      {"top_p", -1, "top_p"},               {"n", 2, "n"},
      {"n", 0, "n"},                        {"stop", 5, "stop"},
      {"stop", json::array{1}, "stop"},
  };
  for (const auto& [name, value, field] : cases) {
    auto body = valid_request();
    body[name] = value;
    invalid(body, field);
  }
  auto missing = valid_request();
  missing.erase("model");
  invalid(missing, "model");
  missing = valid_request();
  missing.erase("messages");
  invalid(missing, "messages");
  auto stops = valid_request();
  json::array many;
  for (std::size_t i = 0; i <= kMaxStopSequences; ++i) many.push_back("s");
  stops["stop"] = many;
  invalid(stops, "stop");
  auto too_many = valid_request();
  json::array msgs;
  for (std::size_t i = 0; i <= kMaxMessages; ++i) msgs.push_back(json::object{{"role", "user"}, {"content", "x"}});
  too_many["messages"] = msgs;
  invalid(too_many, "messages");
}

TEST(ChatRequest, MessagesChecked) {
  const std::vector<std::pair<json::object, std::string>> cases = {
      {{{"role", "hacker"}, {"content", "SECRET"}}, "messages[1].role"},
      {{{"content", "SECRET"}}, "messages[1].role"},
      {{{"role", 3}, {"content", "SECRET"}}, "messages[1].role"},
      {{{"role", "user"}}, "messages[1].content"},
      {{{"role", "user"}, {"content", 7}}, "messages[1].content"},
      {{{"role", "user"}, {"tool_calls", json::array{}}}, "messages[1].content"},
      {{{"role", "assistant"}, {"content", "SECRET"}, {"tool_calls", "x"}}, "messages[1].tool_calls"},
  };
  for (const auto& [message, field] : cases) {
    auto body = valid_request();
    body["messages"].as_array()[1] = message;
    invalid(body, field);
  }
}

std::string chunk(std::string_view delta, std::string_view finish = "null", std::string_view usage = "null") {
  return std::string(R"({"id":"cmpl-1","object":"chat.completion.chunk","created":1764004858,"model":"m",)") +
         R"("system_fingerprint":"fp","choices":[{"index":0,"delta":)" + std::string(delta) +
         R"(,"logprobs":null,"finish_reason":)" + std::string(finish) + R"(}],"usage":)" + std::string(usage) + "}";
}

TEST(Assembler, ContentReasoningFinishAndUsage) {
  CompletionAssembler a;
  ASSERT_TRUE(a.add_chunk(chunk(R"({"role":"assistant","content":"","reasoning_content":"think "})")).has_value());
  ASSERT_TRUE(a.add_chunk(chunk(R"({"reasoning_content":"more","content":null})")).has_value());
  ASSERT_TRUE(a.add_chunk(chunk(R"({"content":"Hel"})")).has_value());
  ASSERT_TRUE(a.add_chunk(chunk(R"({"content":"lo"})", R"("stop")")).has_value());
  ASSERT_TRUE(a.add_chunk(chunk(R"({})", "null", R"({"prompt_tokens":12,"completion_tokens":40,"total_tokens":52})"))
                  .has_value());
  EXPECT_EQ(a.chunk_count(), 5u);
  const auto c = a.completion();
  EXPECT_EQ(c.at("id"), "cmpl-1");
  EXPECT_EQ(c.at("object"), "chat.completion");
  EXPECT_EQ(c.at("created"), 1764004858);
  EXPECT_EQ(c.at("model"), "m");
  EXPECT_EQ(c.at("system_fingerprint"), "fp");
  const auto& choice = c.at("choices").as_array().at(0).as_object();
  EXPECT_EQ(choice.at("index"), 0);
  EXPECT_EQ(choice.at("finish_reason"), "stop");
  EXPECT_TRUE(choice.at("logprobs").is_null());
  const auto& message = choice.at("message").as_object();
  EXPECT_EQ(message.at("role"), "assistant");
  EXPECT_EQ(message.at("content"), "Hello");
  EXPECT_EQ(message.at("reasoning_content"), "think more");
  EXPECT_FALSE(message.contains("tool_calls"));
  EXPECT_EQ(c.at("usage").as_object().at("total_tokens"), 52);
  ASSERT_TRUE(a.usage().has_value());
  EXPECT_EQ(a.usage()->prompt_tokens, 12);
  EXPECT_EQ(a.usage()->total_tokens(), 52);
}

TEST(Assembler, ToolCallsMergedByIndex) {
  CompletionAssembler a;
  ASSERT_TRUE(a.add_chunk(chunk(
      R"({"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"ci"}}]})")).has_value());
  ASSERT_TRUE(a.add_chunk(chunk(
      R"({"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":""}}]})")).has_value());
  ASSERT_TRUE(a.add_chunk(chunk(R"({"tool_calls":[{"index":0,"function":{"arguments":"ty\":\"Paris\"}"}},{"index":1,"function":{"arguments":"{}"}}]})")).has_value());
  ASSERT_TRUE(a.add_chunk(chunk(R"({"tool_calls":[{"index":0,"id":"ignored","function":{"name":"ignored"}}]})", R"("tool_calls")")).has_value());
  ASSERT_TRUE(a.add_chunk(chunk(R"({})", "null")).has_value());  // a later null finish_reason does not erase it
  const auto c = a.completion();
  const auto& choice = c.at("choices").as_array().at(0).as_object();
  EXPECT_EQ(choice.at("finish_reason"), "tool_calls");
  const auto& message = choice.at("message").as_object();
  EXPECT_TRUE(message.at("content").is_null());
  EXPECT_FALSE(message.contains("reasoning_content"));
  const auto& calls = message.at("tool_calls").as_array();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].at("id"), "call_a");
  EXPECT_EQ(calls[0].at("type"), "function");
  EXPECT_EQ(calls[0].at("function").at("name"), "get_weather");
  EXPECT_EQ(calls[0].at("function").at("arguments"), R"({"city":"Paris"})");
  EXPECT_EQ(calls[1].at("id"), "call_b");
  EXPECT_EQ(calls[1].at("function").at("name"), "get_time");
  EXPECT_EQ(calls[1].at("function").at("arguments"), "{}");
  EXPECT_TRUE(c.at("usage").is_null());
  EXPECT_FALSE(a.usage().has_value());
}

TEST(Assembler, MalformedChunksNeverCrash) {
  CompletionAssembler a;
  for (std::string bad : {"", "nope", "[]", "5", R"({"choices":5})"}) {
    auto r = a.add_chunk(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().code, Errc::invalid_request);
  }
  for (std::string odd : {R"({})", R"({"choices":[1,"x",null,{"delta":5},{"index":"a","delta":{"content":7}}]})",
                          R"({"choices":[{"delta":{"tool_calls":[5,{"index":"x","function":3}]}}],"usage":"x"})",
                          R"({"id":5,"created":"x","usage":{"prompt_tokens":-1}})"}) {
    EXPECT_TRUE(a.add_chunk(odd).has_value()) << odd;
  }
  const auto c = a.completion();
  EXPECT_EQ(c.at("object"), "chat.completion");
  EXPECT_FALSE(a.usage().has_value());
}

TEST(Assembler, ParseUsage) {
  EXPECT_FALSE(parse_usage(json::value(nullptr)).has_value());
  EXPECT_FALSE(parse_usage(json::parse("{}")).has_value());
  EXPECT_FALSE(parse_usage(json::parse(R"({"prompt_tokens":"1"})")).has_value());
  const auto u = parse_usage(json::parse(R"({"prompt_tokens":3,"completion_tokens":4})"));
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->total_tokens(), 7);
}

TEST(Assembler, OutOfRangeIndicesIgnored) {
  CompletionAssembler a;
  ASSERT_TRUE(a.add_chunk(R"({"choices":[{"index":-1,"delta":{"content":"x"}},{"index":1000000,"delta":{"content":"y"}},)"
                          R"({"index":0,"delta":{"content":"ok","tool_calls":[{"index":99999999,"id":"big"},)"
                          R"({"index":-3,"id":"neg"},{"index":0,"id":"c0","function":{"name":"f","arguments":"{}"}}]}}]})")
                  .has_value());
  const auto c = a.completion();
  ASSERT_EQ(c.at("choices").as_array().size(), 1u);
  const auto& message = c.at("choices").as_array()[0].at("message").as_object();
  EXPECT_EQ(message.at("content"), "ok");
  ASSERT_EQ(message.at("tool_calls").as_array().size(), 1u);
  EXPECT_EQ(message.at("tool_calls").as_array()[0].at("id"), "c0");
}

// Found by fuzz/assembler_fuzz.cpp: an engine's huge counts overflowed total_tokens() (UB).
TEST(Assembler, HugeUsageSaturates) {
  const auto u = parse_usage(json::parse(R"({"prompt_tokens":9223372036854775807,"completion_tokens":5})"));
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->total_tokens(), std::numeric_limits<std::int64_t>::max());
}

// The four readers of a JSON object from bytes (chat request, Responses request, endpoint request,
// completion chunk) share one parser (json_strict.cpp's parse_json_object): the same code and
// message for bytes that are not JSON, are not UTF-8, nest deeper than 64, or are not an object.
// Duplicate keys stay accepted (the last one wins), unlike the strict parser of wire documents.
TEST(JsonObjectReaders, RefuseWhatIsNotAJsonObjectAlike) {
  const std::string deep = std::string(65, '[') + std::string(65, ']');
  const std::string nested = std::string(62, '[') + std::string(62, ']');
  struct Reader {
    std::string what;
    Errc code;
    std::function<std::optional<Error>(std::string_view)> read;
  };
  const auto error_of = [](const auto& result) { return result ? std::nullopt : std::optional<Error>(result.error()); };
  const std::vector<Reader> readers{
      {"the chat request", Errc::invalid_inference, [&](std::string_view t) { return error_of(validate_chat_request(t)); }},
      {"the Responses request", Errc::invalid_inference,
       [&](std::string_view t) { return error_of(translate_responses_request(t)); }},
      {"the request", Errc::invalid_inference, [&](std::string_view t) { return error_of(parse_endpoint_request(t)); }},
      {"completion chunk", Errc::invalid_request, [&](std::string_view t) {
         CompletionAssembler assembler;
         return error_of(assembler.add_chunk(t));
       }}};
  for (const auto& reader : readers) {
    SCOPED_TRACE(reader.what);
    const auto expect_refused = [&](std::string_view text, const std::string& message) {
      const auto error = reader.read(text);
      ASSERT_TRUE(error.has_value()) << text;
      EXPECT_EQ(error->code, reader.code);
      EXPECT_EQ(error->message, message);
    };
    expect_refused("{\"model\":", reader.what + " is not valid JSON");
    expect_refused("\"x\xe9\"", reader.what + " is not valid UTF-8 (byte 2): JSON text must be UTF-8");
    expect_refused("[" + deep + "]", reader.what + " is not valid JSON");
    expect_refused("{\"a\":" + deep + "}", reader.what + " is not valid JSON");
    expect_refused("[]", reader.what + " must be a JSON object");
    expect_refused("42", reader.what + " must be a JSON object");
    // Nesting within the bound parses (whatever the reader then says of its fields).
    const auto within = reader.read("{\"a\":" + nested + "}");
    if (within) {
      EXPECT_EQ(within->message.find("not valid JSON"), std::string::npos) << within->message;
    }
  }
  // A duplicate key is not refused by these readers: the last value is the one read.
  auto request = validate_chat_request(R"({"model":"a","model":"b","messages":[{"role":"user","content":"hi"}]})");
  ASSERT_TRUE(request) << request.error().to_string();
  EXPECT_EQ(request->model, "b");
}

}  // namespace
}  // namespace rvenc::protocol
