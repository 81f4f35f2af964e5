// Responses request -> chat-completions request (responses.hpp, docs/responses.md).
#include <algorithm>
#include <array>

#include <boost/json/serialize.hpp>

#include "json_strict.hpp"
#include "request_fields.hpp"
#include "rvenc/protocol/endpoint.hpp"
#include "rvenc/protocol/responses.hpp"

namespace rvenc::protocol {

namespace {

namespace json = boost::json;

constexpr std::size_t kMaxResponsesJsonDepth = 64;

// Top-level members of a Responses request (OpenAI's API reference); anything else is refused
// as OpenAI does ("Unknown parameter").
constexpr std::array<std::string_view, 26> kKnownMembers{
    "model",        "input",       "instructions",       "tools",           "tool_choice",     "max_output_tokens",
    "temperature",  "top_p",       "text",               "reasoning",       "stream",          "store",
    "metadata",     "user",        "parallel_tool_calls", "truncation",     "include",         "background",
    "service_tier", "conversation", "prompt",            "previous_response_id", "top_logprobs", "max_tool_calls",
    "prompt_cache_key", "safety_identifier"};
// Accepted and without effect on a chat engine.
constexpr std::array<std::string_view, 2> kIgnoredMembers{"stream_options", "prompt_cache_retention"};

using detail::invalid;
using detail::optional_field;

std::string_view view(const json::string& s) { return {s.data(), s.size()}; }

std::string at(std::string_view base, std::size_t i) { return std::string(base) + "[" + std::to_string(i) + "]"; }

// A string member (required or optional); nullptr when absent and optional.
Result<const json::string*> string_member(const json::object& obj, std::string_view name, const std::string& where,
                                          bool required) {
  const auto* v = optional_field(obj, name);
  if (v == nullptr) {
    if (required) return invalid(where + "." + std::string(name) + " is required (a string)");
    return nullptr;
  }
  if (!v->is_string()) return invalid(where + "." + std::string(name) + " must be a string");
  return &v->get_string();
}

// One content part of an input message -> a chat content part.
Result<json::object> translate_part(const json::value& value, const std::string& where, bool assistant) {
  if (!value.is_object()) return invalid(where + " must be an object");
  const auto& part = value.get_object();
  auto type = string_member(part, "type", where, true);
  if (!type) return std::unexpected(type.error());
  const std::string_view kind = view(**type);
  if (kind == "input_text" || kind == "output_text" || kind == "text" || kind == "refusal") {
    const std::string_view member = kind == "refusal" ? "refusal" : "text";
    auto text = string_member(part, member, where, true);
    if (!text) return std::unexpected(text.error());
    return json::object{{"type", "text"}, {"text", **text}};
  }
  if (kind == "input_image" && !assistant) {
    if (optional_field(part, "file_id") != nullptr)
      return invalid(where + ".file_id: uploaded files are not available to the enclave; send image_url");
    auto url = string_member(part, "image_url", where, true);
    if (!url) return std::unexpected(url.error());
    json::object image{{"url", **url}};
    if (const auto* detail = optional_field(part, "detail")) {
      if (!detail->is_string()) return invalid(where + ".detail must be a string");
      image["detail"] = *detail;
    }
    return json::object{{"type", "image_url"}, {"image_url", std::move(image)}};
  }
  return invalid(where + ".type" + detail::quoted_field_name(kind) +
                 " cannot be translated for a chat engine (text and image_url inputs are supported)");
}

// `content` of a message item: a string, or parts (one text part becomes a plain string).
Result<json::value> translate_content(const json::value& content, const std::string& where, bool assistant) {
  if (content.is_string()) return content;
  if (!content.is_array()) return invalid(where + " must be a string or an array of content parts");
  const auto& parts = content.get_array();
  if (parts.size() > kMaxResponsesContentParts)
    return invalid(where + " has more than " + std::to_string(kMaxResponsesContentParts) + " parts");
  json::array out;
  bool text_only = true;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    auto part = translate_part(parts[i], at(where, i), assistant);
    if (!part) return std::unexpected(part.error());
    text_only = text_only && part->at("type") == "text";
    out.push_back(std::move(*part));
  }
  // Assistant turns are text for every engine: the parts joined.
  if (text_only && (assistant || out.size() == 1)) {
    std::string text;
    for (const auto& p : out) text += view(p.at("text").get_string());
    return json::value(std::move(text));
  }
  return json::value(std::move(out));
}

// The chat message list being built: consecutive function_call items share one assistant message.
struct Messages {
  json::array list;
  bool last_is_tool_call_message = false;

  void push(json::object message) {
    list.push_back(std::move(message));
    last_is_tool_call_message = false;
  }
};

Status translate_message_item(const json::object& item, const std::string& where, Messages& out) {
  auto role = string_member(item, "role", where, true);
  if (!role) return std::unexpected(role.error());
  const std::string_view name = view(**role);
  if (name != "user" && name != "system" && name != "developer" && name != "assistant")
    return invalid(where + ".role must be one of user, system, developer, assistant");
  const auto* content = item.if_contains("content");
  if (content == nullptr) return invalid(where + ".content is required");
  auto translated = translate_content(*content, where + ".content", name == "assistant");
  if (!translated) return std::unexpected(translated.error());
  out.push(json::object{{"role", **role}, {"content", std::move(*translated)}});
  return {};
}

Status translate_function_call(const json::object& item, const std::string& where, Messages& out) {
  auto call_id = string_member(item, "call_id", where, true);
  if (!call_id) return std::unexpected(call_id.error());
  auto name = string_member(item, "name", where, true);
  if (!name) return std::unexpected(name.error());
  auto arguments = string_member(item, "arguments", where, true);
  if (!arguments) return std::unexpected(arguments.error());
  json::object call{{"id", **call_id},
                    {"type", "function"},
                    {"function", json::object{{"name", **name}, {"arguments", **arguments}}}};
  if (!out.last_is_tool_call_message) {
    out.push(json::object{{"role", "assistant"}, {"content", nullptr}, {"tool_calls", json::array{}}});
    out.last_is_tool_call_message = true;
  }
  out.list.back().as_object()["tool_calls"].as_array().push_back(std::move(call));
  return {};
}

Status translate_function_output(const json::object& item, const std::string& where, Messages& out) {
  auto call_id = string_member(item, "call_id", where, true);
  if (!call_id) return std::unexpected(call_id.error());
  const auto* output = item.if_contains("output");
  if (output == nullptr) return invalid(where + ".output is required");
  auto content = translate_content(*output, where + ".output", true);
  if (!content) return std::unexpected(content.error());
  out.push(json::object{{"role", "tool"}, {"tool_call_id", **call_id}, {"content", std::move(*content)}});
  return {};
}

Status translate_input(const json::value& input, Messages& out) {
  if (input.is_string()) {
    out.push(json::object{{"role", "user"}, {"content", input}});
    return {};
  }
  if (!input.is_array()) return invalid("input must be a string or an array of input items");
  const auto& items = input.get_array();
  if (items.size() > kMaxResponsesItems)
    return invalid("input has more than " + std::to_string(kMaxResponsesItems) + " items");
  for (std::size_t i = 0; i < items.size(); ++i) {
    const std::string where = at("input", i);
    if (!items[i].is_object()) return invalid(where + " must be an object");
    const auto& item = items[i].get_object();
    std::string_view type = "message";
    if (const auto* t = optional_field(item, "type")) {
      if (!t->is_string()) return invalid(where + ".type must be a string");
      type = view(t->get_string());
    }
    Status ok;
    if (type == "message") {
      ok = translate_message_item(item, where, out);
    } else if (type == "function_call") {
      ok = translate_function_call(item, where, out);
    } else if (type == "function_call_output") {
      ok = translate_function_output(item, where, out);
    } else if (type == "reasoning") {
      continue;  // earlier reasoning: chat engines take none as input
    } else if (type == "item_reference") {
      return invalid(where + ": item_reference needs server-side state; send the item itself");
    } else {
      return invalid(where + ".type" + detail::quoted_field_name(type) +
                     " cannot be translated (message, function_call, function_call_output and reasoning items are "
                     "supported)");
    }
    if (!ok) return ok;
  }
  if (out.list.empty()) return invalid("input has no message to answer");
  return {};
}

Result<json::array> translate_tools(const json::value& value) {
  if (!value.is_array()) return invalid("tools must be an array");
  const auto& tools = value.get_array();
  if (tools.size() > kMaxResponsesTools)
    return invalid("tools has more than " + std::to_string(kMaxResponsesTools) + " entries");
  json::array out;
  for (std::size_t i = 0; i < tools.size(); ++i) {
    const std::string where = at("tools", i);
    if (!tools[i].is_object()) return invalid(where + " must be an object");
    const auto& tool = tools[i].get_object();
    auto type = string_member(tool, "type", where, true);
    if (!type) return std::unexpected(type.error());
    if (view(**type) != "function")
      return invalid(where + ".type" + detail::quoted_field_name(view(**type)) +
                     ": built-in and hosted tools cannot run in the enclave; only function tools are supported");
    auto name = string_member(tool, "name", where, true);
    if (!name) return std::unexpected(name.error());
    json::object function{{"name", **name}};
    auto description = string_member(tool, "description", where, false);
    if (!description) return std::unexpected(description.error());
    if (*description != nullptr) function["description"] = **description;
    if (const auto* parameters = optional_field(tool, "parameters")) {
      if (!parameters->is_object()) return invalid(where + ".parameters must be an object (a JSON schema)");
      function["parameters"] = *parameters;
    }
    if (const auto* strict = optional_field(tool, "strict")) {
      if (!strict->is_bool()) return invalid(where + ".strict must be a boolean");
      function["strict"] = *strict;
    }
    out.push_back(json::object{{"type", "function"}, {"function", std::move(function)}});
  }
  return out;
}

Result<json::value> translate_tool_choice(const json::value& value) {
  if (value.is_string()) {
    const auto choice = view(value.get_string());
    if (choice == "none" || choice == "auto" || choice == "required") return value;
    return invalid("tool_choice must be none, auto, required or {\"type\":\"function\",\"name\":...}");
  }
  if (!value.is_object()) return invalid("tool_choice must be a string or an object");
  const auto& obj = value.get_object();
  auto type = string_member(obj, "type", "tool_choice", true);
  if (!type) return std::unexpected(type.error());
  if (view(**type) != "function")
    return invalid("tool_choice.type" + detail::quoted_field_name(view(**type)) +
                   ": only function tools can be chosen in the enclave");
  auto name = string_member(obj, "name", "tool_choice", true);
  if (!name) return std::unexpected(name.error());
  return json::value(json::object{{"type", "function"}, {"function", json::object{{"name", **name}}}});
}

// text.format -> response_format (none for plain text).
Result<std::optional<json::object>> translate_text(const json::value& value) {
  if (!value.is_object()) return invalid("text must be an object");
  const auto* format_value = optional_field(value.get_object(), "format");
  if (format_value == nullptr) return std::nullopt;
  if (!format_value->is_object()) return invalid("text.format must be an object");
  const auto& format = format_value->get_object();
  auto type = string_member(format, "type", "text.format", true);
  if (!type) return std::unexpected(type.error());
  const auto kind = view(**type);
  if (kind == "text") return std::nullopt;
  if (kind == "json_object") return json::object{{"type", "json_object"}};
  if (kind != "json_schema") return invalid("text.format.type must be text, json_object or json_schema");
  auto name = string_member(format, "name", "text.format", true);
  if (!name) return std::unexpected(name.error());
  const auto* schema = optional_field(format, "schema");
  if (schema == nullptr || !schema->is_object()) return invalid("text.format.schema must be an object (a JSON schema)");
  json::object out{{"name", **name}, {"schema", *schema}};
  if (const auto* strict = optional_field(format, "strict")) {
    if (!strict->is_bool()) return invalid("text.format.strict must be a boolean");
    out["strict"] = *strict;
  }
  auto description = string_member(format, "description", "text.format", false);
  if (!description) return std::unexpected(description.error());
  if (*description != nullptr) out["description"] = **description;
  return json::object{{"type", "json_schema"}, {"json_schema", std::move(out)}};
}

// Members with no chat equivalent: refused when set to anything but their neutral value.
Status refuse_untranslatable(const json::object& body) {
  if (const auto* v = optional_field(body, "background")) {
    if (!v->is_bool()) return invalid("background must be a boolean");
    if (v->get_bool()) return invalid("background: background responses need server-side state; not supported");
  }
  for (std::string_view name : {"conversation", "prompt"})
    if (optional_field(body, name) != nullptr)
      return invalid(std::string(name) + ": server-side " + (name == "prompt" ? "prompt templates" : "conversations") +
                     " are not available through the enclave");
  if (optional_field(body, "previous_response_id") != nullptr)
    return invalid("previous_response_id: the enclave keeps no conversation state; the rvenc proxy expands it "
                   "locally (docs/responses.md)");
  if (const auto* v = optional_field(body, "top_logprobs")) {
    if (!v->is_int64() || v->get_int64() < 0) return invalid("top_logprobs must be a non-negative integer");
    if (v->get_int64() > 0) return invalid("top_logprobs: log probabilities are not translated");
  }
  if (const auto* v = optional_field(body, "truncation")) {
    if (!v->is_string() || (v->get_string() != "auto" && v->get_string() != "disabled"))
      return invalid("truncation must be auto or disabled");
  }
  if (const auto* v = optional_field(body, "include"); v != nullptr && !v->is_array())
    return invalid("include must be an array of strings");
  if (const auto* v = optional_field(body, "metadata"); v != nullptr && !v->is_object())
    return invalid("metadata must be an object");
  if (const auto* v = optional_field(body, "store"); v != nullptr && !v->is_bool())
    return invalid("store must be a boolean");
  return {};
}

Status check_members(const json::object& body) {
  for (const auto& member : body) {
    const std::string_view key = member.key();
    if (std::find(kKnownMembers.begin(), kKnownMembers.end(), key) == kKnownMembers.end() &&
        std::find(kIgnoredMembers.begin(), kIgnoredMembers.end(), key) == kIgnoredMembers.end())
      return invalid("Unknown parameter" + detail::quoted_field_name(key) + " in a Responses request");
  }
  return refuse_untranslatable(body);
}

// Sampling and limits: max_output_tokens, temperature, top_p, reasoning.effort, user, parallel_tool_calls.
Status translate_options(const json::object& body, json::object& chat) {
  if (const auto* v = optional_field(body, "max_output_tokens")) {
    if (!v->is_int64() || v->get_int64() <= 0) return invalid("max_output_tokens must be a positive integer");
    chat["max_tokens"] = *v;
  }
  for (std::string_view name : {"temperature", "top_p"}) {
    if (const auto* v = optional_field(body, name)) {
      if (!v->is_number()) return invalid(std::string(name) + " must be a number");
      chat[name] = *v;
    }
  }
  if (const auto* v = optional_field(body, "reasoning")) {
    if (!v->is_object()) return invalid("reasoning must be an object");
    if (const auto* effort = optional_field(v->get_object(), "effort")) {
      if (!effort->is_string()) return invalid("reasoning.effort must be a string");
      chat["reasoning_effort"] = *effort;
    }
  }
  if (const auto* v = optional_field(body, "user")) {
    if (!v->is_string()) return invalid("user must be a string");
    chat["user"] = *v;
  }
  if (const auto* v = optional_field(body, "parallel_tool_calls")) {
    if (!v->is_bool()) return invalid("parallel_tool_calls must be a boolean");
    chat["parallel_tool_calls"] = *v;
  }
  return {};
}

Status translate_tooling(const json::object& body, json::object& chat) {
  if (const auto* v = optional_field(body, "tools")) {
    auto tools = translate_tools(*v);
    if (!tools) return std::unexpected(tools.error());
    if (!tools->empty()) chat["tools"] = std::move(*tools);
  }
  if (const auto* v = optional_field(body, "tool_choice")) {
    auto choice = translate_tool_choice(*v);
    if (!choice) return std::unexpected(choice.error());
    chat["tool_choice"] = std::move(*choice);
  }
  if (const auto* v = optional_field(body, "text")) {
    auto format = translate_text(*v);
    if (!format) return std::unexpected(format.error());
    if (*format) chat["response_format"] = std::move(**format);
  }
  return {};
}

}  // namespace

Result<ResponsesRequest> translate_responses_request(json::object body) {
  body.erase(kEndpointMember);
  if (auto ok = check_members(body); !ok) return std::unexpected(ok.error());
  ResponsesRequest request;
  const auto* model = body.if_contains("model");
  if (model == nullptr || !model->is_string() || model->get_string().empty())
    return invalid("model must be a non-empty string");
  request.model = std::string(view(model->get_string()));
  if (const auto* v = optional_field(body, "stream")) {
    if (!v->is_bool()) return invalid("stream must be a boolean");
    request.stream = v->get_bool();
  }
  Messages messages;
  if (const auto* v = optional_field(body, "instructions")) {
    if (!v->is_string()) return invalid("instructions must be a string");
    messages.push(json::object{{"role", "system"}, {"content", *v}});
  }
  const auto* input = body.if_contains("input");
  if (input == nullptr || input->is_null()) return invalid("input is required (a string or an array of items)");
  if (auto ok = translate_input(*input, messages); !ok) return std::unexpected(ok.error());

  json::object chat{{"model", request.model},
                    {"messages", std::move(messages.list)},
                    {"stream", true},
                    {"stream_options", json::object{{"include_usage", true}}}};
  if (auto ok = translate_options(body, chat); !ok) return std::unexpected(ok.error());
  if (auto ok = translate_tooling(body, chat); !ok) return std::unexpected(ok.error());
  request.chat = std::move(chat);
  request.body = std::move(body);
  return request;
}

Result<TranslatedResponses> translate_and_validate_responses(json::object body) {
  auto responses = translate_responses_request(std::move(body));
  if (!responses) return std::unexpected(responses.error());
  auto chat = validate_chat_request(json::serialize(responses->chat));
  if (!chat) return std::unexpected(chat.error());
  return TranslatedResponses{std::move(*responses), std::move(*chat)};
}

Result<ChatRequest> validate_responses_body(json::object body, std::size_t /*json_bytes*/) {
  auto translated = translate_and_validate_responses(std::move(body));
  if (!translated) return std::unexpected(translated.error());
  ChatRequest request = std::move(translated->chat);
  request.stream = translated->responses.stream;
  request.body = std::move(translated->responses.body);
  return request;
}

Result<ResponsesRequest> translate_responses_request(std::string_view text) {
  auto parsed =
      detail::parse_json_object(text, kMaxResponsesJsonDepth, "the Responses request", Errc::invalid_inference);
  if (!parsed) return std::unexpected(parsed.error());
  return translate_responses_request(std::move(*parsed));
}

}  // namespace rvenc::protocol
