#include "rvenc/http/types.hpp"

namespace rvenc::http {

Response json_response(unsigned status, std::string body) {
  Response response{static_cast<beast::http::status>(status), kHttp11};
  response.set(beast::http::field::content_type, kJsonContentType);
  response.keep_alive(true);
  response.body() = std::move(body);
  response.prepare_payload();
  return response;
}

Response error_response(const Error& error, std::string_view source) {
  return json_response(static_cast<unsigned>(rvenc::http_status(error.code)), openai_error_body(error, source));
}

Response error_response(const Request& request, const Error& error, std::string_view source) {
  Response response = error_response(error, source);
  response.version(request.version());
  response.keep_alive(request.keep_alive());
  return response;
}

ResponseHeader event_stream_header(unsigned status) {
  ResponseHeader header;
  header.version(kHttp11);
  header.result(status);
  header.set(beast::http::field::content_type, kEventStreamContentType);
  header.set(beast::http::field::cache_control, "no-cache");
  return header;
}

std::string_view target_path(const Request& request) noexcept {
  std::string_view target{request.target().data(), request.target().size()};
  return target.substr(0, target.find('?'));
}

std::string_view target_query(const Request& request) noexcept {
  std::string_view target{request.target().data(), request.target().size()};
  const auto mark = target.find('?');
  return mark == std::string_view::npos ? std::string_view{} : target.substr(mark + 1);
}

}  // namespace rvenc::http
