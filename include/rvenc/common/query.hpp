// A URL query string (`a=1&b=two`) as its parameters: the one splitter and the one %XX decoder for
// every query the servers read (the enclave's and the gateway's attestation routes).
//
// Design: pure functions on string_views; split_query does not decode (a caller decodes only the
// values it uses, and a `challenge` is hex that needs none). Errors name the parameter, never echo
// its value.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "rvenc/common/error.hpp"

namespace rvenc {

struct QueryParameter {
  std::string_view key;
  std::string_view value;  // empty when the pair has no '='
};

// The `&`-separated pairs in order, as they stand (empty pairs skipped).
[[nodiscard]] std::vector<QueryParameter> split_query(std::string_view query);

// A query value with its %XX escapes decoded ("+" stays "+"); invalid_request naming `parameter`
// when an escape is malformed.
[[nodiscard]] Result<std::string> percent_decode(std::string_view text, std::string_view parameter);

}  // namespace rvenc
