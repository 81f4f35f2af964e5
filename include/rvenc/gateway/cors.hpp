// Cross-origin access to the gateway for browser clients (issue 22): the chat page served by
// `rvenc proxy` at /chat runs the TypeScript SDK in the browser and talks to the gateway directly,
// so the gateway must answer CORS preflights and label its answers for the page's origin.
//
// Design: an allow-list of exact origins (`--cors-origin`, repeatable or a comma list; no "*"),
// empty by default (then no CORS header is ever sent and a browser page of another origin cannot
// read any answer). Only the browser routes (chat, models, attestation) are open to it. A preflight
// (OPTIONS with Origin and Access-Control-Request-Method) from a listed origin gets 204 with the
// methods and the two request headers the SDK sends (Authorization, Content-Type); from any other
// origin 403 with an OpenAI error naming the origin is not allowed. Actual answers (complete or
// streamed, success or error) gain Access-Control-Allow-Origin through CorsWriter, which wraps the
// request's writer, so no handler needs to know about CORS. No credentials mode: the API key travels
// in the Authorization header the page sets, never in a cookie, so Allow-Credentials is never sent.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "rvenc/common/error.hpp"
#include "rvenc/http/server.hpp"
#include "rvenc/http/types.hpp"

namespace rvenc::gateway {

struct CorsPolicy {
  std::vector<std::string> origins;  // exact "scheme://host[:port]", lower-case

  [[nodiscard]] bool enabled() const noexcept { return !origins.empty(); }
  [[nodiscard]] bool allows(std::string_view origin) const noexcept;
};

// The --cors-origin values (each may be a comma list) as a policy: invalid_request naming the value
// that is not an http(s) origin ("*", a path, a missing host).
[[nodiscard]] Result<CorsPolicy> parse_cors_origins(const std::vector<std::string>& values);

// True for the paths a browser page may call cross-origin: chat, models, attestation.
[[nodiscard]] bool is_cors_path(std::string_view path) noexcept;

// True when `request` is a CORS preflight (OPTIONS with Origin) for a CORS path.
[[nodiscard]] bool is_cors_preflight(const http::Request& request) noexcept;

// The answer to a preflight: 204 with the allow headers for an allowed origin, else 403.
[[nodiscard]] http::Response cors_preflight(const http::Request& request, const CorsPolicy& policy);

// Adds Access-Control-Allow-Origin (and Expose-Headers, Vary) for `origin` to `fields`.
void add_cors_headers(http::beast::http::fields& fields, std::string_view origin);

// A writer adding the CORS headers of one allowed origin to whatever the handler answers.
class CorsWriter final : public http::ResponseWriter {
 public:
  CorsWriter(http::ResponseWriter& inner, std::string origin) : inner_(inner), origin_(std::move(origin)) {}

  http::awaitable<void> send(http::Response response) override;
  http::awaitable<bool> begin_stream(http::ResponseHeader header) override;
  http::awaitable<bool> write(std::string_view bytes) override { return inner_.write(bytes); }
  [[nodiscard]] bool write_now(std::string_view bytes) override { return inner_.write_now(bytes); }
  http::awaitable<void> end_stream(std::string_view last_bytes = {}) override { return inner_.end_stream(last_bytes); }
  [[nodiscard]] bool client_gone() const override { return inner_.client_gone(); }
  [[nodiscard]] bool started() const override { return inner_.started(); }
  [[nodiscard]] std::optional<http::IpAddress> client_address() const override { return inner_.client_address(); }
  void send_trailer(std::string_view payload) override { inner_.send_trailer(payload); }

 private:
  http::ResponseWriter& inner_;
  std::string origin_;
};

}  // namespace rvenc::gateway
