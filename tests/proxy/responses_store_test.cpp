// The proxy's local Responses state (proxy/responses_store.hpp): bounded, per key, and the
// expansion of previous_response_id into the input sent.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "rvenc/proxy/responses_store.hpp"

namespace rvenc::proxy {
namespace {

namespace json = boost::json;

json::object response(std::string_view id, std::string_view text) {
  return json::object{{"id", id},
                      {"object", "response"},
                      {"status", "completed"},
                      {"output", json::array{json::object{
                                     {"type", "message"},
                                     {"role", "assistant"},
                                     {"content", json::array{json::object{{"type", "output_text"}, {"text", text}}}}}}}};
}

json::array user(std::string_view text) { return json::array{json::object{{"role", "user"}, {"content", text}}}; }

TEST(ResponsesStore, KeepsPerKeyAndDropsTheOldestAtTheCap) {
  ResponsesStore store({.max_entries = 2, .max_bytes = 1 << 20});
  const auto alice = ResponsesStore::owner_of("sk_test_alice");
  const auto bob = ResponsesStore::owner_of("sk_test_bob");
  EXPECT_TRUE(store.put(alice, user("a"), response("resp_1", "one")));
  EXPECT_NE(store.find(alice, "resp_1"), nullptr);
  EXPECT_EQ(store.find(bob, "resp_1"), nullptr);  // another key's
  EXPECT_TRUE(store.put(alice, user("b"), response("resp_2", "two")));
  EXPECT_TRUE(store.put(alice, user("c"), response("resp_3", "three")));
  EXPECT_EQ(store.size(), 2U);
  EXPECT_EQ(store.find(alice, "resp_1"), nullptr);
  EXPECT_TRUE(store.erase(alice, "resp_2"));
  EXPECT_FALSE(store.erase(alice, "resp_2"));
  EXPECT_EQ(store.size(), 1U);
}

TEST(ResponsesStore, ByteCapBoundsMemory) {
  ResponsesStore store({.max_entries = 100, .max_bytes = 400});
  const auto owner = ResponsesStore::owner_of("k");
  EXPECT_FALSE(store.put(owner, user(std::string(1000, 'x')), response("resp_big", "y")));
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(store.put(owner, user("hi"), response("resp_" + std::to_string(i), "ok")));
  EXPECT_LE(store.bytes(), 400U);
  EXPECT_LT(store.size(), 10U);
  EXPECT_NE(store.find(owner, "resp_9"), nullptr);
  ResponsesStore none({.max_entries = 0});
  EXPECT_FALSE(none.put(owner, user("a"), response("resp_1", "b")));
}

TEST(ResponsesStore, PreviousResponseIdIsExpandedAndNeverSent) {
  ResponsesStore store;
  const auto owner = ResponsesStore::owner_of("k");
  ASSERT_TRUE(store.put(owner, user("first question"), response("resp_1", "first answer")));
  auto prepared = prepare_responses_request(
      R"({"model":"m","previous_response_id":"resp_1","input":"second question","stream":true})", store, owner);
  ASSERT_TRUE(prepared.has_value()) << prepared.error().message;
  EXPECT_TRUE(prepared->stream);
  EXPECT_TRUE(prepared->store);
  EXPECT_FALSE(prepared->body.contains("previous_response_id"));
  EXPECT_EQ(prepared->body.at("store"), false);
  EXPECT_EQ(json::serialize(prepared->body.at("input")),
            R"([{"role":"user","content":"first question"},)"
            R"({"type":"message","role":"assistant","content":[{"type":"output_text","text":"first answer"}]},)"
            R"({"role":"user","content":"second question"}])");
  json::object answer = response("resp_2", "x");
  restore_request_fields(answer, *prepared);
  EXPECT_EQ(answer.at("previous_response_id"), "resp_1");
  EXPECT_EQ(answer.at("store"), true);
}

TEST(ResponsesStore, BadRequestsAreRefusedBeforeSealing) {
  ResponsesStore store;
  const auto owner = ResponsesStore::owner_of("k");
  struct Case {
    const char* body;
    Errc code;
    const char* names;
  };
  const Case cases[] = {
      {"not json", Errc::invalid_request, "JSON object"},
      {R"({"model":"m","input":"x","previous_response_id":"resp_nope"})", Errc::invalid_request, "previous_response_id"},
      {R"({"model":"m","input":"x","previous_response_id":7})", Errc::invalid_inference, "previous_response_id"},
      {R"({"model":"m","input":"x","store":"yes"})", Errc::invalid_inference, "store"},
      {R"({"model":"m","input":"x","rvenc_endpoint":"responses"})", Errc::invalid_inference, "rvenc_endpoint"},
      {R"({"model":"m","input":"x","tools":[{"type":"code_interpreter"}]})", Errc::invalid_inference, "tools[0].type"},
      {R"({"model":"m","input":{}})", Errc::invalid_inference, "input"},
  };
  for (const auto& c : cases) {
    auto prepared = prepare_responses_request(c.body, store, owner);
    ASSERT_FALSE(prepared.has_value()) << c.body;
    EXPECT_EQ(prepared.error().code, c.code) << c.body;
    EXPECT_NE(prepared.error().message.find(c.names), std::string::npos) << prepared.error().message;
  }
  // Another key's response is not found either.
  ASSERT_TRUE(store.put(ResponsesStore::owner_of("other"), user("a"), response("resp_o", "b")));
  EXPECT_FALSE(prepare_responses_request(R"({"model":"m","input":"x","previous_response_id":"resp_o"})", store, owner));
}

}  // namespace
}  // namespace rvenc::proxy
