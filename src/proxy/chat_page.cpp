#include "rvenc/proxy/chat_page.hpp"

#include <array>
#include <fstream>
#include <string_view>

#include <boost/json/serialize.hpp>

#include "rvenc/common/hex.hpp"
#include "rvenc/http/url.hpp"

namespace rvenc::proxy {
namespace {

namespace bhttp = boost::beast::http;

// Larger than any file the build makes (the bundle is a few hundred KiB); bounds what is read.
constexpr std::uintmax_t kMaxFileBytes = 8u * 1024 * 1024;

struct PageFile {
  std::string_view name;
  std::string_view content_type;
};
// libsodium.wasm: libsodium's WebAssembly, which the bundle fetches (and checks against the SHA-256
// it was built with) instead of carrying it as base64; hardware.js: the SEV-SNP verifier, imported
// by chat.js only for a hardware enclave (sdk/js/scripts/bundle.mjs).
constexpr std::array<PageFile, 5> kFiles{{{"index.html", "text/html; charset=utf-8"},
                                          {"chat.js", "text/javascript; charset=utf-8"},
                                          {"chat.css", "text/css; charset=utf-8"},
                                          {"libsodium.wasm", "application/wasm"},
                                          {"hardware.js", "text/javascript; charset=utf-8"}}};

std::string content_type_of(std::string_view name) {
  for (const auto& f : kFiles)
    if (f.name == name) return std::string(f.content_type);
  return "application/octet-stream";
}

// Only the proxy's own files, connections to itself and the gateway; WebAssembly for libsodium.
std::string content_security_policy(const std::string& gateway_url) {
  std::string connect = "'self'";
  if (auto url = http::parse_url(gateway_url)) connect += " " + url->origin();
  return "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; "
         "connect-src " + connect + "; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
}

void secure_headers(http::Response& response, const std::string& gateway_url) {
  response.set(bhttp::field::cache_control, "no-store");
  response.set("Content-Security-Policy", content_security_policy(gateway_url));
  response.set("X-Content-Type-Options", "nosniff");
  response.set("Referrer-Policy", "no-referrer");
}

}  // namespace

std::filesystem::path default_chat_dir() {
#ifdef RVENC_DEFAULT_CHAT_DIR
  return std::filesystem::path(RVENC_DEFAULT_CHAT_DIR);
#else
  return {};
#endif
}

void ChatPage::add_routes(http::Router& router) const {
  const auto route = [this](std::string name) {
    return [this, name](http::Request& r, http::ResponseWriter& w) { return serve(r, w, name); };
  };
  router.get("/chat", route("index.html"));
  router.get("/chat/", route("index.html"));
  for (const auto& f : kFiles) router.get("/chat/" + std::string(f.name), route(std::string(f.name)));
  router.get("/chat/config.json", route("config.json"));
}

http::awaitable<void> ChatPage::serve(http::Request& request, http::ResponseWriter& writer, std::string name) const {
  // A named local, not a conditional's temporary inside co_await (GCC 12 frees that one twice).
  http::Response response = name == "config.json" ? config(request) : file(request, name);
  co_await writer.send(std::move(response));
}

http::Response ChatPage::file(const http::Request& request, const std::string& name) const {
  const std::filesystem::path path = options_.dir / name;
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (options_.dir.empty() || ec || !std::filesystem::is_regular_file(path, ec)) {
    return http::error_response(
        request, Error{Errc::not_found, "chat page not built: run `npm ci && npm run build` in sdk/js (or "
                                        "./scripts/setup.sh), or point --chat-dir / RVENC_CHAT_DIR at a built "
                                        "dist/chat directory (" + name + " is missing there)"});
  }
  if (size > kMaxFileBytes)
    return http::error_response(request, Error{Errc::internal_error, "chat page file " + name + " is too large"});
  std::ifstream in(path, std::ios::binary);
  std::string body(static_cast<std::size_t>(size), '\0');
  if (!in.read(body.data(), static_cast<std::streamsize>(body.size())))
    return http::error_response(request, Error{Errc::internal_error, "cannot read chat page file " + name});
  http::Response response{bhttp::status::ok, request.version(), std::move(body)};
  response.set(bhttp::field::content_type, content_type_of(name));
  secure_headers(response, options_.gateway_url);
  response.keep_alive(request.keep_alive());
  response.prepare_payload();
  return response;
}

http::Response ChatPage::config(const http::Request& request) const {
  boost::json::object body{
      {"gatewayUrl", options_.gateway_url},
      {"platformPublicKey",
       options_.platform_public_key ? boost::json::value(to_hex(*options_.platform_public_key)) : nullptr},
      {"measurement", options_.measurement ? boost::json::value(to_hex(*options_.measurement)) : nullptr},
      {"protocolVersion", static_cast<int>(options_.protocol_version)}};
  http::Response response = http::json_response(200, boost::json::serialize(body));
  response.version(request.version());
  secure_headers(response, options_.gateway_url);
  response.keep_alive(request.keep_alive());
  return response;
}

}  // namespace rvenc::proxy
