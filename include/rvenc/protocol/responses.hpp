// The OpenAI Responses API (`POST /v1/responses`, issue 26) on top of chat completions: a
// Responses request translated into a chat-completions request, and the chat.completion.chunk
// stream of the answer translated back into Responses streaming events (response.created ...
// response.completed), each with its sequence_number. docs/responses.md lists what is translated
// and what is refused.
//
// Design: pure functions and one small state machine on Boost.JSON only (no sockets, no clock, no
// randomness: ids and times come from the caller), in rvenc_core so that the enclave (which
// translates for engines serving only chat completions), the local proxy and the SDKs share one
// implementation and every rule is unit-tested and fuzzed alone. What has no chat equivalent
// (built-in tools, background responses, server-side conversation state, file inputs) is refused
// with invalid_inference naming the field, never silently dropped. The enclave keeps no state: a
// translated response always says "store": false; conversation state (previous_response_id) is
// expanded by the caller's proxy before the request is sealed (ResponsesStore, rvenc proxy).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "rvenc/common/error.hpp"
#include "rvenc/protocol/chat.hpp"

namespace rvenc::protocol {

// Items of `input` and tools accepted (as many as chat messages).
inline constexpr std::size_t kMaxResponsesItems = kMaxMessages;
inline constexpr std::size_t kMaxResponsesTools = 512;
inline constexpr std::size_t kMaxResponsesContentParts = 256;

struct ResponsesRequest {
  std::string model;
  bool stream = false;
  boost::json::object body;  // the Responses request as received (without rvenc_endpoint)
  boost::json::object chat;  // the chat-completions request it translates to (stream: true)
};

// Validates a Responses request and translates it. invalid_inference naming the field for wrong
// types, unknown top-level parameters, and what cannot be translated (built-in tools, background,
// conversation, prompt templates, previous_response_id, file inputs); never echoes content.
[[nodiscard]] Result<ResponsesRequest> translate_responses_request(boost::json::object body);
[[nodiscard]] Result<ResponsesRequest> translate_responses_request(std::string_view json);

// A Responses request translated, and its chat translation validated as a chat request (what an
// engine serving chat completions is given). invalid_inference as translate_responses_request or
// validate_chat_request.
struct TranslatedResponses {
  ResponsesRequest responses;
  ChatRequest chat;
};
[[nodiscard]] Result<TranslatedResponses> translate_and_validate_responses(boost::json::object body);

// The enclave's validator of the "responses" endpoint (endpoint.hpp; body without rvenc_endpoint):
// the chat translation's request (model, max_tokens, stop, json_bytes of the translation, the
// prompt estimate) whose `body` is the Responses request as received, for the handler to
// translate again (translate_and_validate_responses).
[[nodiscard]] Result<ChatRequest> validate_responses_body(boost::json::object body, std::size_t json_bytes);

// The Responses streaming events of one answer, from the chat chunks of the engine. Usage:
//   ResponsesEventWriter writer(request, "resp_<random>", now);
//   send(writer.start());  for each chunk: send(writer.add_chunk(chunk));  send(writer.finish(error));
// Output items are opened in the order the engine produces them (reasoning, message text,
// function calls) and closed (…done events) before the next one opens.
class ResponsesEventWriter {
 public:
  ResponsesEventWriter(const ResponsesRequest& request, std::string response_id, std::int64_t created_at);

  // response.created, response.in_progress.
  [[nodiscard]] std::vector<boost::json::object> start();
  // The events one chat.completion.chunk makes (none for a chunk without news).
  [[nodiscard]] std::vector<boost::json::object> add_chunk(const boost::json::object& chunk);
  // Closes the open item, then response.completed (or response.incomplete when the engine
  // stopped at max_output_tokens or a content filter); with an error: an `error` event and
  // response.failed. `usage` stands in when the engine reported none (the enclave's estimate).
  // Only the first call emits anything.
  [[nodiscard]] std::vector<boost::json::object> finish(const std::optional<Error>& error = std::nullopt,
                                                        const std::optional<Usage>& usage = std::nullopt);

  // The response object as it stands (status and output of the events sent so far).
  [[nodiscard]] boost::json::object response() const;

 private:
  struct Item;
  [[nodiscard]] boost::json::object event(std::string_view type);
  [[nodiscard]] boost::json::object item_json(const Item& item) const;
  void open_item(std::vector<boost::json::object>& out, std::string kind, std::int64_t tool_index = -1);
  void close_item(std::vector<boost::json::object>& out, std::size_t index);
  void close_open(std::vector<boost::json::object>& out);
  void add_text(std::vector<boost::json::object>& out, std::string_view kind, std::string_view delta);
  void add_tool_call(std::vector<boost::json::object>& out, const boost::json::object& call, std::int64_t position);

  struct Item {
    std::string kind;  // "message", "reasoning", "function_call"
    std::string id;
    std::string text;  // message text, reasoning text, or function arguments
    std::string call_id;
    std::string name;
    std::int64_t tool_index = -1;
    bool done = false;
  };
  boost::json::object base_;  // the response object's fixed members
  std::vector<Item> items_;
  std::optional<std::size_t> open_;
  std::string status_ = "in_progress";
  boost::json::value incomplete_details_;
  boost::json::value error_;
  boost::json::value usage_;
  std::string finish_reason_;
  std::int64_t sequence_ = 0;
  bool finished_ = false;
};

// The Responses usage object of a chat usage object (prompt_tokens -> input_tokens, ...).
[[nodiscard]] boost::json::object responses_usage(const boost::json::value& chat_usage);
// The response object of a terminal event (response.completed / .incomplete / .failed), else
// nullopt: what a non-streaming call returns.
[[nodiscard]] std::optional<boost::json::object> terminal_response(const boost::json::object& event);
// The input items a stored response adds to a conversation (its output items, without ids the
// engine never saw), for a follow-up's previous_response_id.
[[nodiscard]] boost::json::array conversation_items(const boost::json::object& response);

}  // namespace rvenc::protocol
