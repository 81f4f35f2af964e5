#include "handler_call.hpp"

#include <exception>
#include <string>

#include <boost/beast/http/error.hpp>
#include <spdlog/spdlog.h>

namespace rvenc::http::detail {

namespace bhttp = boost::beast::http;

Response read_error_response(const boost::beast::error_code& ec, const ServerOptions& options) {
  if (ec == bhttp::error::header_limit) {
    Response response = error_response(
        Error{Errc::request_too_large, "request headers exceed " + std::to_string(options.header_limit) + " bytes"});
    response.result(bhttp::status::request_header_fields_too_large);
    return response;
  }
  if (ec == bhttp::error::body_limit) {
    return error_response(
        Error{Errc::request_too_large, "request body exceeds " + std::to_string(options.body_limit) + " bytes"});
  }
  return error_response(Error{Errc::invalid_request, "malformed HTTP request: " + ec.message()});
}

awaitable<bool> call_handler(const Handler& handler, Request& request, ResponseWriter& writer) {
  bool failed = false;
  try {
    co_await handler(request, writer);
  } catch (const std::exception& e) {
    spdlog::error("http: handler for {} {} failed: {}", std::string(request.method_string()),
                  std::string(target_path(request)), e.what());
    failed = true;
  }
  if (!writer.started()) {
    co_await writer.send(error_response(
        request, Error{Errc::internal_error, failed ? "internal error" : "the handler produced no response"}));
  }
  co_return failed;
}

}  // namespace rvenc::http::detail
