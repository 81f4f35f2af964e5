// Private to rvenc_gateway: how the gateway passes an enclave's plain answer on (gateway.cpp,
// discovery.cpp).
#pragma once

#include <string>

#include "rvenc/common/error.hpp"
#include "rvenc/http/types.hpp"

namespace rvenc::gateway {

// A transport failure talking to an enclave before any event, as the client sees it: 504
// upstream_timeout, else 503 enclave_unavailable (PROTOCOL.md sections 5 and 7).
[[nodiscard]] Error upstream_failure(const Error& error);
// Copies what a client needs from an enclave's complete (non-stream) answer: status, body,
// Content-Type, Retry-After, Cache-Control.
[[nodiscard]] http::Response pass_through(const http::Request& request, const http::ResponseHeader& header,
                                          std::string body);

}  // namespace rvenc::gateway
