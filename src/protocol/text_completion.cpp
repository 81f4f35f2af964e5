#include "rvenc/protocol/text_completion.hpp"

#include <boost/json/array.hpp>

namespace rvenc::protocol {

namespace json = boost::json;

namespace {

std::string string_member(const json::object& obj, std::string_view name) {
  const auto* v = obj.if_contains(name);
  return (v != nullptr && v->is_string()) ? std::string(v->get_string()) : std::string();
}

// Streamed logprobs come per chunk ({"tokens":[..],"token_logprobs":[..],"top_logprobs":[..],
// "text_offset":[..]}): their arrays are appended in order.
void merge_logprobs(json::value& merged, const json::object& part) {
  if (!merged.is_object()) {
    merged = part;
    return;
  }
  auto& into = merged.get_object();
  for (const auto& [key, value] : part) {
    auto* existing = into.if_contains(key);
    if (existing != nullptr && existing->is_array() && value.is_array()) {
      for (const auto& item : value.get_array()) existing->get_array().push_back(item);
    } else {
      into[key] = value;
    }
  }
}

}  // namespace

void TextCompletionAssembler::add_chunk(const json::object& chunk) {
  if (id_.empty()) id_ = string_member(chunk, "id");
  if (model_.empty()) model_ = string_member(chunk, "model");
  if (auto fp = string_member(chunk, "system_fingerprint"); !fp.empty()) system_fingerprint_ = std::move(fp);
  if (const auto* created = chunk.if_contains("created"); created != nullptr && created->is_int64() && created_ == 0)
    created_ = created->get_int64();
  if (const auto* usage = chunk.if_contains("usage"); usage != nullptr && !usage->is_null()) {
    if (auto parsed = parse_usage(*usage)) {
      usage_ = parsed;
      usage_json_ = *usage;
    }
  }
  const auto* choices = chunk.if_contains("choices");
  if (choices == nullptr || !choices->is_array()) return;
  for (const auto& c : choices->get_array()) {
    if (!c.is_object()) continue;
    const auto& obj = c.get_object();
    std::int64_t index = 0;
    if (const auto* i = obj.if_contains("index"); i != nullptr && i->is_int64()) index = i->get_int64();
    if (index < 0 || index >= kMaxAssembledChoices) continue;
    auto& choice = choices_[index];
    if (const auto* text = obj.if_contains("text"); text != nullptr && text->is_string())
      choice.text.append(text->get_string().data(), text->get_string().size());
    if (const auto* finish = obj.if_contains("finish_reason"); finish != nullptr && !finish->is_null())
      choice.finish_reason = *finish;
    if (const auto* logprobs = obj.if_contains("logprobs"); logprobs != nullptr && logprobs->is_object())
      merge_logprobs(choice.logprobs, logprobs->get_object());
  }
}

json::object TextCompletionAssembler::completion() const {
  json::object out;
  out["id"] = id_;
  out["object"] = "text_completion";
  out["created"] = created_;
  out["model"] = model_;
  if (!system_fingerprint_.empty()) out["system_fingerprint"] = system_fingerprint_;
  json::array choices;
  for (const auto& [index, choice] : choices_) {
    choices.push_back(json::object{{"index", index},
                                   {"text", choice.text},
                                   {"logprobs", choice.logprobs},
                                   {"finish_reason", choice.finish_reason}});
  }
  out["choices"] = std::move(choices);
  out["usage"] = usage_json_.is_object() ? usage_json_ : json::value(nullptr);
  return out;
}

}  // namespace rvenc::protocol
