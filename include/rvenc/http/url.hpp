// Parsing of the base URLs rvenc talks to ("http://127.0.0.1:8080/v1").
//
// Design: http:// and https:// (TLS, see tls.hpp; port 443 by default); any other scheme is an
// invalid_request error that says so. Parsing uses Boost.URL; the result is what the HttpClient needs
// to connect: scheme, host, port, target.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <string_view>

#include "rvenc/common/error.hpp"

namespace rvenc::http {

inline constexpr std::uint16_t kDefaultHttpPort = 80;
inline constexpr std::uint16_t kDefaultHttpsPort = 443;

struct Url {
  std::string scheme = "http";  // "http" or "https"
  std::string host;  // without brackets for IPv6 literals
  std::uint16_t port = kDefaultHttpPort;
  std::string target = "/";  // path and query, never empty

  // True for https:// (the connection runs over TLS).
  [[nodiscard]] bool secure() const noexcept { return scheme == "https"; }
  // "http://host:port" (brackets around IPv6 literals).
  [[nodiscard]] std::string origin() const;
  // The Host header value: "host:port" (just "host" for the scheme's default port).
  [[nodiscard]] std::string host_header() const;
  // This URL's path joined with `path` ("http://h/v1" + "/chat/completions" -> "/v1/chat/completions").
  [[nodiscard]] std::string join(std::string_view path) const;
  // origin() + target.
  [[nodiscard]] std::string to_string() const;
};

// Parses "http[s]://host[:port][/path][?query]". Errors (invalid_request): not a URL, a scheme other
// than http and https (the message says which are supported), missing host, bad port, user info.
[[nodiscard]] Result<Url> parse_url(std::string_view text);

// A --listen value: "HOST:PORT" / "[V6]:PORT" -> (host, port); invalid_request naming the problem.
[[nodiscard]] Result<std::pair<std::string, std::uint16_t>> parse_listen_address(std::string_view text);

}  // namespace rvenc::http
