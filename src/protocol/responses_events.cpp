// chat.completion.chunk stream -> Responses streaming events (responses.hpp, docs/responses.md).
#include <algorithm>

#include "request_fields.hpp"
#include "rvenc/protocol/responses.hpp"

namespace rvenc::protocol {

namespace {

namespace json = boost::json;

std::string_view view(const json::string& s) { return {s.data(), s.size()}; }

using detail::optional_field;

json::value member_or(const json::object& obj, std::string_view name, json::value fallback) {
  const auto* value = optional_field(obj, name);
  return value != nullptr ? *value : fallback;
}

using detail::string_or_empty;

std::int64_t count_or_zero(const json::value* details, std::string_view name) {
  if (details == nullptr || !details->is_object()) return 0;
  const auto* v = details->get_object().if_contains(name);
  return (v != nullptr && v->is_int64() && v->get_int64() > 0) ? v->get_int64() : 0;
}

// The members of the response object that the request fixes (OpenAI's defaults otherwise).
json::object response_base(const json::object& body) {
  json::value effort = nullptr;
  if (const auto* r = optional_field(body, "reasoning"); r != nullptr && r->is_object())
    effort = member_or(r->get_object(), "effort", nullptr);
  return json::object{
      {"background", false},
      {"instructions", member_or(body, "instructions", nullptr)},
      {"max_output_tokens", member_or(body, "max_output_tokens", nullptr)},
      {"metadata", member_or(body, "metadata", json::object{})},
      {"model", member_or(body, "model", "")},
      {"parallel_tool_calls", member_or(body, "parallel_tool_calls", true)},
      {"previous_response_id", nullptr},
      {"reasoning", json::object{{"effort", effort}, {"summary", nullptr}}},
      {"store", false},  // the enclave stores nothing (the proxy may, locally)
      {"temperature", member_or(body, "temperature", 1.0)},
      {"text", member_or(body, "text", json::object{{"format", json::object{{"type", "text"}}}})},
      {"tool_choice", member_or(body, "tool_choice", "auto")},
      {"tools", member_or(body, "tools", json::array{})},
      {"top_p", member_or(body, "top_p", 1.0)},
      {"truncation", member_or(body, "truncation", "disabled")},
      {"user", member_or(body, "user", nullptr)},
  };
}

}  // namespace

json::object responses_usage(const json::value& chat_usage) {
  std::int64_t input = 0;
  std::int64_t output = 0;
  if (auto usage = parse_usage(chat_usage)) {
    input = usage->prompt_tokens;
    output = usage->completion_tokens;
  }
  const json::object* obj = chat_usage.is_object() ? &chat_usage.get_object() : nullptr;
  const auto details = [&](std::string_view name) { return obj != nullptr ? obj->if_contains(name) : nullptr; };
  return json::object{
      {"input_tokens", input},
      {"input_tokens_details", json::object{{"cached_tokens", count_or_zero(details("prompt_tokens_details"),
                                                                              "cached_tokens")}}},
      {"output_tokens", output},
      {"output_tokens_details", json::object{{"reasoning_tokens", count_or_zero(details("completion_tokens_details"),
                                                                                 "reasoning_tokens")}}},
      {"total_tokens", Usage{input, output}.total_tokens()},
  };
}

ResponsesEventWriter::ResponsesEventWriter(const ResponsesRequest& request, std::string response_id,
                                           std::int64_t created_at)
    : base_(response_base(request.body)), incomplete_details_(nullptr), error_(nullptr), usage_(nullptr) {
  base_["id"] = std::move(response_id);
  base_["object"] = "response";
  base_["created_at"] = created_at;
}

json::object ResponsesEventWriter::event(std::string_view type) {
  return json::object{{"type", type}, {"sequence_number", sequence_++}};
}

json::object ResponsesEventWriter::item_json(const Item& item) const {
  const char* status = item.done ? "completed" : "in_progress";
  if (item.kind == "function_call")
    return json::object{{"type", "function_call"}, {"id", item.id},        {"call_id", item.call_id},
                        {"name", item.name},       {"arguments", item.text}, {"status", status}};
  json::array content;
  if (item.done || !item.text.empty()) {
    if (item.kind == "message")
      content.push_back(json::object{{"type", "output_text"}, {"text", item.text}, {"annotations", json::array{}}});
    else
      content.push_back(json::object{{"type", "reasoning_text"}, {"text", item.text}});
  }
  if (item.kind == "reasoning")
    return json::object{{"type", "reasoning"}, {"id", item.id}, {"summary", json::array{}}, {"content", content}};
  return json::object{
      {"type", "message"}, {"id", item.id}, {"status", status}, {"role", "assistant"}, {"content", content}};
}

json::object ResponsesEventWriter::response() const {
  json::object out = base_;
  out["status"] = status_;
  out["error"] = error_;
  out["incomplete_details"] = incomplete_details_;
  json::array output;
  for (const auto& item : items_) output.push_back(item_json(item));
  out["output"] = std::move(output);
  out["usage"] = usage_;
  return out;
}

std::vector<json::object> ResponsesEventWriter::start() {
  std::vector<json::object> out;
  for (std::string_view type : {"response.created", "response.in_progress"}) {
    auto e = event(type);
    e["response"] = response();
    out.push_back(std::move(e));
  }
  return out;
}

void ResponsesEventWriter::open_item(std::vector<json::object>& out, std::string kind, std::int64_t tool_index) {
  static constexpr std::string_view kPrefix[] = {"msg", "rs", "fc"};
  const std::size_t prefix = kind == "message" ? 0 : kind == "reasoning" ? 1 : 2;
  std::string suffix = base_.at("id").as_string().c_str();
  if (suffix.starts_with("resp_")) suffix.erase(0, 5);
  Item item{.kind = std::move(kind), .id = std::string(kPrefix[prefix]) + "_" + suffix + "_" + std::to_string(items_.size())};
  item.tool_index = tool_index;
  items_.push_back(std::move(item));
  const std::size_t index = items_.size() - 1;
  open_ = index;
  auto added = event("response.output_item.added");
  added["output_index"] = index;
  added["item"] = item_json(items_[index]);
  out.push_back(std::move(added));
  if (items_[index].kind == "function_call") return;
  auto part = event("response.content_part.added");
  part["item_id"] = items_[index].id;
  part["output_index"] = index;
  part["content_index"] = 0;
  part["part"] = items_[index].kind == "message"
                     ? json::object{{"type", "output_text"}, {"text", ""}, {"annotations", json::array{}}}
                     : json::object{{"type", "reasoning_text"}, {"text", ""}};
  out.push_back(std::move(part));
}

void ResponsesEventWriter::close_item(std::vector<json::object>& out, std::size_t index) {
  Item& item = items_[index];
  if (item.done) return;
  item.done = true;
  if (open_ == index) open_.reset();
  const bool message = item.kind == "message";
  json::object text_done = event(item.kind == "function_call" ? "response.function_call_arguments.done"
                                 : message                    ? "response.output_text.done"
                                                              : "response.reasoning_text.done");
  text_done["item_id"] = item.id;
  text_done["output_index"] = index;
  if (item.kind == "function_call") {
    text_done["name"] = item.name;
    text_done["arguments"] = item.text;
  } else {
    text_done["content_index"] = 0;
    text_done["text"] = item.text;
    if (message) text_done["logprobs"] = json::array{};
  }
  out.push_back(std::move(text_done));
  json::object full = item_json(item);
  if (item.kind != "function_call") {
    auto part = event("response.content_part.done");
    part["item_id"] = item.id;
    part["output_index"] = index;
    part["content_index"] = 0;
    part["part"] = full.at("content").as_array().at(0);
    out.push_back(std::move(part));
  }
  auto done = event("response.output_item.done");
  done["output_index"] = index;
  done["item"] = std::move(full);
  out.push_back(std::move(done));
}

void ResponsesEventWriter::close_open(std::vector<json::object>& out) {
  if (open_) close_item(out, *open_);
}

void ResponsesEventWriter::add_text(std::vector<json::object>& out, std::string_view kind, std::string_view delta) {
  if (delta.empty()) return;
  if (!open_ || items_[*open_].kind != kind) {
    close_open(out);
    open_item(out, std::string(kind));
  }
  Item& item = items_[*open_];
  item.text.append(delta);
  auto e = event(kind == "message" ? "response.output_text.delta" : "response.reasoning_text.delta");
  e["item_id"] = item.id;
  e["output_index"] = *open_;
  e["content_index"] = 0;
  e["delta"] = delta;
  if (kind == "message") e["logprobs"] = json::array{};
  out.push_back(std::move(e));
}

void ResponsesEventWriter::add_tool_call(std::vector<json::object>& out, const json::object& call,
                                         std::int64_t position) {
  std::int64_t tool_index = position;
  if (const auto* i = call.if_contains("index"); i != nullptr && i->is_int64()) tool_index = i->get_int64();
  if (tool_index < 0 || tool_index >= kMaxAssembledToolCalls) return;
  auto found = std::find_if(items_.begin(), items_.end(), [&](const Item& item) {
    return item.kind == "function_call" && item.tool_index == tool_index;
  });
  const json::object* function = nullptr;
  if (const auto* f = call.if_contains("function"); f != nullptr && f->is_object()) function = &f->get_object();
  if (found == items_.end()) {
    close_open(out);
    open_item(out, "function_call", tool_index);
    found = items_.end() - 1;
    found->call_id = string_or_empty(call, "id");
    if (found->call_id.empty()) found->call_id = "call_" + found->id;
    if (function != nullptr) found->name = string_or_empty(*function, "name");
    out.back()["item"] = item_json(*found);
  } else if (found->done) {
    return;  // an engine interleaving calls after one was closed: nothing can be added to it
  }
  if (function != nullptr && found->name.empty()) found->name = string_or_empty(*function, "name");
  const std::string delta = function != nullptr ? string_or_empty(*function, "arguments") : std::string();
  if (delta.empty()) return;
  found->text += delta;
  auto e = event("response.function_call_arguments.delta");
  e["item_id"] = found->id;
  e["output_index"] = static_cast<std::size_t>(found - items_.begin());
  e["delta"] = delta;
  out.push_back(std::move(e));
}

std::vector<json::object> ResponsesEventWriter::add_chunk(const json::object& chunk) {
  std::vector<json::object> out;
  if (finished_) return out;
  if (const auto* usage = optional_field(chunk, "usage"); usage != nullptr && parse_usage(*usage)) {
    usage_ = responses_usage(*usage);
  }
  const auto* choices = chunk.if_contains("choices");
  if (choices == nullptr || !choices->is_array()) return out;
  for (const auto& c : choices->get_array()) {
    if (!c.is_object()) continue;
    const auto& choice = c.get_object();
    if (const auto* i = choice.if_contains("index"); i != nullptr && !(i->is_int64() && i->get_int64() == 0))
      continue;  // one output per response (n = 1)
    if (const auto* f = optional_field(choice, "finish_reason"); f != nullptr && f->is_string())
      finish_reason_ = std::string(view(f->get_string()));
    const auto* delta_value = choice.if_contains("delta");
    if (delta_value == nullptr || !delta_value->is_object()) continue;
    const auto& delta = delta_value->get_object();
    for (std::string_view name : {"reasoning_content", "reasoning"}) {
      if (const auto* r = delta.if_contains(name); r != nullptr && r->is_string()) {
        add_text(out, "reasoning", view(r->get_string()));
        break;
      }
    }
    if (const auto* content = delta.if_contains("content"); content != nullptr && content->is_string())
      add_text(out, "message", view(content->get_string()));
    if (const auto* calls = delta.if_contains("tool_calls"); calls != nullptr && calls->is_array()) {
      std::int64_t position = 0;
      for (const auto& call : calls->get_array())
        if (call.is_object()) add_tool_call(out, call.get_object(), position++);
    }
  }
  return out;
}

std::vector<json::object> ResponsesEventWriter::finish(const std::optional<Error>& error,
                                                       const std::optional<Usage>& usage) {
  std::vector<json::object> out;
  if (finished_) return out;
  finished_ = true;
  for (std::size_t i = 0; i < items_.size(); ++i) close_item(out, i);
  if (usage_.is_null() && usage)
    usage_ = responses_usage(json::object{{"prompt_tokens", usage->prompt_tokens},
                                          {"completion_tokens", usage->completion_tokens}});
  std::string_view terminal = "response.completed";
  if (error) {
    status_ = "failed";
    error_ = json::object{{"code", code_name(error->code)}, {"message", error->message}};
    auto e = event("error");
    e["code"] = code_name(error->code);
    e["message"] = error->message;
    e["param"] = nullptr;
    out.push_back(std::move(e));
    terminal = "response.failed";
  } else if (finish_reason_ == "length" || finish_reason_ == "content_filter") {
    status_ = "incomplete";
    incomplete_details_ =
        json::object{{"reason", finish_reason_ == "length" ? "max_output_tokens" : "content_filter"}};
    terminal = "response.incomplete";
  } else {
    status_ = "completed";
  }
  auto e = event(terminal);
  e["response"] = response();
  out.push_back(std::move(e));
  return out;
}

std::optional<json::object> terminal_response(const json::object& event) {
  const auto* type = event.if_contains("type");
  if (type == nullptr || !type->is_string()) return std::nullopt;
  const auto name = view(type->get_string());
  if (name != "response.completed" && name != "response.incomplete" && name != "response.failed")
    return std::nullopt;
  const auto* response = event.if_contains("response");
  if (response == nullptr || !response->is_object()) return std::nullopt;
  return response->get_object();
}

json::array conversation_items(const json::object& response) {
  json::array items;
  const auto* output = response.if_contains("output");
  if (output == nullptr || !output->is_array()) return items;
  for (const auto& value : output->get_array()) {
    if (!value.is_object()) continue;
    const auto& item = value.get_object();
    const std::string type = string_or_empty(item, "type");
    if (type == "function_call") {
      items.push_back(json::object{{"type", "function_call"},
                                   {"call_id", string_or_empty(item, "call_id")},
                                   {"name", string_or_empty(item, "name")},
                                   {"arguments", string_or_empty(item, "arguments")}});
    } else if (type == "message") {
      std::string text;
      if (const auto* content = item.if_contains("content"); content != nullptr && content->is_array())
        for (const auto& part : content->get_array())
          if (part.is_object()) text += string_or_empty(part.get_object(), "text");
      items.push_back(json::object{{"type", "message"},
                                   {"role", "assistant"},
                                   {"content", json::array{json::object{{"type", "output_text"}, {"text", text}}}}});
    }
  }
  return items;
}

}  // namespace rvenc::protocol
