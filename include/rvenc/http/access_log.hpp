// The one access-log line of every rvenc server (gateway, proxy): method, path, status, duration
// and the API key masked to its last 4 characters; never content, never a whole key.
//
// Design: log_access() formats and writes the line (spdlog, info level), so the gateway (which
// knows its request id and the key it checked) and with_access_log() (a Handler decorator for
// servers without such a context, the proxy) write the same line. The decorator learns the
// status by watching the ResponseWriter, without touching the handler's logic. A path is cut to
// kMaxLoggedPathChars and control characters become '?', so a request cannot forge a log line.
#pragma once

#include <chrono>
#include <cstddef>
#include <string_view>

#include "rvenc/http/server.hpp"
#include "rvenc/http/types.hpp"

namespace rvenc::http {

inline constexpr std::size_t kMaxLoggedPathChars = 200;

// "[<id> ]<METHOD> <path> <status> <ms>ms key <masked or ->".
void log_access(std::string_view request_id, const Request& request, unsigned status,
                std::chrono::steady_clock::duration elapsed, std::string_view masked_key);

// `inner` with one log_access() line per request after it answered (status 0 when it did not);
// the key is the request's Bearer token, masked.
[[nodiscard]] Handler with_access_log(Handler inner);

}  // namespace rvenc::http
