// Reading and showing credentials: the one parser of `Authorization: Bearer <token>` every rvenc
// service uses (gateway API keys and admin token, the proxy's API keys, the enclave's gateway
// token), and the one masker for anything secret that a log line or an error must name.
//
// Design: RFC 6750 section 2.1 (`credentials = "Bearer" 1*SP b64token`, the token68 alphabet of
// RFC 7235): the scheme is case-insensitive, one or more spaces (never a tab) separate it from
// the token, the token is ALPHA / DIGIT / "-._~+/" followed by "=" padding only. Leading and
// trailing optional whitespace belong to the HTTP field, not to the value (RFC 9110 5.5) and are
// ignored. Anything else is "no token" (the caller answers 401); the parser never says which
// byte was wrong, so nothing of a malformed secret reaches a message. Pure functions: no
// allocation, no logging.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace rvenc {

// The token of an Authorization header value, or nullopt when it is not a well-formed Bearer
// credential. The view points into `authorization`.
[[nodiscard]] std::optional<std::string_view> bearer_token(std::string_view authorization) noexcept;

// How many trailing characters of a secret a log line shows.
inline constexpr std::size_t kMaskedChars = 4;

// "…" followed by the last kMaskedChars characters ("…" alone for a shorter value).
[[nodiscard]] std::string mask_secret(std::string_view secret);

}  // namespace rvenc
