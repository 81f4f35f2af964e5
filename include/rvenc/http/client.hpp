// The async HTTP/1.1 client every rvenc hop uses (gateway -> enclave, enclave -> engine,
// SDK/proxy -> gateway), plus a blocking fetch() for CLI tools and tests.
//
// Design: an HttpClient owns a thread-safe pool of idle keep-alive connections per (host, port), at
// most HttpClientOptions::max_idle_per_host each. An idle connection stays registered with the
// io_context it last ran on (reused there without a system call); another io_context takes it
// over by its descriptor, and when its io_context shuts down it stays pooled as a bare
// descriptor, so an HttpClient may outlive any io_context.
//
// https:// URLs run over TLS (tls.hpp: TLS 1.2+, verified against the system trust store or
// HttpClientOptions::ca_file, SNI, host-name check; a failed handshake is Errc::tls_error). A TLS
// connection's SSL state lives in its stream object, bound to one io_context: it is pooled with
// that object and reused on the same io_context only (closed when that context shuts down); any
// new connection to the origin offers the origin's last TLS session (resumption). A plain
// http:// request that gets TLS bytes back fails at once with tls_error ("use https://"). A request borrows a connection (or
// opens one within Timeouts::connect), and gives it back only after a complete, clean response
// that allows keep-alive. A pooled connection that turns out stale (the server closed it while
// idle) is retried once on a fresh connection when the request is idempotent or was not sent.
// Sockets run on the calling coroutine's executor.
//
// request() reads the whole response (up to HttpClientOptions::body_limit). open() returns as soon as
// the response head arrived; ResponseStream::read_some() then hands out body bytes as they arrive
// (chunked framing removed), with Timeouts::idle as the longest allowed silence.
//
// HTTP error statuses are not errors here: a 404 is a Response. Errors are transport failures:
// upstream_timeout (connect, idle or total timeout), upstream_error (refused, reset, malformed or
// oversized response), tls_error (see above). Messages name the host:port, never the request content.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "rvenc/common/error.hpp"
#include "rvenc/http/types.hpp"
#include "rvenc/http/url.hpp"

namespace boost::asio::ssl {
class context;
}  // namespace boost::asio::ssl

namespace rvenc::http {

struct Timeouts {
  static constexpr std::chrono::milliseconds kDefaultConnect{10'000};
  static constexpr std::chrono::milliseconds kDefaultIdle{60'000};

  std::chrono::milliseconds connect = kDefaultConnect;  // resolve + TCP connect
  // Longest silence while sending the request or waiting for response bytes (head and body).
  std::chrono::milliseconds idle = kDefaultIdle;
  // Whole exchange, including every read_some() of a stream; none by default.
  std::optional<std::chrono::milliseconds> total;
};

struct HttpClientOptions {
  // Enough for a burst of concurrent streams to each find a warm connection (Node's http.Agent
  // keeps 256 free sockets; nginx's upstream `keepalive` is sized the same way).
  static constexpr std::size_t kDefaultMaxIdlePerHost = 256;
  static constexpr std::uint64_t kDefaultBodyLimit = 64 * 1024 * 1024;
  static constexpr std::size_t kDefaultHeaderLimit = 64 * 1024;
  static constexpr std::chrono::milliseconds kDefaultPoolIdle{30'000};

  std::size_t max_idle_per_host = kDefaultMaxIdlePerHost;
  std::uint64_t body_limit = kDefaultBodyLimit;  // request() only; streams are unbounded
  std::size_t header_limit = kDefaultHeaderLimit;
  // Pooled connections idle longer than this are closed instead of reused.
  std::chrono::milliseconds pool_idle = kDefaultPoolIdle;
  // https:// servers are verified against this PEM bundle (a private CA) instead of the system
  // trust store. Verification cannot be turned off.
  std::string ca_file;
};

// A response whose body is still arriving. Use from one coroutine at a time.
class ResponseStream {
 public:
  virtual ~ResponseStream() = default;
  [[nodiscard]] virtual const ResponseHeader& header() const = 0;
  [[nodiscard]] unsigned status() const { return header().result_int(); }
  // The next body bytes as they arrive; nullopt at the clean end of the body (the connection then
  // goes back to the pool). Errors: upstream_timeout (idle/total), upstream_error (reset,
  // truncated, malformed), or upstream_error "cancelled" after cancel().
  virtual awaitable<Result<std::optional<std::string>>> read_some() = 0;
  // Gives back a string read_some() handed out, once its bytes are no longer needed: the next
  // read fills it instead of allocating one (a relay reads thousands). Optional.
  virtual void recycle(std::string spent) { (void)spent; }
  // True once the whole body has been received (what read_some() returned last was the end of
  // it; the next call returns the clean end without waiting, and the connection is pooled).
  [[nodiscard]] virtual bool finished() const = 0;
  // The rest of the body (e.g. an error JSON answer), at most `limit` bytes (else upstream_error
  // and the stream is cancelled).
  awaitable<Result<std::string>> read_all(std::uint64_t limit = HttpClientOptions::kDefaultBodyLimit);
  // Abandons the response: closes the connection (never pooled); a pending read_some() fails.
  // Safe to call from the stream's executor at any time.
  virtual void cancel() = 0;
  // After cancel(): the trailer the server sent for the abandoned stream (a rvenc-mux TRAILER
  // frame), waiting for it at most mux::kTrailerWait; nullopt when none came, or the transport
  // has none (HTTP/1.1).
  virtual awaitable<std::optional<std::string>> trailer() { co_return std::nullopt; }
};

class HttpClient {
 public:
  explicit HttpClient(HttpClientOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends `request` to server.host:server.port and reads the complete response (arguments are
  // taken by value: the coroutine may outlive the caller's temporaries). An empty target
  // is replaced by server.target; Host is set from `server` when missing; Content-Length is set
  // from the body (prepare_payload). The HttpClient must outlive the returned awaitable.
  awaitable<Result<Response>> request(Url server, Request request, Timeouts timeouts = {});
  // Same, but returns as soon as the response head arrived.
  awaitable<Result<std::unique_ptr<ResponseStream>>> open(Url server, Request request,
                                                          Timeouts timeouts = {});

  [[nodiscard]] const HttpClientOptions& options() const;
  // Idle pooled connections (all hosts): tests, metrics.
  [[nodiscard]] std::size_t idle_connections() const;
  // The TLS context of this client's https:// connections (tls.hpp), made on first use from
  // HttpClientOptions::ca_file (tls_error when that fails); rvenc-mux connections share it.
  [[nodiscard]] Result<std::shared_ptr<boost::asio::ssl::context>> tls_context() const;

  struct Pool;

 private:
  std::shared_ptr<Pool> pool_;
};

// A request for `target` with `method` (e.g. Verb::post), HTTP/1.1, optional JSON body.
[[nodiscard]] Request make_request(Verb method, std::string target, std::string body = {},
                                   std::string_view content_type = kJsonContentType);

inline constexpr std::chrono::milliseconds kDefaultFetchTimeout{30'000};

// Blocking one-shot request on its own io_context (CLI tools, tests). `method` like "GET";
// `url` like "http://127.0.0.1:8080/v1/models". The timeout bounds connect, idle and total;
// `client_options` e.g. the ca_file of an https:// server with a private CA.
[[nodiscard]] Result<Response> fetch(std::string_view method, std::string_view url, std::string body = {},
                                     const Fields& headers = {},
                                     std::chrono::milliseconds timeout = kDefaultFetchTimeout,
                                     HttpClientOptions client_options = {});

}  // namespace rvenc::http
