// The browser chat page of `rvenc proxy` (issue 22): GET /chat serves a static page that runs the
// TypeScript SDK (sdk/js) in the browser. The browser itself attests the enclave, encrypts, talks to
// the gateway directly (the gateway's --cors-origin must name the proxy's origin) and decrypts; the
// proxy only hands out files and the public settings the page needs (/chat/config.json: gateway URL,
// platform public key, measurement, protocol version). No API key and no plaintext pass the proxy.
//
// Design: the page is built by the project (esbuild, `npm run build` in sdk/js, which
// scripts/setup.sh runs) into a directory (--chat-dir / RVENC_CHAT_DIR; the default is compiled in
// from CMake: the source tree's sdk/js/dist/chat). Only a fixed list of file names is served, read
// at each request (a rebuild needs no restart) and bounded in size, so no request path ever reaches
// the file system. A missing build answers 404 naming the command that builds it. Every answer
// carries a Content-Security-Policy that lets the page load only its own files, connect only to the
// proxy and the gateway, and run WebAssembly (libsodium), so an injected script has nowhere to send
// a key.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "rvenc/crypto/crypto.hpp"
#include "rvenc/http/server.hpp"
#include "rvenc/protocol/envelope.hpp"

namespace rvenc::proxy {

// The built page of the source tree (CMake's RVENC_DEFAULT_CHAT_DIR), "" when not compiled in.
[[nodiscard]] std::filesystem::path default_chat_dir();

struct ChatPageOptions {
  std::filesystem::path dir = default_chat_dir();
  std::string gateway_url;
  std::optional<crypto::Ed25519PublicKey> platform_public_key;
  std::optional<std::vector<std::uint8_t>> measurement;
  protocol::Version protocol_version = protocol::Version::v3;
};

class ChatPage {
 public:
  explicit ChatPage(ChatPageOptions options) : options_(std::move(options)) {}

  // GET /chat, /chat/ (the page), /chat/<each file of kFiles>, /chat/config.json.
  void add_routes(http::Router& router) const;

  // The answer for one of the page's files ("index.html", "chat.js", ...): 404 when not built.
  [[nodiscard]] http::Response file(const http::Request& request, const std::string& name) const;
  // {"gatewayUrl", "platformPublicKey", "measurement", "protocolVersion"}
  [[nodiscard]] http::Response config(const http::Request& request) const;

 private:
  http::awaitable<void> serve(http::Request& request, http::ResponseWriter& writer, std::string name) const;

  ChatPageOptions options_;
};

}  // namespace rvenc::proxy
