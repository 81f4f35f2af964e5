// rvenc-mux/1: many request/response exchanges over one TCP connection, for the gateway ->
// enclave hop (docs/mux.md has the wire format).
//
// Why: over HTTP/1.1 every stream has a connection of its own, so each encrypted chunk costs the
// enclave a send and the gateway a receive on that stream's socket, a few hundred bytes each. On
// one multiplexed connection, the frames of all streams that are ready together go out in one
// send and come in with one receive: the per-chunk system calls (and the loopback or network
// stack work behind each) are shared by every stream. Clients and anything else that speaks
// HTTP/1.1 to the enclave are unaffected.
//
// Design: after an HTTP/1.1 upgrade (`GET /rvenc/mux`, `Upgrade: rvenc-mux/1`, answered with
// 101), both directions carry frames: a 9-byte header (payload length and stream id, 32-bit big
// endian, and a type byte) and a payload. A request is one REQUEST frame holding the HTTP/1.1
// request message; its answer is a HEAD frame (the HTTP/1.1 response head), DATA frames (the body
// bytes) and END; RESET aborts a stream from either side. Each stream may have kInitialWindow body
// bytes in flight; the client grants more with WINDOW frames as its reader consumes them, so a
// slow reader holds back only its own stream, never the connection.
//
// MuxClient is the client side, with the interface of HttpClient::open(); Server takes upgrades when
// ServerOptions::accept_mux is set and runs the same Handler for each multiplexed request.
// For an https:// server the connection runs over TLS (the fallback HttpClient's TLS context: same
// trust, SNI and host-name check; a failed handshake fails its streams with tls_error), the
// upgrade and every frame inside it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "rvenc/common/error.hpp"
#include "rvenc/http/client.hpp"
#include "rvenc/http/mux_frame.hpp"
#include "rvenc/http/types.hpp"
#include "rvenc/http/url.hpp"

namespace rvenc::http {

struct MuxClientOptions {
  // Requests (head and body) larger than this go over HTTP/1.1 instead (at most
  // mux::kMaxRequestFrame); the default matches the server's (16 KiB of head, 8 MiB of body).
  static constexpr std::size_t kDefaultMaxRequestBytes = 16 * 1024 + 8 * 1024 * 1024;
  // How long a server that refused the upgrade is served over HTTP/1.1 before asking again.
  static constexpr std::chrono::milliseconds kDefaultRefusalMemory{60'000};

  std::size_t max_request_bytes = kDefaultMaxRequestBytes;
  std::size_t header_limit = HttpClientOptions::kDefaultHeaderLimit;  // of a response head
  std::chrono::milliseconds refusal_memory = kDefaultRefusalMemory;
  // Sent with the upgrade request ("Bearer ..."), when the server wants one.
  std::string authorization;
};

class MuxClient {
 public:
  // `fallback` carries what cannot go over a multiplexed connection: requests to servers that
  // refused the upgrade (remembered for refusal_memory) and requests over max_request_bytes. It
  // must outlive the MuxClient.
  explicit MuxClient(HttpClient& fallback, MuxClientOptions options = {});
  ~MuxClient();  // closes the connections: streams still open fail with upstream_error
  MuxClient(const MuxClient&) = delete;
  MuxClient& operator=(const MuxClient&) = delete;

  // HttpClient::open() over a multiplexed connection to `server` (one per server and io_context,
  // opened on first use; more when one has kMaxStreams open). The same errors: upstream_timeout
  // (connect, Timeouts::idle, Timeouts::total), upstream_error (refused, reset, malformed).
  // ResponseStream::cancel() resets the stream on the server (its handler sees the client gone).
  awaitable<Result<std::unique_ptr<ResponseStream>>> open(Url server, Request request, Timeouts timeouts = {});

  // Open multiplexed connections (tests, metrics).
  [[nodiscard]] std::size_t connections() const;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace rvenc::http
