// Private helper of rvenc_core: strict JSON parsing that refuses duplicate object keys
// (Boost.JSON 1.81 silently keeps one of them), for wire documents read from untrusted peers.
#pragma once

#include <string>
#include <string_view>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "rvenc/common/error.hpp"

namespace rvenc::protocol::detail {

inline constexpr std::size_t kMaxJsonDepth = 64;

// ` "name"` for a short plain field name, else nothing: names are not secret, but only those are
// quoted back in messages.
[[nodiscard]] std::string quoted_field_name(std::string_view name);

// "<what> is not valid JSON", or, when `text` is not UTF-8 at all (a client that sent Latin-1),
// "<what> is not valid UTF-8 (byte N): JSON text must be UTF-8", which says what to fix.
[[nodiscard]] std::string not_json_message(std::string_view text, std::string_view what);

// A JSON document that must be an object, parsed with a nesting bound of `max_depth`; duplicate keys
// are NOT refused (Boost.JSON keeps the last), unlike parse_json_strict. Errors carry `code` and say
// "<what> is not valid JSON" (see not_json_message) or "<what> must be a JSON object".
[[nodiscard]] Result<boost::json::object> parse_json_object(std::string_view text, std::size_t max_depth,
                                                           std::string_view what, Errc code);

// `what` names the document in messages ("request body"); errors carry `code`.
[[nodiscard]] Result<boost::json::value> parse_json_strict(std::string_view text, std::string_view what, Errc code);

}  // namespace rvenc::protocol::detail
