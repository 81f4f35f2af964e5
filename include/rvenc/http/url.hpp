// Parsing of the base URLs rvenc talks to ("http://127.0.0.1:8080/v1").
//
// Design: only plain http is supported (TLS terminates in front of rvenc, and the payload is
// end-to-end encrypted anyway); an https:// or other scheme is an invalid_request error that says
// so. Parsing uses Boost.URL; the result is what the Client needs to connect: host, port, target.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <string_view>

#include "rvenc/common/error.hpp"

namespace rvenc::http {

inline constexpr std::uint16_t kDefaultHttpPort = 80;

struct Url {
  std::string scheme = "http";
  std::string host;  // without brackets for IPv6 literals
  std::uint16_t port = kDefaultHttpPort;
  std::string target = "/";  // path and query, never empty

  // "http://host:port" (brackets around IPv6 literals).
  [[nodiscard]] std::string origin() const;
  // The Host header value: "host:port" (just "host" for port 80).
  [[nodiscard]] std::string host_header() const;
  // This URL's path joined with `path` ("http://h/v1" + "/chat/completions" -> "/v1/chat/completions").
  [[nodiscard]] std::string join(std::string_view path) const;
  // origin() + target.
  [[nodiscard]] std::string to_string() const;
};

// Parses "http://host[:port][/path][?query]". Errors (invalid_request): not a URL, a scheme other
// than http (the message says only http is supported), missing host, bad port, user info.
[[nodiscard]] Result<Url> parse_url(std::string_view text);

// A --listen value: "HOST:PORT" / "[V6]:PORT" -> (host, port); invalid_request naming the problem.
[[nodiscard]] Result<std::pair<std::string, std::uint16_t>> parse_listen_address(std::string_view text);

}  // namespace rvenc::http
