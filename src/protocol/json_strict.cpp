#include "json_strict.hpp"

#include <set>
#include <string>
#include <vector>

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/parse.hpp>

#include "rvenc/common/utf8.hpp"

namespace rvenc::protocol::detail {

namespace {

// A SAX handler that only tracks the keys of every open object and stops at the first duplicate.
struct DuplicateKeyFinder {
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);

  std::vector<std::set<std::string>> objects;
  std::string key;
  bool duplicate = false;
  std::string duplicate_key;

  bool on_document_begin(boost::system::error_code&) { return true; }
  bool on_document_end(boost::system::error_code&) { return true; }
  bool on_object_begin(boost::system::error_code&) {
    objects.emplace_back();
    return true;
  }
  bool on_object_end(std::size_t, boost::system::error_code&) {
    objects.pop_back();
    return true;
  }
  bool on_array_begin(boost::system::error_code&) { return true; }
  bool on_array_end(std::size_t, boost::system::error_code&) { return true; }
  bool on_key_part(boost::json::string_view s, std::size_t, boost::system::error_code&) {
    key.append(s.data(), s.size());
    return true;
  }
  bool on_key(boost::json::string_view s, std::size_t, boost::system::error_code& ec) {
    key.append(s.data(), s.size());
    const bool inserted = objects.back().insert(key).second;
    if (!inserted) {
      duplicate = true;
      duplicate_key = std::move(key);
      ec = boost::json::error::syntax;  // stops the parser
      return false;
    }
    key.clear();
    return true;
  }
  bool on_string_part(boost::json::string_view, std::size_t, boost::system::error_code&) { return true; }
  bool on_string(boost::json::string_view, std::size_t, boost::system::error_code&) { return true; }
  bool on_number_part(boost::json::string_view, boost::system::error_code&) { return true; }
  bool on_int64(std::int64_t, boost::json::string_view, boost::system::error_code&) { return true; }
  bool on_uint64(std::uint64_t, boost::json::string_view, boost::system::error_code&) { return true; }
  bool on_double(double, boost::json::string_view, boost::system::error_code&) { return true; }
  bool on_bool(bool, boost::system::error_code&) { return true; }
  bool on_null(boost::system::error_code&) { return true; }
  bool on_comment_part(boost::json::string_view, boost::system::error_code&) { return true; }
  bool on_comment(boost::json::string_view, boost::system::error_code&) { return true; }
};

}  // namespace

std::string quoted_field_name(std::string_view name) {
  constexpr std::size_t kMaxQuotedName = 32;
  if (name.empty() || name.size() > kMaxQuotedName) return {};
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return {};
  }
  return " \"" + std::string(name) + "\"";
}

std::string not_json_message(std::string_view text, std::string_view what) {
  if (const auto bad = utf8::first_invalid(text))
    return std::string(what) + " is not valid UTF-8 (byte " + std::to_string(*bad) + "): JSON text must be UTF-8";
  return std::string(what) + " is not valid JSON";
}

Result<boost::json::object> parse_json_object(std::string_view text, std::size_t max_depth, std::string_view what,
                                             Errc code) {
  boost::json::parse_options options;
  options.max_depth = max_depth;
  boost::system::error_code ec;
  auto value = boost::json::parse(boost::json::string_view(text.data(), text.size()), ec, {}, options);
  if (ec) return fail(code, not_json_message(text, what));
  if (!value.is_object()) return fail(code, std::string(what) + " must be a JSON object");
  return std::move(value.get_object());
}

Result<boost::json::value> parse_json_strict(std::string_view text, std::string_view what, Errc code) {
  boost::json::parse_options options;
  options.max_depth = kMaxJsonDepth;
  boost::system::error_code ec;
  auto value = boost::json::parse(boost::json::string_view(text.data(), text.size()), ec, {}, options);
  if (ec) return fail(code, not_json_message(text, what));

  boost::json::basic_parser<DuplicateKeyFinder> finder(options);
  finder.write_some(false, text.data(), text.size(), ec);
  if (finder.handler().duplicate) {
    return fail(code, std::string(what) + " has a duplicate field" + quoted_field_name(finder.handler().duplicate_key));
  }
  return value;
}

}  // namespace rvenc::protocol::detail
