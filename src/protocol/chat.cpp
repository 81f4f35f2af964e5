#include "rvenc/protocol/chat.hpp"
#include "rvenc/protocol/json_answer.hpp"
#include "rvenc/protocol/endpoint.hpp"

#include <algorithm>
#include <array>

#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>

#include "json_strict.hpp"
#include "request_fields.hpp"

namespace rvenc::protocol {

namespace {

namespace json = boost::json;

constexpr std::array<std::string_view, 6> kRoles{"system", "user", "assistant", "tool", "developer", "function"};
constexpr double kMaxTemperature = 2.0;
constexpr double kMaxTopP = 1.0;
constexpr std::size_t kMaxChatJsonDepth = 64;

using detail::as_integer;
using detail::invalid;
using detail::optional_field;
using detail::string_or_empty;

Status check_message(const json::value& value, std::size_t i) {
  const std::string where = "messages[" + std::to_string(i) + "]";
  if (!value.is_object()) return invalid(where + " must be an object");
  const auto& msg = value.get_object();
  const auto* role = msg.if_contains("role");
  if (role == nullptr || !role->is_string()) return invalid(where + ".role must be a string");
  const std::string_view role_name(role->get_string().data(), role->get_string().size());
  if (std::find(kRoles.begin(), kRoles.end(), role_name) == kRoles.end()) {
    return invalid(where + ".role must be one of system, user, assistant, tool, developer, function");
  }
  const auto* content = msg.if_contains("content");
  if (content == nullptr) {
    const auto* tool_calls = msg.if_contains("tool_calls");
    if (role_name == "assistant" && tool_calls != nullptr && tool_calls->is_array()) return {};
    return invalid(where + ".content is required");
  }
  if (!content->is_string() && !content->is_array() && !content->is_null()) {
    return invalid(where + ".content must be a string, an array of parts or null");
  }
  if (const auto* tool_calls = msg.if_contains("tool_calls"); tool_calls != nullptr && !tool_calls->is_array() &&
                                                              !tool_calls->is_null()) {
    return invalid(where + ".tool_calls must be an array");
  }
  return {};
}

}  // namespace

Result<ChatRequest> validate_chat_request(std::string_view text) {
  auto parsed = detail::parse_json_object(text, kMaxChatJsonDepth, "the chat request", Errc::invalid_inference);
  if (!parsed) return std::unexpected(parsed.error());
  return validate_chat_body(std::move(*parsed), text.size());
}

Result<ChatRequest> validate_chat_body(json::object object, std::size_t json_bytes) {
  ChatRequest request;
  request.body = std::move(object);
  request.json_bytes = json_bytes;
  const auto& body = request.body;

  const auto* model = body.if_contains("model");
  if (model == nullptr || !model->is_string() || model->get_string().empty()) {
    return invalid("model must be a non-empty string");
  }
  request.model = std::string(model->get_string().data(), model->get_string().size());

  const auto* messages = body.if_contains("messages");
  if (messages == nullptr || !messages->is_array() || messages->get_array().empty()) {
    return invalid("messages must be a non-empty array");
  }
  if (messages->get_array().size() > kMaxMessages) {
    return invalid("messages has more than " + std::to_string(kMaxMessages) + " entries");
  }
  for (std::size_t i = 0; i < messages->get_array().size(); ++i) {
    if (auto ok = check_message(messages->get_array()[i], i); !ok) return std::unexpected(ok.error());
  }
  if (auto ok = detail::check_sampling(body, request); !ok) return std::unexpected(ok.error());
  return request;
}

namespace detail {

std::unexpected<Error> invalid(std::string message) { return fail(Errc::invalid_inference, std::move(message)); }

const json::value* optional_field(const json::object& obj, std::string_view name) {
  const auto* value = obj.if_contains(name);
  return (value == nullptr || value->is_null()) ? nullptr : value;
}

std::string string_or_empty(const json::object& obj, std::string_view name) {
  const auto* v = obj.if_contains(name);
  return (v != nullptr && v->is_string()) ? std::string(v->get_string().data(), v->get_string().size()) : std::string();
}

std::optional<double> as_number(const json::value& v) {
  if (v.is_double()) return v.get_double();
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  return std::nullopt;
}

std::optional<std::int64_t> as_integer(const json::value& v) {
  if (v.is_int64()) return v.get_int64();
  return std::nullopt;
}

Status check_sampling(const json::object& body, ChatRequest& request) {
  if (const auto* stream = optional_field(body, "stream")) {
    if (!stream->is_bool()) return invalid("stream must be a boolean");
    request.stream = stream->get_bool();
  }
  for (std::string_view name : {"max_tokens", "max_completion_tokens"}) {
    if (const auto* v = optional_field(body, name)) {
      auto n = as_integer(*v);
      if (!n || *n <= 0) return invalid(std::string(name) + " must be a positive integer");
      // max_completion_tokens (the newer name) wins when both are given.
      if (!request.max_tokens || name == "max_completion_tokens") request.max_tokens = *n;
    }
  }
  if (const auto* v = optional_field(body, "temperature")) {
    auto t = as_number(*v);
    if (!t || !(*t >= 0.0 && *t <= kMaxTemperature)) return invalid("temperature must be a number from 0 to 2");
  }
  if (const auto* v = optional_field(body, "top_p")) {
    auto p = as_number(*v);
    if (!p || !(*p >= 0.0 && *p <= kMaxTopP)) return invalid("top_p must be a number from 0 to 1");
  }
  if (const auto* v = optional_field(body, "n")) {
    auto n = as_integer(*v);
    if (!n || *n != 1) return invalid("n must be 1 (one choice per request)");
  }
  if (const auto* v = optional_field(body, "stop")) {
    if (v->is_string()) {
      request.stop.emplace_back(v->get_string().data(), v->get_string().size());
    } else if (v->is_array()) {
      if (v->get_array().size() > kMaxStopSequences) {
        return invalid("stop has more than " + std::to_string(kMaxStopSequences) + " sequences");
      }
      for (const auto& s : v->get_array()) {
        if (!s.is_string()) return invalid("stop must be a string or an array of strings");
        request.stop.emplace_back(s.get_string().data(), s.get_string().size());
      }
    } else {
      return invalid("stop must be a string or an array of strings");
    }
  }
  return {};
}

}  // namespace detail

// --- CompletionWalk ----------------------------------------------------------------------------

void CompletionWalk::add_header(const json::object& chunk) {
  if (id_.empty()) id_ = string_or_empty(chunk, "id");
  if (model_.empty()) model_ = string_or_empty(chunk, "model");
  if (auto fp = string_or_empty(chunk, "system_fingerprint"); !fp.empty()) system_fingerprint_ = std::move(fp);
  if (const auto* created = chunk.if_contains("created"); created != nullptr && created->is_int64() && created_ == 0) {
    created_ = created->get_int64();
  }
  if (const auto* usage = chunk.if_contains("usage"); usage != nullptr && !usage->is_null()) {
    if (auto parsed = parse_usage(*usage)) {
      usage_ = parsed;
      usage_json_ = *usage;
    }
  }
}

std::int64_t CompletionWalk::choice_index(const json::object& choice) {
  if (const auto* i = choice.if_contains("index"); i != nullptr && i->is_int64()) return i->get_int64();
  return 0;
}

json::object CompletionWalk::start(std::string_view object) const {
  json::object out;
  out["id"] = id_;
  out["object"] = object;
  out["created"] = created_;
  out["model"] = model_;
  if (!system_fingerprint_.empty()) out["system_fingerprint"] = system_fingerprint_;
  return out;
}

json::value CompletionWalk::usage_json() const {
  return usage_json_.is_object() ? usage_json_ : json::value(nullptr);
}

// --- CompletionAssembler -----------------------------------------------------------------------

Status CompletionAssembler::add_chunk(std::string_view chunk_json) {
  auto parsed = detail::parse_json_object(chunk_json, kMaxChatJsonDepth, "completion chunk", Errc::invalid_request);
  if (!parsed) return std::unexpected(parsed.error());
  const auto* choices = parsed->if_contains("choices");
  if (choices != nullptr && !choices->is_array() && !choices->is_null()) {
    return fail(Errc::invalid_request, "completion chunk field \"choices\" must be an array");
  }
  add_chunk(*parsed);
  return {};
}

void CompletionAssembler::add_chunk(const json::object& chunk) {
  ++chunks_;
  walk_.add(chunk, [this](std::int64_t index, const json::object& obj) { add_choice(index, obj); });
}

void CompletionAssembler::add_choice(std::int64_t index, const json::object& obj) {
  auto& choice = choices_[index];
  if (const auto* finish = obj.if_contains("finish_reason"); finish != nullptr && !finish->is_null()) {
    choice.finish_reason = *finish;
  }
  const auto* delta_value = obj.if_contains("delta");
  if (delta_value == nullptr || !delta_value->is_object()) return;
  const auto& delta = delta_value->get_object();
  if (auto role = string_or_empty(delta, "role"); !role.empty()) choice.role = std::move(role);
  if (const auto* content = delta.if_contains("content"); content != nullptr && content->is_string()) {
    choice.content.append(content->get_string().data(), content->get_string().size());
    choice.has_content = true;
  }
  // vLLM and SGLang say reasoning_content; some engines say reasoning.
  for (std::string_view name : {"reasoning_content", "reasoning"}) {
    if (const auto* r = delta.if_contains(name); r != nullptr && r->is_string()) {
      choice.reasoning.append(r->get_string().data(), r->get_string().size());
      choice.has_reasoning = true;
      break;
    }
  }
  const auto* tool_calls = delta.if_contains("tool_calls");
  if (tool_calls == nullptr || !tool_calls->is_array()) return;
  std::int64_t position = 0;
  for (const auto& t : tool_calls->get_array()) {
    if (!t.is_object()) continue;
    const auto& call = t.get_object();
    std::int64_t call_index = position++;
    if (const auto* i = call.if_contains("index"); i != nullptr && i->is_int64()) call_index = i->get_int64();
    if (call_index < 0 || call_index >= kMaxAssembledToolCalls) continue;
    auto [it, first_seen] = choice.tool_calls.try_emplace(call_index);
    auto& merged = it->second;
    if (auto id = string_or_empty(call, "id"); !id.empty() && merged.id.empty()) merged.id = std::move(id);
    if (auto type = string_or_empty(call, "type"); !type.empty() && (first_seen || !merged.type_seen)) {
      merged.type = std::move(type);
      merged.type_seen = true;
    }
    if (const auto* fn = call.if_contains("function"); fn != nullptr && fn->is_object()) {
      if (auto name = string_or_empty(fn->get_object(), "name"); !name.empty() && merged.name.empty()) {
        merged.name = std::move(name);
      }
      if (const auto* args = fn->get_object().if_contains("arguments"); args != nullptr && args->is_string()) {
        merged.arguments.append(args->get_string().data(), args->get_string().size());
      }
    }
  }
}

json::object CompletionAssembler::completion() const {
  json::object out = walk_.start("chat.completion");
  json::array choices;
  for (const auto& [index, choice] : choices_) {
    json::object message;
    message["role"] = choice.role;
    message["content"] = choice.has_content ? json::value(choice.content) : json::value(nullptr);
    if (choice.has_reasoning) message["reasoning_content"] = choice.reasoning;
    if (!choice.tool_calls.empty()) {
      json::array calls;
      for (const auto& [call_index, call] : choice.tool_calls) {
        calls.push_back(json::object{{"index", call_index},
                                     {"id", call.id},
                                     {"type", call.type},
                                     {"function", json::object{{"name", call.name}, {"arguments", call.arguments}}}});
      }
      message["tool_calls"] = std::move(calls);
    }
    choices.push_back(json::object{{"index", index},
                                   {"message", std::move(message)},
                                   {"finish_reason", choice.finish_reason},
                                   {"logprobs", nullptr}});
  }
  out["choices"] = std::move(choices);
  out["usage"] = walk_.usage_json();
  return out;
}

std::optional<Usage> parse_usage(const json::value& value) {
  if (!value.is_object()) return std::nullopt;
  const auto& obj = value.get_object();
  const auto* prompt = obj.if_contains("prompt_tokens");
  const auto* completion = obj.if_contains("completion_tokens");
  if (prompt == nullptr && completion == nullptr) return std::nullopt;
  Usage usage;
  for (auto [field, out] : {std::pair{prompt, &usage.prompt_tokens}, std::pair{completion, &usage.completion_tokens}}) {
    if (field == nullptr) continue;
    if (!field->is_int64() || field->get_int64() < 0) return std::nullopt;
    *out = field->get_int64();
  }
  return usage;
}

Result<std::optional<Usage>> json_answer_usage(std::string_view text) {
  JsonAnswerCheck check;
  if (auto fed = check.feed(text); !fed) return std::unexpected(fed.error());
  return check.finish();
}

}  // namespace rvenc::protocol
