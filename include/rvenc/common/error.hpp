// Errors shared by every rvenc module: the PROTOCOL.md error codes, their HTTP status and
// OpenAI error type, and the one helper that turns an error into an OpenAI error body.
#pragma once

#include <expected>
#include <string>
#include <string_view>

namespace rvenc {

enum class Errc {
  // PROTOCOL.md section 5: errors sent as plain HTTP errors before the first event.
  invalid_request,
  unsupported_version,
  decryption_failed,
  replayed_request,
  invalid_inference,
  invalid_api_key,
  key_revoked,
  test_key_not_allowed,
  unknown_key_id,
  model_not_found,
  not_found,
  method_not_allowed,
  request_too_large,
  rate_limit_exceeded,
  replay_quota_exceeded,
  upstream_error,
  enclave_busy,
  enclave_unavailable,
  overloaded,
  upstream_timeout,
  internal_error,
  // Client-side stream errors (PROTOCOL.md section 3).
  tampered_stream,
  truncated_stream,
  event_too_large,
  timeout,
  attestation_failed,
  transport_error,
  tls_error,
};

struct Error {
  Errc code = Errc::internal_error;
  std::string message;
  // Set when the error came from a server's HTTP answer (client side); 0 otherwise.
  int http_status = 0;

  Error() = default;
  Error(Errc c, std::string msg, int status = 0) : code(c), message(std::move(msg)), http_status(status) {}

  // "invalid_request: message" for logs and exceptions (never contains secrets by construction).
  [[nodiscard]] std::string to_string() const;
};

template <class T>
using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

inline std::unexpected<Error> fail(Errc code, std::string message) {
  return std::unexpected<Error>(Error{code, std::move(message)});
}

// The wire name of a code ("invalid_request", "rate_limit_exceeded", ...).
[[nodiscard]] std::string_view code_name(Errc code) noexcept;
// Parses a wire name back; unknown names give internal_error.
[[nodiscard]] Errc code_from_name(std::string_view name) noexcept;
// The HTTP status PROTOCOL.md gives the code (400, 401, 403, 404, 413, 429, 502, 503, 504, 500;
// not_found 404, method_not_allowed 405). The client-side stream errors, which never travel on
// the wire from a server, map to 502 (timeout: 504) for a local proxy that must report them.
[[nodiscard]] int http_status(Errc code) noexcept;
// The OpenAI error "type" for the code, by status: 400/405/413 invalid_request_error,
// 401 authentication_error, 403 permission_error, 404 not_found_error, 429 rate_limit_error,
// 500 server_error, other 5xx api_error.
[[nodiscard]] std::string_view error_type(Errc code) noexcept;
// The same by HTTP status, for errors that arrive as a status from elsewhere.
[[nodiscard]] std::string_view error_type_for_status(int status) noexcept;

// {"error":{"message":...,"type":...,"param":null,"code":...}}; `source` adds "source" when not empty.
[[nodiscard]] std::string openai_error_body(const Error& error, std::string_view source = {});

}  // namespace rvenc
