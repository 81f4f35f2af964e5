// What the HTTP/1.1 client and the multiplexed client share to reach a server.
#pragma once

#include <chrono>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "rvenc/common/error.hpp"
#include "rvenc/http/types.hpp"
#include "rvenc/http/url.hpp"

namespace rvenc::http::detail {

// Fills in what a request to `server` needs: the target (when empty), Host, User-Agent and
// Content-Length.
void prepare_request(const Url& server, Request& request);

// The addresses of `server`'s host, within `limit` (upstream_timeout, upstream_error).
awaitable<Result<std::vector<boost::asio::ip::tcp::endpoint>>> resolve(const Url& server,
                                                                      std::chrono::steady_clock::duration limit);

}  // namespace rvenc::http::detail
