#include "rvenc/gateway/cors.hpp"

#include <algorithm>
#include <cctype>

#include "rvenc/gateway/middleware.hpp"

namespace rvenc::gateway {
namespace {

namespace beast_http = http::beast::http;

constexpr std::string_view kAllowMethods = "GET, POST, OPTIONS";
constexpr std::string_view kAllowHeaders = "authorization, content-type";
// What the SDK reads of an answer besides its body (rate limits, request id).
constexpr std::string_view kExposeHeaders =
    "retry-after, x-request-id, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, "
    "x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-requests, x-ratelimit-reset-tokens";
constexpr std::string_view kPreflightMaxAge = "600";
constexpr std::size_t kMaxOriginBytes = 256;

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  return text;
}

// "http(s)://host[:port]" with nothing after the authority.
bool is_origin(std::string_view origin) {
  if (origin.size() > kMaxOriginBytes) return false;
  std::string_view rest;
  if (origin.starts_with("http://")) rest = origin.substr(7);
  else if (origin.starts_with("https://")) rest = origin.substr(8);
  else return false;
  if (rest.empty() || rest.front() == ':') return false;
  return std::all_of(rest.begin(), rest.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']';
  });
}

}  // namespace

bool CorsPolicy::allows(std::string_view origin) const noexcept {
  return std::any_of(origins.begin(), origins.end(), [&](const std::string& o) {
    return o.size() == origin.size() &&
           std::equal(o.begin(), o.end(), origin.begin(), [](char a, char b) {
             return a == std::tolower(static_cast<unsigned char>(b));
           });
  });
}

Result<CorsPolicy> parse_cors_origins(const std::vector<std::string>& values) {
  CorsPolicy policy;
  for (const std::string& value : values) {
    std::string_view rest = value;
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      const std::string_view item = trim(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      if (item.empty()) continue;
      const std::string origin = lower(item);
      if (!is_origin(origin))
        return fail(Errc::invalid_request, "--cors-origin \"" + std::string(item.substr(0, kMaxOriginBytes)) +
                                               "\" is not an origin: give scheme://host[:port], e.g. "
                                               "http://127.0.0.1:3000 (no \"*\", no path)");
      if (!policy.allows(origin)) policy.origins.push_back(origin);
    }
  }
  return policy;
}

bool is_cors_path(std::string_view path) noexcept {
  return path == kChatPath || path == kModelsPath || path == kAttestationPath;
}

bool is_cors_preflight(const http::Request& request) noexcept {
  return request.method() == beast_http::verb::options &&
         request.base().find(beast_http::field::origin) != request.base().end() &&
         is_cors_path(http::target_path(request));
}

void add_cors_headers(beast_http::fields& fields, std::string_view origin) {
  fields.set(beast_http::field::access_control_allow_origin, origin);
  fields.set(beast_http::field::access_control_expose_headers, kExposeHeaders);
  fields.set(beast_http::field::vary, "Origin");
}

http::Response cors_preflight(const http::Request& request, const CorsPolicy& policy) {
  const std::string_view origin = request[beast_http::field::origin];
  if (!policy.allows(origin)) {
    auto response = http::error_response(
        request, Error{Errc::invalid_request, "this origin is not allowed to call the gateway (the gateway's "
                                              "--cors-origin list does not name it)"});
    response.result(beast_http::status::forbidden);
    response.set(beast_http::field::vary, "Origin");
    return response;
  }
  http::Response response{beast_http::status::no_content, request.version()};
  add_cors_headers(response, origin);
  response.set(beast_http::field::access_control_allow_methods, kAllowMethods);
  response.set(beast_http::field::access_control_allow_headers, kAllowHeaders);
  response.set(beast_http::field::access_control_max_age, kPreflightMaxAge);
  response.keep_alive(request.keep_alive());
  return response;
}

http::awaitable<void> CorsWriter::send(http::Response response) {
  add_cors_headers(response, origin_);
  return inner_.send(std::move(response));
}

http::awaitable<bool> CorsWriter::begin_stream(http::ResponseHeader header) {
  add_cors_headers(header, origin_);
  return inner_.begin_stream(std::move(header));
}

}  // namespace rvenc::gateway
