// Private helper of rvenc_core: the field checks the request validators share (chat.cpp,
// endpoint.cpp, responses_request.cpp, responses_events.cpp), so that chat and legacy completions
// bound sampling options the same way.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "rvenc/common/error.hpp"
#include "rvenc/protocol/chat.hpp"

namespace rvenc::protocol::detail {

// invalid_inference with `message`.
[[nodiscard]] std::unexpected<Error> invalid(std::string message);
// Optional fields: absent and null are the same (OpenAI SDKs send nulls for unset options).
[[nodiscard]] const boost::json::value* optional_field(const boost::json::object& obj, std::string_view name);
// The string member `name`, or "" when it is absent or not a string.
[[nodiscard]] std::string string_or_empty(const boost::json::object& obj, std::string_view name);
[[nodiscard]] std::optional<double> as_number(const boost::json::value& v);
[[nodiscard]] std::optional<std::int64_t> as_integer(const boost::json::value& v);
// stream, max_tokens / max_completion_tokens, temperature, top_p, n (must be 1) and stop, into
// `request`; invalid_inference naming the first that is wrong.
[[nodiscard]] Status check_sampling(const boost::json::object& body, ChatRequest& request);

}  // namespace rvenc::protocol::detail
