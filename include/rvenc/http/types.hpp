// The HTTP vocabulary every rvenc module shares: Beast string-body messages, the coroutine
// type, and the helpers that build JSON and OpenAI error responses from rvenc::Error.
//
// Design: handlers build a complete `Response` (or stream through a ResponseWriter, see
// server.hpp); errors never travel as exceptions across this layer, they are rvenc::Error
// values turned into OpenAI error JSON here, with the status PROTOCOL.md section 5 gives.
// Asio and Beast are compiled separately (BOOST_ASIO_SEPARATE_COMPILATION): any target that
// includes an Asio/Beast header must link rvenc::http.
#pragma once

#include <string>
#include <string_view>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "rvenc/common/error.hpp"
#include "rvenc/http/awaitable.hpp"

namespace rvenc::http {

namespace beast = boost::beast;

using Request = beast::http::request<beast::http::string_body>;
using Response = beast::http::response<beast::http::string_body>;
using ResponseHeader = beast::http::response_header<>;
using Fields = beast::http::fields;
using Verb = beast::http::verb;

inline constexpr std::string_view kJsonContentType = "application/json";
inline constexpr std::string_view kEventStreamContentType = "text/event-stream";
inline constexpr unsigned kHttp11 = 11;

// A response with `body` as application/json, Content-Length set, HTTP/1.1, keep-alive on.
[[nodiscard]] Response json_response(unsigned status, std::string body);
// The OpenAI error response for `error`: status rvenc::http_status(error.code), body
// rvenc::openai_error_body(error, source), Content-Type application/json.
[[nodiscard]] Response error_response(const Error& error, std::string_view source = {});
// Same, answering `request`: copies its HTTP version and keep-alive wish.
[[nodiscard]] Response error_response(const Request& request, const Error& error, std::string_view source = {});
// A streaming response head (200, text/event-stream, no-cache) ready for ResponseWriter::begin_stream.
[[nodiscard]] ResponseHeader event_stream_header(unsigned status = 200);

// The request target without its query string ("/v1/models?x=1" -> "/v1/models").
[[nodiscard]] std::string_view target_path(const Request& request) noexcept;
// The query string without '?' ("" when absent).
[[nodiscard]] std::string_view target_query(const Request& request) noexcept;

}  // namespace rvenc::http
