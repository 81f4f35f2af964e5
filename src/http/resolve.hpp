// What the HTTP/1.1 client and the multiplexed client share to reach a server.
#pragma once

#include <chrono>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/tcp_stream.hpp>

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

// Resolves `server` and connects `stream` to it, Nagle off, within `limit` (the stream's expiry is
// left set to it); errors name the server and `connect_timeout`, the configured limit.
awaitable<Result<boost::asio::ip::tcp::endpoint>> connect(boost::beast::tcp_stream& stream, const Url& server,
                                                         std::chrono::steady_clock::duration limit,
                                                         std::chrono::milliseconds connect_timeout);

}  // namespace rvenc::http::detail
