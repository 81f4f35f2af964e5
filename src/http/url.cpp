#include "rvenc/http/url.hpp"

#include <cctype>
#include <charconv>
#include <limits>

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

namespace rvenc::http {

namespace {
bool is_ipv6_literal(const std::string& host) { return host.find(':') != std::string::npos; }
}  // namespace

std::string Url::origin() const {
  const std::string shown_host = is_ipv6_literal(host) ? "[" + host + "]" : host;
  return scheme + "://" + shown_host + ":" + std::to_string(port);
}

std::string Url::host_header() const {
  const std::string shown_host = is_ipv6_literal(host) ? "[" + host + "]" : host;
  return port == (secure() ? kDefaultHttpsPort : kDefaultHttpPort) ? shown_host : shown_host + ":" + std::to_string(port);
}

std::string Url::join(std::string_view path) const {
  std::string base = target.substr(0, target.find('?'));
  while (!base.empty() && base.back() == '/') base.pop_back();
  if (!path.empty() && path.front() != '/') base += '/';
  base += path;
  return base.empty() ? "/" : base;
}

std::string Url::to_string() const { return origin() + target; }

Result<Url> parse_url(std::string_view text) {
  auto parsed = boost::urls::parse_uri(text);
  if (!parsed) return fail(Errc::invalid_request, "not a valid URL: '" + std::string(text) + "'");
  const boost::urls::url_view& view = *parsed;
  Url url;
  url.scheme = std::string(view.scheme());
  for (char& c : url.scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (url.scheme != "http" && url.scheme != "https") {
    return fail(Errc::invalid_request, "unsupported URL scheme '" + url.scheme + "' in '" + std::string(text) +
                                           "': only http:// and https:// are supported");
  }
  if (url.secure()) url.port = kDefaultHttpsPort;
  if (view.has_userinfo()) return fail(Errc::invalid_request, "URLs with user info are not supported");
  url.host = view.host_address();
  if (url.host.empty()) return fail(Errc::invalid_request, "URL has no host: '" + std::string(text) + "'");
  if (view.has_port()) {
    const std::string_view digits = view.port();
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size() || value == 0 ||
        value > std::numeric_limits<std::uint16_t>::max()) {
      return fail(Errc::invalid_request, "URL has an invalid port: '" + std::string(text) + "'");
    }
    url.port = static_cast<std::uint16_t>(value);
  }
  url.target = std::string(view.encoded_target());
  if (url.target.empty() || url.target.front() != '/') url.target.insert(0, "/");
  return url;
}

Result<std::pair<std::string, std::uint16_t>> parse_listen_address(std::string_view text) {
  std::string_view host;
  std::string_view port;
  if (text.starts_with('[')) {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return fail(Errc::invalid_request, "--listen must be HOST:PORT (IPv6 as [ADDR]:PORT)");
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos || text.find(':') != colon)
      return fail(Errc::invalid_request, "--listen must be HOST:PORT (IPv6 as [ADDR]:PORT)");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (host.empty() || port.empty() || ec != std::errc{} || end != port.data() + port.size() || value > 65535)
    return fail(Errc::invalid_request, "--listen must be HOST:PORT with a port from 0 to 65535");
  // Servers bind an address, not a name; "localhost" is the loopback address everyone means.
  if (host == "localhost") host = "127.0.0.1";
  return std::pair{std::string(host), static_cast<std::uint16_t>(value)};
}

}  // namespace rvenc::http
