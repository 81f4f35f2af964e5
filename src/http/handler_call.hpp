// What both server front ends (HTTP/1.1 in server.cpp, rvenc-mux in mux_server.cpp) do around a
// request: answer one that could not be read, and run the Handler on one that could.
//
// Design: this unit sits below both front ends, so neither needs the other's internals (before,
// mux_server.cpp used a function of server.cpp while server.cpp called into mux_server: a two-way
// tie). What differs between the two — how a stream cut by an exception is ended — stays with
// each front end.
#pragma once

#include <boost/beast/core/error.hpp>

#include "rvenc/http/server.hpp"

namespace rvenc::http::detail {

// The answer to a request that could not be read: 431 (headers over the limit), 413 (body over
// the limit), 400 (malformed), as OpenAI error JSON.
[[nodiscard]] Response read_error_response(const boost::beast::error_code& ec, const ServerOptions& options);

// Runs `handler`; an exception is logged (method and path only). When the handler answered
// nothing, a 500 goes out. True when the handler threw: a stream it had started must then look
// cut to the client (the caller ends it without its final chunk).
awaitable<bool> call_handler(const Handler& handler, Request& request, ResponseWriter& writer);

}  // namespace rvenc::http::detail
