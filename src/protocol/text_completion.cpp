#include "rvenc/protocol/text_completion.hpp"

#include <boost/json/array.hpp>

namespace rvenc::protocol {

namespace json = boost::json;

namespace {

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
  walk_.add(chunk, [this](std::int64_t index, const json::object& obj) {
    auto& choice = choices_[index];
    if (const auto* text = obj.if_contains("text"); text != nullptr && text->is_string())
      choice.text.append(text->get_string().data(), text->get_string().size());
    if (const auto* finish = obj.if_contains("finish_reason"); finish != nullptr && !finish->is_null())
      choice.finish_reason = *finish;
    if (const auto* logprobs = obj.if_contains("logprobs"); logprobs != nullptr && logprobs->is_object())
      merge_logprobs(choice.logprobs, logprobs->get_object());
  });
}

json::object TextCompletionAssembler::completion() const {
  json::object out = walk_.start("text_completion");
  json::array choices;
  for (const auto& [index, choice] : choices_) {
    choices.push_back(json::object{{"index", index},
                                   {"text", choice.text},
                                   {"logprobs", choice.logprobs},
                                   {"finish_reason", choice.finish_reason}});
  }
  out["choices"] = std::move(choices);
  out["usage"] = walk_.usage_json();
  return out;
}

}  // namespace rvenc::protocol
