// Private helper of rvenc_core: strict JSON parsing that refuses duplicate object keys
// (Boost.JSON 1.81 silently keeps one of them), for wire documents read from untrusted peers.
#pragma once

#include <string_view>

#include <boost/json/value.hpp>

#include "rvenc/common/error.hpp"

namespace rvenc::protocol::detail {

// `what` names the document in messages ("request body"); errors carry `code`.
[[nodiscard]] Result<boost::json::value> parse_json_strict(std::string_view text, std::string_view what, Errc code);

}  // namespace rvenc::protocol::detail
