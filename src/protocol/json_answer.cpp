#include "rvenc/protocol/json_answer.hpp"

#include <cstdint>
#include <string>

#include <boost/json/basic_parser_impl.hpp>

namespace rvenc::protocol {
namespace {

namespace json = boost::json;
using boost::system::error_code;

// What the value after the current key is, as far as the usage is concerned.
enum class Slot : std::uint8_t { none, usage, prompt, completion };

// One usage count: absent, a non-negative int64, or anything else (which voids the usage, as in
// parse_usage). A repeated key replaces the earlier value.
struct Count {
  bool present = false;
  bool valid = false;
  std::int64_t value = 0;
  void set(bool ok, std::int64_t v = 0) noexcept {
    present = true;
    valid = ok;
    value = v;
  }
};

// SAX handler: depth 1 is inside the top-level object, depth 2 inside one of its members' values.
struct AnswerHandler {
  static constexpr std::size_t max_object_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_array_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_key_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_string_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t kLongestKey = 32;  // longer than any key looked for

  std::size_t depth = 0;
  bool top_is_object = false;
  bool in_usage = false;     // the open container at depth 2 is the usage object
  bool usage_object = false;  // the last "usage" member was an object
  Count prompt;
  Count completion;
  Slot pending = Slot::none;
  std::string key;

  // The slot of the value starting now (consumed). A value at the top that is not an object fails.
  [[nodiscard]] bool begin_value(Slot& slot, bool is_object, error_code& ec) {
    slot = pending;
    pending = Slot::none;
    if (depth == 0 && !is_object) {
      ec = json::error::syntax;
      return false;
    }
    if (slot == Slot::usage) {
      usage_object = is_object;
      prompt = {};
      completion = {};
    }
    return true;
  }
  bool scalar(error_code& ec, bool valid_count = false, std::int64_t value = 0) {
    Slot slot = Slot::none;
    if (!begin_value(slot, false, ec)) return false;
    if (slot == Slot::prompt) prompt.set(valid_count, value);
    if (slot == Slot::completion) completion.set(valid_count, value);
    return true;
  }
  bool open(bool is_object, error_code& ec) {
    Slot slot = Slot::none;
    if (!begin_value(slot, is_object, ec)) return false;
    if (depth == 0) top_is_object = true;
    if (slot == Slot::usage && is_object) in_usage = true;
    if (slot == Slot::prompt) prompt.set(false);
    if (slot == Slot::completion) completion.set(false);
    ++depth;
    return true;
  }
  bool close() {
    --depth;
    if (depth == 1) in_usage = false;
    return true;
  }
  [[nodiscard]] bool watching_keys() const noexcept { return depth == 1 || (depth == 2 && in_usage); }

  bool on_document_begin(error_code&) { return true; }
  bool on_document_end(error_code&) { return true; }
  bool on_object_begin(error_code& ec) { return open(true, ec); }
  bool on_object_end(std::size_t, error_code&) { return close(); }
  bool on_array_begin(error_code& ec) { return open(false, ec); }
  bool on_array_end(std::size_t, error_code&) { return close(); }
  bool on_key_part(json::string_view s, std::size_t, error_code&) {
    if (watching_keys() && key.size() <= kLongestKey) key.append(s.data(), std::min(s.size(), kLongestKey + 1));
    return true;
  }
  bool on_key(json::string_view s, std::size_t n, error_code& ec) {
    on_key_part(s, n, ec);
    if (depth == 1) pending = key == "usage" ? Slot::usage : Slot::none;
    if (depth == 2 && in_usage)
      pending = key == "prompt_tokens" ? Slot::prompt : key == "completion_tokens" ? Slot::completion : Slot::none;
    key.clear();
    return true;
  }
  bool on_string_part(json::string_view, std::size_t, error_code&) { return true; }
  bool on_string(json::string_view, std::size_t, error_code& ec) { return scalar(ec); }
  bool on_number_part(json::string_view, error_code&) { return true; }
  bool on_int64(std::int64_t i, json::string_view, error_code& ec) { return scalar(ec, i >= 0, i); }
  bool on_uint64(std::uint64_t, json::string_view, error_code& ec) { return scalar(ec); }
  bool on_double(double, json::string_view, error_code& ec) { return scalar(ec); }
  bool on_bool(bool, error_code& ec) { return scalar(ec); }
  bool on_null(error_code& ec) { return scalar(ec); }
  bool on_comment_part(json::string_view, error_code&) { return true; }
  bool on_comment(json::string_view, error_code&) { return true; }

  // parse_usage's rules on what the last "usage" member held.
  [[nodiscard]] std::optional<Usage> usage() const {
    if (!usage_object || (!prompt.present && !completion.present)) return std::nullopt;
    if ((prompt.present && !prompt.valid) || (completion.present && !completion.valid)) return std::nullopt;
    return Usage{.prompt_tokens = prompt.value, .completion_tokens = completion.value};
  }
};

Error not_an_object() { return Error{Errc::upstream_error, "the model server's answer is not a JSON object"}; }

}  // namespace

struct JsonAnswerCheck::Impl {
  json::basic_parser<AnswerHandler> parser{json::parse_options{}};
  bool failed = false;
};

JsonAnswerCheck::JsonAnswerCheck() : impl_(std::make_unique<Impl>()) {}
JsonAnswerCheck::~JsonAnswerCheck() = default;

Status JsonAnswerCheck::feed(std::string_view bytes) {
  if (impl_->failed) return std::unexpected(not_an_object());
  error_code ec;
  const std::size_t used = impl_->parser.write_some(true, bytes.data(), bytes.size(), ec);
  // Fewer bytes used without an error: the object ended and something other than whitespace follows.
  if (ec || used < bytes.size()) {
    impl_->failed = true;
    return std::unexpected(not_an_object());
  }
  return {};
}

Result<std::optional<Usage>> JsonAnswerCheck::finish() {
  if (impl_->failed) return std::unexpected(not_an_object());
  error_code ec;
  impl_->parser.write_some(false, nullptr, 0, ec);
  impl_->failed = true;  // one answer per check
  if (ec || !impl_->parser.done() || !impl_->parser.handler().top_is_object) return std::unexpected(not_an_object());
  return impl_->parser.handler().usage();
}

}  // namespace rvenc::protocol
