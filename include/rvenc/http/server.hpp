// The HTTP/1.1 server every rvenc service runs on (enclave, gateway, proxy, demo engine).
//
// Design (after Beast's advanced_server_flex / coroutine examples): one coroutine per connection
// runs a read -> handle -> write loop, with keep-alive and pipelining, a deadline on reading each
// request head/body (slow-loris protection), an idle timeout between keep-alive requests, header
// and body limits and a connection cap. Every protocol-level failure is answered with OpenAI error
// JSON (400 malformed, 431 header too large, 413 body too large, 503 overloaded) and never crashes
// the server. A new connection must send its first byte within first_byte_timeout, and every
// request head must be complete within header_timeout of its first byte, so connections that send
// nothing (or a byte now and then) cannot hold the connection cap; an optional per-address cap
// keeps one source from taking all of it. Handlers learn the client address of each request from
// their ResponseWriter (address.hpp: the TCP peer, or X-Forwarded-For behind trusted proxies).
//
// Handlers are coroutines `awaitable<void>(Request&, ResponseWriter&)`: they either send() one
// complete Response or stream with begin_stream()/write()/end_stream() (chunked transfer encoding,
// each write() goes to the socket at once). A handler that returns without answering gets a 500;
// one that throws gets a 500 (or, mid-stream, the connection is closed so the client sees a
// truncated stream). RecordingWriter lets tests run handler logic without sockets.
//
// With ServerOptions::tls the same listener speaks https (HTTP/1.1 and rvenc-mux inside TLS): the
// handshake must finish within tls_handshake_timeout of accept, a plain-HTTP request on the port
// gets a plain 400 saying so (then the connection closes), and SIGHUP reloads the certificate and
// key for new handshakes while open connections go on with the pair they started with.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/any_io_executor.hpp>

#include "rvenc/common/error.hpp"
#include "rvenc/http/address.hpp"
#include "rvenc/http/tls_server.hpp"
#include "rvenc/http/types.hpp"

namespace rvenc::http {

// One per request. Not thread-safe: use it from the handler coroutine only.
class ResponseWriter {
 public:
  virtual ~ResponseWriter() = default;

  // Sends a complete response (Content-Length is set from the body). At most once per request,
  // and not after begin_stream(). Errors writing (client gone) are swallowed: see client_gone().
  virtual awaitable<void> send(Response response) = 0;

  // Starts a chunked response with `header` (status, Content-Type, extra fields); the head is
  // sent together with the first chunk (or end_stream()). Returns false when the client is
  // already known to be gone.
  virtual awaitable<bool> begin_stream(ResponseHeader header) = 0;
  // Sends `bytes` as one chunk right away (empty bytes are ignored). Returns false once the
  // client is gone (the handler should stop producing).
  virtual awaitable<bool> write(std::string_view bytes) = 0;
  // write() without suspending, for relays that forward chunk after chunk: true when the chunk was
  // taken (sent, or what the socket did not take is kept and goes out first at the next write or
  // end_stream()); false when it was not (a kept rest still waits): co_await write(bytes) then.
  // Check client_gone() afterwards. Writers without a socket always answer false.
  [[nodiscard]] virtual bool write_now(std::string_view /*bytes*/) { return false; }
  // Sends `last_bytes` (if any) and the final chunk together; the connection may then serve the
  // next request.
  virtual awaitable<void> end_stream(std::string_view last_bytes = {}) = 0;

  // True once a write failed (the peer closed or reset the connection, or stopped reading for
  // ServerOptions::write_timeout). A disconnect is noticed at the next write, not while idle.
  [[nodiscard]] virtual bool client_gone() const = 0;
  // True once send() or begin_stream() has been called.
  [[nodiscard]] virtual bool started() const = 0;
  // The client address of this request (http::client_address: the peer, or X-Forwarded-For behind
  // ServerOptions::trusted_proxies); nullopt when there is no socket (or on an rvenc-mux link).
  [[nodiscard]] virtual std::optional<IpAddress> client_address() const { return std::nullopt; }
  // A small payload (at most mux::kMaxTrailer bytes) for a client that has reset the stream:
  // what it still needs to know after leaving (the enclave's usage of a cut stream). Carried
  // by a rvenc-mux TRAILER frame when the client takes them; ignored otherwise (HTTP/1.1).
  virtual void send_trailer(std::string_view payload) { (void)payload; }
};

// A ResponseWriter that records everything, for handler tests without sockets.
class RecordingWriter final : public ResponseWriter {
 public:
  awaitable<void> send(Response response) override;
  awaitable<bool> begin_stream(ResponseHeader header) override;
  awaitable<bool> write(std::string_view bytes) override;
  awaitable<void> end_stream(std::string_view last_bytes = {}) override;
  [[nodiscard]] bool client_gone() const override { return gone_; }
  [[nodiscard]] bool started() const override { return response.has_value() || stream_header.has_value(); }
  [[nodiscard]] std::optional<IpAddress> client_address() const override { return address; }
  void send_trailer(std::string_view payload) override { trailers.emplace_back(payload); }

  // Simulates a client that disconnects after `n` successful write() calls.
  void disconnect_after_writes(std::size_t n) { gone_after_ = n; }

  // The status of the response or the stream header (0 when nothing was sent).
  [[nodiscard]] unsigned status() const;
  // The response body, or all streamed chunks concatenated.
  [[nodiscard]] std::string body() const;

  std::optional<Response> response;             // set by send()
  std::optional<ResponseHeader> stream_header;  // set by begin_stream()
  std::vector<std::string> chunks;              // one entry per successful write()
  bool stream_ended = false;                    // set by end_stream()
  std::optional<IpAddress> address;             // what client_address() answers
  std::vector<std::string> trailers;            // set by send_trailer()

 private:
  bool gone_ = false;
  std::optional<std::size_t> gone_after_;
};

using Handler = std::function<awaitable<void>(Request&, ResponseWriter&)>;

// Exact-path routing by method and path; the query string is ignored for matching (the handler
// still sees the full target). Unknown path -> 404 not_found, known path with another method ->
// 405 method_not_allowed (with an Allow header), both as OpenAI error JSON. Copyable; a Router is
// itself a Handler (`Server::create(options, router)`). Configure before serving, then read-only.
class Router {
 public:
  Router& add(Verb method, std::string path, Handler handler);
  Router& get(std::string path, Handler handler) { return add(Verb::get, std::move(path), std::move(handler)); }
  Router& post(std::string path, Handler handler) { return add(Verb::post, std::move(path), std::move(handler)); }

  awaitable<void> operator()(Request& request, ResponseWriter& writer) const;

 private:
  // path -> (method -> handler)
  std::unordered_map<std::string, std::vector<std::pair<Verb, Handler>>> routes_;
};

struct ServerOptions {
  static constexpr std::size_t kDefaultHeaderLimit = 16 * 1024;
  static constexpr std::uint64_t kDefaultBodyLimit = 8 * 1024 * 1024;
  static constexpr std::chrono::milliseconds kDefaultReadTimeout{30'000};
  static constexpr std::chrono::milliseconds kDefaultFirstByteTimeout{10'000};
  static constexpr std::chrono::milliseconds kDefaultHeaderTimeout{10'000};
  static constexpr std::chrono::milliseconds kDefaultIdleTimeout{60'000};
  static constexpr std::chrono::milliseconds kDefaultWriteTimeout{60'000};
  static constexpr std::chrono::milliseconds kDefaultShutdownGrace{10'000};
  static constexpr std::size_t kDefaultMaxConnections = 1024;
  static constexpr unsigned kDefaultThreads = 1;
  static constexpr std::chrono::milliseconds kDefaultTlsHandshakeTimeout{10'000};

  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  // 0: the OS picks a free port, see Server::port()
  std::size_t header_limit = kDefaultHeaderLimit;  // request line + headers; beyond -> 431
  std::uint64_t body_limit = kDefaultBodyLimit;    // beyond -> 413 request_too_large
  // Deadline for receiving a whole request (head and body) once its first byte arrived.
  std::chrono::milliseconds read_timeout = kDefaultReadTimeout;
  // How long a new connection may take to send its first byte (then it is closed, unanswered).
  std::chrono::milliseconds first_byte_timeout = kDefaultFirstByteTimeout;
  // Deadline for a request head (request line and fields) once its first byte arrived.
  std::chrono::milliseconds header_timeout = kDefaultHeaderTimeout;
  // How long an idle keep-alive connection waits for the next request (after its first one).
  std::chrono::milliseconds idle_timeout = kDefaultIdleTimeout;
  // Deadline for each socket write (a client that stops reading is dropped).
  std::chrono::milliseconds write_timeout = kDefaultWriteTimeout;
  // How long stop() lets in-flight requests and streams finish before closing them.
  std::chrono::milliseconds shutdown_grace = kDefaultShutdownGrace;
  std::size_t max_connections = kDefaultMaxConnections;  // beyond -> 503 overloaded, then close
  // Connections at once from one peer address (0: no cap); beyond -> 429 rate_limit_exceeded,
  // then close. Loopback peers are exempt unless per_ip_cap_loopback, trusted_proxies always.
  std::size_t max_connections_per_ip = 0;
  bool per_ip_cap_loopback = false;
  // Load balancers in front: exempt from the per-address cap, and their X-Forwarded-For names the
  // client address of a request (ResponseWriter::client_address()).
  std::vector<Cidr> trusted_proxies;
  // Called for every connection refused at accept, with the reason ("per_ip", "max_connections"),
  // from an I/O thread (metrics).
  std::function<void(std::string_view reason)> on_connection_refused;
  unsigned threads = kDefaultThreads;                    // io_context threads for run()/start()
  std::string server_name = "rvenc";                     // the Server header
  // Takes upgrades to rvenc-mux/1 (mux.hpp) when set: called with the upgrade request, it returns
  // nullopt to accept, or the answer that refuses (e.g. 401). Unset: an upgrade request is an
  // ordinary request (a Router answers 404, and MuxClient falls back to HTTP/1.1).
  std::function<std::optional<Response>(const Request&)> accept_mux;
  // Serves https with this certificate and key when set; SIGHUP then reloads them (Server::reload_tls).
  std::shared_ptr<TlsServerContext> tls;
  // From accept until the TLS handshake is done: a client that says nothing (or too slowly) is closed.
  std::chrono::milliseconds tls_handshake_timeout = kDefaultTlsHandshakeTimeout;
};

class Server {
 public:
  // Binds and listens on options.host:options.port. Errors: invalid_request (bad host),
  // internal_error (address in use, permission denied), with the address in the message.
  [[nodiscard]] static Result<std::unique_ptr<Server>> create(ServerOptions options, Handler handler);
  ~Server();  // stop() with no grace, then joins the threads
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  [[nodiscard]] std::uint16_t port() const;
  // "http://HOST:PORT" (https:// with ServerOptions::tls) with the real port (for the "listening on ..." line).
  [[nodiscard]] std::string url() const;
  // The io_context's executor: for timers or clients that must live on the server's threads.
  [[nodiscard]] asio::any_io_executor executor();

  // Serves on the calling thread plus options.threads - 1 more; returns after stop() completes.
  void run();
  // Serves on options.threads background threads; returns at once.
  void start();
  // Thread-safe and idempotent: stops accepting, lets in-flight requests finish for up to
  // `grace` (idle keep-alive connections close at once), then closes everything. Returns at
  // once; run() returns / wait() returns when done.
  void stop(std::optional<std::chrono::milliseconds> grace = std::nullopt);
  // Blocks until the background threads of start() have finished.
  void wait();
  // SIGINT / SIGTERM call `on_signal` (default: stop(), with the configured grace). Call before
  // run()/start(). The one signal handler of every rvenc service: a service that must stop more
  // than its server passes its own stop (which ends with this server's stop()).
  void stop_on_signals(std::function<void()> on_signal = {});

  // Re-reads the TLS certificate and key (SIGHUP does this): new handshakes use the new pair, open
  // connections keep theirs. On failure (logged by the SIGHUP handler) the current pair stays.
  // invalid_request without ServerOptions::tls.
  [[nodiscard]] Status reload_tls();

  // Counters (tests, logs).
  [[nodiscard]] std::size_t accepted_connections() const;
  [[nodiscard]] std::size_t active_connections() const;
  // TLS connections closed before their handshake completed (timeout, not TLS, handshake error).
  [[nodiscard]] std::size_t failed_tls_handshakes() const;

  struct Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace rvenc::http
