// The Responses API translator (protocol/responses.hpp): requests from OpenAI's documented shapes
// to chat completions, and chat chunks to the documented streaming events.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "rvenc/protocol/endpoint.hpp"
#include "rvenc/protocol/responses.hpp"

namespace rvenc::protocol {
namespace {

namespace json = boost::json;

json::object parse(std::string_view text) { return json::parse(text).as_object(); }

ResponsesRequest translate_ok(std::string_view text) {
  auto request = translate_responses_request(text);
  EXPECT_TRUE(request.has_value()) << (request ? "" : request.error().message);
  return request ? std::move(*request) : ResponsesRequest{};
}

Error translate_error(std::string_view text) {
  auto request = translate_responses_request(text);
  EXPECT_FALSE(request.has_value()) << text;
  return request ? Error{} : request.error();
}

TEST(Responses, StringInputIsOneUserMessage) {
  const auto r = translate_ok(R"({"model":"m","input":"Tell me a story"})");
  EXPECT_EQ(r.model, "m");
  EXPECT_FALSE(r.stream);
  EXPECT_EQ(json::serialize(r.chat.at("messages")), R"([{"role":"user","content":"Tell me a story"}])");
  EXPECT_EQ(r.chat.at("stream"), true);
  EXPECT_EQ(r.chat.at("stream_options").at("include_usage"), true);
}

TEST(Responses, InstructionsBecomeTheFirstSystemMessage) {
  const auto r = translate_ok(R"({"model":"m","instructions":"Be brief.","input":"hi","stream":true})");
  EXPECT_TRUE(r.stream);
  const auto& messages = r.chat.at("messages").as_array();
  ASSERT_EQ(messages.size(), 2U);
  EXPECT_EQ(messages[0].at("role"), "system");
  EXPECT_EQ(messages[0].at("content"), "Be brief.");
}

TEST(Responses, MessageItemsWithTextParts) {
  const auto r = translate_ok(R"({"model":"m","input":[
    {"role":"developer","content":"Talk like a pirate."},
    {"type":"message","role":"user","content":[{"type":"input_text","text":"Are semicolons optional?"}]},
    {"type":"message","role":"assistant","id":"msg_1","status":"completed",
     "content":[{"type":"output_text","text":"Aye, ","annotations":[]},{"type":"output_text","text":"matey.","annotations":[]}]},
    {"role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_text","text":"b"}]}]})");
  EXPECT_EQ(json::serialize(r.chat.at("messages")),
            R"([{"role":"developer","content":"Talk like a pirate."},)"
            R"({"role":"user","content":"Are semicolons optional?"},)"
            R"({"role":"assistant","content":"Aye, matey."},)"
            R"({"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}])");
}

TEST(Responses, ImageUrlInputBecomesAnImageUrlPart) {
  const auto r = translate_ok(R"({"model":"m","input":[{"role":"user","content":[
    {"type":"input_text","text":"what is this?"},
    {"type":"input_image","image_url":"https://example.com/a.png","detail":"low"}]}]})");
  const auto& parts = r.chat.at("messages").at(0).at("content").as_array();
  ASSERT_EQ(parts.size(), 2U);
  EXPECT_EQ(json::serialize(parts[1]), R"({"type":"image_url","image_url":{"url":"https://example.com/a.png","detail":"low"}})");
}

TEST(Responses, FunctionCallsAndOutputsBecomeToolMessages) {
  const auto r = translate_ok(R"({"model":"m","input":[
    {"role":"user","content":"Weather in Paris and Rome?"},
    {"type":"function_call","id":"fc_1","call_id":"call_a","name":"get_weather","arguments":"{\"city\":\"Paris\"}"},
    {"type":"function_call","id":"fc_2","call_id":"call_b","name":"get_weather","arguments":"{\"city\":\"Rome\"}"},
    {"type":"function_call_output","call_id":"call_a","output":"18C"},
    {"type":"function_call_output","call_id":"call_b","output":[{"type":"input_text","text":"21C"}]},
    {"type":"reasoning","id":"rs_1","summary":[]}]})");
  const auto& messages = r.chat.at("messages").as_array();
  ASSERT_EQ(messages.size(), 4U);
  EXPECT_EQ(json::serialize(messages[1]),
            R"({"role":"assistant","content":null,"tool_calls":[)"
            R"({"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},)"
            R"({"id":"call_b","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Rome\"}"}}]})");
  EXPECT_EQ(json::serialize(messages[2]), R"({"role":"tool","tool_call_id":"call_a","content":"18C"})");
  EXPECT_EQ(json::serialize(messages[3]), R"({"role":"tool","tool_call_id":"call_b","content":"21C"})");
}

TEST(Responses, FlatFunctionToolsBecomeNestedOnes) {
  const auto r = translate_ok(R"({"model":"m","input":"hi","tools":[{"type":"function","name":"get_weather",
    "description":"Get the weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}},"strict":true}],
    "tool_choice":{"type":"function","name":"get_weather"},"parallel_tool_calls":false})");
  EXPECT_EQ(json::serialize(r.chat.at("tools")),
            R"([{"type":"function","function":{"name":"get_weather","description":"Get the weather",)"
            R"("parameters":{"type":"object","properties":{"city":{"type":"string"}}},"strict":true}}])");
  EXPECT_EQ(json::serialize(r.chat.at("tool_choice")), R"({"type":"function","function":{"name":"get_weather"}})");
  EXPECT_EQ(r.chat.at("parallel_tool_calls"), false);
  EXPECT_EQ(translate_ok(R"({"model":"m","input":"hi","tool_choice":"required"})").chat.at("tool_choice"), "required");
}

TEST(Responses, SamplingLimitsReasoningAndFormat) {
  const auto r = translate_ok(R"({"model":"m","input":"hi","max_output_tokens":64,"temperature":0.5,"top_p":0.9,
    "reasoning":{"effort":"low","summary":"auto"},"user":"u1",
    "text":{"format":{"type":"json_schema","name":"answer","schema":{"type":"object"},"strict":true}}})");
  EXPECT_EQ(r.chat.at("max_tokens"), 64);
  EXPECT_EQ(r.chat.at("temperature"), 0.5);
  EXPECT_EQ(r.chat.at("top_p"), 0.9);
  EXPECT_EQ(r.chat.at("reasoning_effort"), "low");
  EXPECT_EQ(r.chat.at("user"), "u1");
  EXPECT_EQ(json::serialize(r.chat.at("response_format")),
            R"({"type":"json_schema","json_schema":{"name":"answer","schema":{"type":"object"},"strict":true}})");
  EXPECT_FALSE(translate_ok(R"({"model":"m","input":"hi","text":{"format":{"type":"text"}}})").chat.contains(
      "response_format"));
  EXPECT_EQ(translate_ok(R"({"model":"m","input":"hi","text":{"format":{"type":"json_object"}}})")
                .chat.at("response_format")
                .at("type"),
            "json_object");
}

TEST(Responses, TheTranslatedRequestIsAValidChatRequest) {
  const auto r = translate_ok(R"({"model":"m","input":[{"role":"user","content":"x"},
    {"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c","output":"y"}],
    "max_output_tokens":5})");
  auto chat = validate_chat_request(json::serialize(r.chat));
  ASSERT_TRUE(chat.has_value()) << chat.error().message;
  EXPECT_EQ(chat->max_tokens, 5);
}

TEST(Responses, EndpointMemberIsRecognisedAndStripped) {
  auto body = parse(R"({"rvenc_endpoint":"responses","model":"m","input":"hi"})");
  auto r = translate_responses_request(std::move(body));
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->body.contains("rvenc_endpoint"));
}

// The enclave's dispatch (endpoint.hpp): the marker names the Responses validator, which keeps the
// Responses body (for the handler to translate again) and the chat translation's bounds.
TEST(Responses, EndpointMarkerRoutesToTheResponsesValidator) {
  auto parsed = parse_endpoint_request(R"({"rvenc_endpoint":"responses","model":"m","input":"hi","max_output_tokens":7})");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->endpoint, Endpoint::responses);
  auto request = validate_responses_body(std::move(parsed->body), parsed->json_bytes);
  ASSERT_TRUE(request.has_value()) << request.error().message;
  EXPECT_EQ(request->model, "m");
  EXPECT_EQ(request->max_tokens, 7);
  EXPECT_TRUE(request->body.contains("input"));
  EXPECT_FALSE(request->body.contains("messages"));
  auto again = translate_and_validate_responses(request->body);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->chat.max_tokens, 7);
  auto refused = validate_responses_body(parse(R"({"model":"m","input":"hi","background":true})"), 40);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, Errc::invalid_inference);
  EXPECT_NE(refused.error().message.find("background"), std::string::npos);
}

struct Refusal {
  const char* body;
  const char* names;
};

TEST(Responses, UntranslatableAndMistypedRequestsAreRefusedNamingTheField) {
  const Refusal cases[] = {
      {R"([1])", "JSON object"},
      {R"({"input":"hi"})", "model"},
      {R"({"model":"m"})", "input"},
      {R"({"model":"m","input":42})", "input"},
      {R"({"model":"m","input":[]})", "input"},
      {R"({"model":"m","input":["hi"]})", "input[0]"},
      {R"({"model":"m","input":[{"role":"robot","content":"x"}]})", "input[0].role"},
      {R"({"model":"m","input":[{"role":"user"}]})", "input[0].content"},
      {R"({"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_id":"f"}]}]})",
       "input[0].content[0].type"},
      {R"({"model":"m","input":[{"role":"user","content":[{"type":"input_image","file_id":"f"}]}]})",
       "input[0].content[0].file_id"},
      {R"({"model":"m","input":[{"role":"user","content":[{"type":"input_audio"}]}]})", "input[0].content[0].type"},
      {R"({"model":"m","input":[{"type":"function_call","name":"f","arguments":"{}"}]})", "input[0].call_id"},
      {R"({"model":"m","input":[{"type":"function_call_output","call_id":"c"}]})", "input[0].output"},
      {R"({"model":"m","input":[{"type":"item_reference","id":"msg_1"}]})", "item_reference"},
      {R"({"model":"m","input":[{"type":"web_search_call","id":"ws"}]})", "input[0].type"},
      {R"({"model":"m","input":"hi","tools":[{"type":"web_search"}]})", "tools[0].type \"web_search\""},
      {R"({"model":"m","input":"hi","tools":[{"type":"file_search","vector_store_ids":["v"]}]})", "tools[0].type"},
      {R"({"model":"m","input":"hi","tools":[{"type":"function"}]})", "tools[0].name"},
      {R"({"model":"m","input":"hi","tools":{"type":"function"}})", "tools must be an array"},
      {R"({"model":"m","input":"hi","tools":[{"type":"function","name":"f","parameters":"x"}]})", "tools[0].parameters"},
      {R"({"model":"m","input":"hi","tool_choice":"sometimes"})", "tool_choice"},
      {R"({"model":"m","input":"hi","tool_choice":{"type":"file_search"}})", "tool_choice.type"},
      {R"({"model":"m","input":"hi","background":true})", "background"},
      {R"({"model":"m","input":"hi","conversation":"conv_1"})", "conversation"},
      {R"({"model":"m","input":"hi","prompt":{"id":"p"}})", "prompt"},
      {R"({"model":"m","input":"hi","previous_response_id":"resp_1"})", "previous_response_id"},
      {R"({"model":"m","input":"hi","max_output_tokens":0})", "max_output_tokens"},
      {R"({"model":"m","input":"hi","max_output_tokens":"5"})", "max_output_tokens"},
      {R"({"model":"m","input":"hi","temperature":"hot"})", "temperature"},
      {R"({"model":"m","input":"hi","stream":"yes"})", "stream"},
      {R"({"model":"m","input":"hi","text":{"format":{"type":"json_schema","name":"x"}}})", "text.format.schema"},
      {R"({"model":"m","input":"hi","text":{"format":{"type":"xml"}}})", "text.format.type"},
      {R"({"model":"m","input":"hi","reasoning":"high"})", "reasoning"},
      {R"({"model":"m","input":"hi","top_logprobs":3})", "top_logprobs"},
      {R"({"model":"m","input":"hi","frobnicate":1})", "Unknown parameter \"frobnicate\""},
      {R"({"model":"m","input":"hi","messages":[]})", "Unknown parameter \"messages\""},
      {R"({"model":"m","input":"hi","store":"yes"})", "store"},
  };
  for (const auto& c : cases) {
    const Error e = translate_error(c.body);
    EXPECT_EQ(e.code, Errc::invalid_inference) << c.body;
    EXPECT_NE(e.message.find(c.names), std::string::npos) << c.body << " -> " << e.message;
  }
}

TEST(Responses, RefusalsNeverEchoContent) {
  const Error e = translate_error(R"({"model":"m","input":[{"role":"user","content":[{"type":"secret_part_xyz"}]}]})");
  // The type is a short plain name, so it is quoted; message text never is.
  const Error e2 = translate_error(R"({"model":"m","input":[{"role":"robot","content":"TOP SECRET PROMPT"}]})");
  EXPECT_EQ(e2.message.find("TOP SECRET"), std::string::npos);
  EXPECT_NE(e.message.find("input[0].content[0].type"), std::string::npos);
}

// --- Events ----------------------------------------------------------------------------------

std::string chunk(std::string_view delta, std::string_view finish = "null", std::string_view usage = "null") {
  return std::string(R"({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":)") +
         std::string(delta) + R"(,"finish_reason":)" + std::string(finish) + R"(}],"usage":)" + std::string(usage) + "}";
}

struct Collected {
  std::vector<json::object> events;
  void add(std::vector<json::object> more) {
    for (auto& e : more) events.push_back(std::move(e));
  }
  std::vector<std::string> types() const {
    std::vector<std::string> out;
    for (const auto& e : events) out.emplace_back(e.at("type").as_string().c_str());
    return out;
  }
};

TEST(ResponsesEvents, TextStreamHasTheDocumentedEventSequence) {
  const auto request = translate_ok(R"({"model":"m","input":"hi","instructions":"be nice","metadata":{"k":"v"}})");
  ResponsesEventWriter writer(request, "resp_abc", 1700000000);
  Collected c;
  c.add(writer.start());
  c.add(writer.add_chunk(parse(chunk(R"({"role":"assistant","content":""})"))));
  c.add(writer.add_chunk(parse(chunk(R"({"content":"Hello"})"))));
  c.add(writer.add_chunk(parse(chunk(R"({"content":" world"})", R"("stop")"))));
  c.add(writer.add_chunk(parse(R"({"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,
     "prompt_tokens_details":{"cached_tokens":3}}})")));
  c.add(writer.finish());
  const std::vector<std::string> expected{
      "response.created",          "response.in_progress",   "response.output_item.added",
      "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
      "response.output_text.done", "response.content_part.done", "response.output_item.done",
      "response.completed"};
  EXPECT_EQ(c.types(), expected);
  for (std::size_t i = 0; i < c.events.size(); ++i) EXPECT_EQ(c.events[i].at("sequence_number"), i);

  const auto& created = c.events[0].at("response").as_object();
  EXPECT_EQ(created.at("id"), "resp_abc");
  EXPECT_EQ(created.at("object"), "response");
  EXPECT_EQ(created.at("status"), "in_progress");
  EXPECT_EQ(created.at("created_at"), 1700000000);
  EXPECT_EQ(created.at("instructions"), "be nice");
  EXPECT_EQ(created.at("store"), false);
  EXPECT_TRUE(created.at("output").as_array().empty());

  const auto& added = c.events[2];
  EXPECT_EQ(added.at("output_index"), 0);
  EXPECT_EQ(json::serialize(added.at("item")),
            R"({"type":"message","id":"msg_abc_0","status":"in_progress","role":"assistant","content":[]})");
  EXPECT_EQ(json::serialize(c.events[3].at("part")), R"({"type":"output_text","text":"","annotations":[]})");
  EXPECT_EQ(c.events[4].at("item_id"), "msg_abc_0");
  EXPECT_EQ(c.events[4].at("content_index"), 0);
  EXPECT_EQ(c.events[4].at("delta"), "Hello");
  EXPECT_EQ(c.events[6].at("text"), "Hello world");

  const auto done = terminal_response(c.events.back());
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->at("status"), "completed");
  EXPECT_EQ(json::serialize(done->at("metadata")), R"({"k":"v"})");
  EXPECT_EQ(json::serialize(done->at("output")),
            R"([{"type":"message","id":"msg_abc_0","status":"completed","role":"assistant",)"
            R"("content":[{"type":"output_text","text":"Hello world","annotations":[]}]}])");
  EXPECT_EQ(json::serialize(done->at("usage")),
            R"({"input_tokens":7,"input_tokens_details":{"cached_tokens":3},"output_tokens":2,)"
            R"("output_tokens_details":{"reasoning_tokens":0},"total_tokens":9})");
}

TEST(ResponsesEvents, FunctionCallStream) {
  const auto request = translate_ok(R"({"model":"m","input":"weather?","tools":[{"type":"function","name":"get_weather"}]})");
  ResponsesEventWriter writer(request, "resp_x", 1);
  Collected c;
  c.add(writer.start());
  c.add(writer.add_chunk(parse(chunk(
      R"({"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]})"))));
  c.add(writer.add_chunk(parse(chunk(R"({"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]})"))));
  c.add(writer.add_chunk(parse(chunk(R"({"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]})"))));
  c.add(writer.add_chunk(parse(chunk(
      R"({"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"get_time","arguments":"{}"}}]})",
      R"("tool_calls")"))));
  c.add(writer.finish(std::nullopt, Usage{10, 4}));
  const std::vector<std::string> expected{
      "response.created", "response.in_progress", "response.output_item.added",
      "response.function_call_arguments.delta", "response.function_call_arguments.delta",
      "response.function_call_arguments.done", "response.output_item.done", "response.output_item.added",
      "response.function_call_arguments.delta", "response.function_call_arguments.done",
      "response.output_item.done", "response.completed"};
  EXPECT_EQ(c.types(), expected);
  EXPECT_EQ(json::serialize(c.events[2].at("item")),
            R"({"type":"function_call","id":"fc_x_0","call_id":"call_1","name":"get_weather","arguments":"","status":"in_progress"})");
  EXPECT_EQ(c.events[5].at("arguments"), R"({"city":"Paris"})");
  EXPECT_EQ(c.events[5].at("name"), "get_weather");
  const auto done = terminal_response(c.events.back());
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->at("output").as_array().size(), 2U);
  EXPECT_EQ(done->at("output").at(1).at("call_id"), "call_2");
  EXPECT_EQ(done->at("usage").at("input_tokens"), 10);
  EXPECT_EQ(done->at("usage").at("output_tokens"), 4);
  EXPECT_EQ(done->at("usage").at("total_tokens"), 14);
  // The follow-up conversation: the calls as input items, which translate back to tool calls.
  const auto items = conversation_items(*done);
  EXPECT_EQ(json::serialize(items[0]),
            R"({"type":"function_call","call_id":"call_1","name":"get_weather","arguments":"{\"city\":\"Paris\"}"})");
}

TEST(ResponsesEvents, ReasoningThenTextAreTwoItems) {
  const auto request = translate_ok(R"({"model":"m","input":"hi","reasoning":{"effort":"high"}})");
  ResponsesEventWriter writer(request, "resp_r", 1);
  Collected c;
  c.add(writer.start());
  c.add(writer.add_chunk(parse(chunk(R"({"reasoning_content":"think"})"))));
  c.add(writer.add_chunk(parse(chunk(R"({"content":"answer"})", R"("stop")"))));
  c.add(writer.finish());
  const std::vector<std::string> expected{
      "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
      "response.reasoning_text.delta", "response.reasoning_text.done", "response.content_part.done",
      "response.output_item.done", "response.output_item.added", "response.content_part.added",
      "response.output_text.delta", "response.output_text.done", "response.content_part.done",
      "response.output_item.done", "response.completed"};
  EXPECT_EQ(c.types(), expected);
  const auto done = terminal_response(c.events.back());
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(json::serialize(done->at("output").at(0)),
            R"({"type":"reasoning","id":"rs_r_0","summary":[],"content":[{"type":"reasoning_text","text":"think"}]})");
  EXPECT_EQ(done->at("reasoning").at("effort"), "high");
  // Reasoning is not sent back to an engine as input.
  EXPECT_EQ(conversation_items(*done).size(), 1U);
}

TEST(ResponsesEvents, LengthIsIncompleteAndErrorsFail) {
  const auto request = translate_ok(R"({"model":"m","input":"hi","max_output_tokens":1})");
  ResponsesEventWriter writer(request, "resp_l", 1);
  (void)writer.start();
  (void)writer.add_chunk(parse(chunk(R"({"content":"a"})", R"("length")")));
  auto last = writer.finish();
  EXPECT_EQ(last.back().at("type"), "response.incomplete");
  EXPECT_EQ(json::serialize(terminal_response(last.back())->at("incomplete_details")), R"({"reason":"max_output_tokens"})");
  EXPECT_TRUE(writer.finish().empty());  // once only
  EXPECT_TRUE(writer.add_chunk(parse(chunk(R"({"content":"late"})"))).empty());

  ResponsesEventWriter failing(request, "resp_f", 1);
  (void)failing.start();
  (void)failing.add_chunk(parse(chunk(R"({"content":"partial"})")));
  auto events = failing.finish(Error{Errc::upstream_error, "the engine broke"});
  ASSERT_GE(events.size(), 2U);
  const auto& error = events[events.size() - 2];
  EXPECT_EQ(error.at("type"), "error");
  EXPECT_EQ(error.at("code"), "upstream_error");
  EXPECT_EQ(error.at("message"), "the engine broke");
  const auto failed = terminal_response(events.back());
  ASSERT_TRUE(failed.has_value());
  EXPECT_EQ(events.back().at("type"), "response.failed");
  EXPECT_EQ(failed->at("status"), "failed");
  EXPECT_EQ(failed->at("error").at("code"), "upstream_error");
  EXPECT_EQ(failed->at("output").at(0).at("content").at(0).at("text"), "partial");
}

TEST(ResponsesEvents, MalformedChunksAreIgnoredNotFatal) {
  const auto request = translate_ok(R"({"model":"m","input":"hi"})");
  ResponsesEventWriter writer(request, "resp_m", 1);
  (void)writer.start();
  for (const char* bad : {R"({})", R"({"choices":5})", R"({"choices":[1,null,{"delta":7}]})",
                          R"({"choices":[{"index":1,"delta":{"content":"other choice"}}]})",
                          R"({"choices":[{"delta":{"tool_calls":[{"index":-1},{"index":99999},3]}}]})",
                          R"({"usage":{"prompt_tokens":-5}})"}) {
    EXPECT_TRUE(writer.add_chunk(parse(bad)).empty()) << bad;
  }
  auto done = writer.finish();
  EXPECT_EQ(done.size(), 1U);
  EXPECT_TRUE(terminal_response(done.back())->at("output").as_array().empty());
  EXPECT_FALSE(terminal_response(parse(R"({"type":"response.output_text.delta"})")).has_value());
  EXPECT_FALSE(terminal_response(parse(R"({"type":"response.completed","response":"x"})")).has_value());
}

}  // namespace
}  // namespace rvenc::protocol
