// Server, Router and RecordingWriter. One coroutine per connection (run_session), on its own
// strand when the server runs several threads: wait for the first byte (first_byte_timeout on a
// new connection, idle_timeout between requests) -> read the head under header_timeout and the
// whole request under read_timeout -> handler -> next request.
#include "rvenc/http/server.hpp"

#include <algorithm>
#include <array>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_cat.hpp>
#include <boost/beast/core/buffers_range.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <boost/beast/core/buffer_traits.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <spdlog/spdlog.h>

#include "handler_call.hpp"
#include "mux_server.hpp"
#include "transport.hpp"
#include "rvenc/http/watchdog.hpp"
#include "wire.hpp"

namespace rvenc::http {

namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// ---------------------------------------------------------------- RecordingWriter

awaitable<void> RecordingWriter::send(Response res) {
  res.prepare_payload();
  response = std::move(res);
  co_return;
}

awaitable<bool> RecordingWriter::begin_stream(ResponseHeader header) {
  stream_header = std::move(header);
  co_return !gone_;
}

awaitable<bool> RecordingWriter::write(std::string_view bytes) {
  if (gone_after_ && chunks.size() >= *gone_after_) gone_ = true;
  if (gone_) co_return false;
  if (!bytes.empty()) chunks.emplace_back(bytes);
  co_return true;
}

awaitable<void> RecordingWriter::end_stream(std::string_view last_bytes) {
  if (!last_bytes.empty()) co_await write(last_bytes);
  stream_ended = true;
}

unsigned RecordingWriter::status() const {
  if (response) return response->result_int();
  if (stream_header) return stream_header->result_int();
  return 0;
}

std::string RecordingWriter::body() const {
  if (response) return response->body();
  std::string all;
  for (const auto& chunk : chunks) all += chunk;
  return all;
}

// ---------------------------------------------------------------- Router

Router& Router::add(Verb method, std::string path, Handler handler) {
  routes_[std::move(path)].emplace_back(method, std::move(handler));
  return *this;
}

awaitable<void> Router::operator()(Request& request, ResponseWriter& writer) const {
  const auto found = routes_.find(std::string(target_path(request)));
  if (found == routes_.end()) {
    co_await writer.send(error_response(request, Error{Errc::not_found, "no route for " + std::string(target_path(request))}));
    co_return;
  }
  std::string allowed;
  for (const auto& [method, handler] : found->second) {
    if (method == request.method()) {
      co_await handler(request, writer);
      co_return;
    }
    if (!allowed.empty()) allowed += ", ";
    allowed += std::string(bhttp::to_string(method));
  }
  Response response = error_response(
      request, Error{Errc::method_not_allowed, "method " + std::string(request.method_string()) + " is not allowed for " +
                                                   found->first + " (allowed: " + allowed + ")"});
  response.set(bhttp::field::allow, allowed);
  co_await writer.send(std::move(response));
}

// ---------------------------------------------------------------- Server internals

namespace {
// How much one idle-wait read may pull in (the parser takes it from the buffer).
constexpr std::size_t kIdleReadChunk = 4096;
// Answering a rejected (over-capacity) connection must not hang on a client that never reads.
constexpr std::chrono::seconds kRejectWriteTimeout{5};
// Lingering close after a rejected request: how long and how much unread input to drain.
constexpr std::chrono::seconds kLingerTimeout{2};
constexpr std::size_t kMaxLingerBytes = 64 * 1024 * 1024;
// Backoff after accept() fails for lack of file descriptors.
constexpr std::chrono::milliseconds kAcceptBackoff{100};
// The first byte of a TLS connection: a handshake record (the ClientHello).
constexpr unsigned char kTlsHandshakeRecord = 0x16;
// Over-capacity TLS connections being answered at once (each costs a handshake); beyond, closed at
// accept without an answer, so a flood cannot turn refusals into a handshake queue.
constexpr std::size_t kMaxTlsRefusalsInFlight = 64;
}  // namespace

struct Session;

struct Server::Impl {
  ServerOptions options;
  Handler handler;
  std::atomic<std::size_t> accepted{0};
  std::atomic<std::size_t> active{0};
  std::atomic<std::size_t> failed_tls{0};
  std::atomic<std::size_t> tls_refusals{0};  // refuse_tls_connection() running
  std::atomic<bool> stopping{false};
  std::uint16_t port = 0;
  std::mutex sessions_mutex;
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;
  // Open connections per peer address, for those the per-address cap applies to.
  std::mutex per_ip_mutex;
  std::map<IpAddress, std::size_t> per_ip;
  std::vector<std::thread> threads;
  std::mutex threads_mutex;
  // Declared after everything the coroutines touch: destroying the io_context destroys the
  // suspended coroutine frames, which may still unregister their sessions.
  asio::io_context ioc;
  // Serializes the acceptor, the signal set and the grace timer (stop() may come from any thread).
  asio::strand<asio::io_context::executor_type> control{ioc.get_executor()};
  std::optional<tcp::acceptor> acceptor;
  std::optional<asio::signal_set> signals;
  std::optional<asio::signal_set> reload_signal;  // SIGHUP, with options.tls
  std::optional<asio::steady_timer> grace_timer;

  explicit Impl(ServerOptions opts, Handler h)
      : options(std::move(opts)), handler(std::move(h)), ioc(static_cast<int>(std::max(1u, options.threads))) {}
  ~Impl() {
    ioc.stop();
    join();
    grace_timer.reset();
    signals.reset();
    reload_signal.reset();
    acceptor.reset();
  }

  void join() {
    std::vector<std::thread> to_join;
    {
      std::lock_guard lock(threads_mutex);
      to_join.swap(threads);
    }
    for (auto& thread : to_join) {
      if (thread.joinable() && thread.get_id() != std::this_thread::get_id()) thread.join();
      else if (thread.joinable()) thread.detach();
    }
  }

  std::vector<std::shared_ptr<Session>> live_sessions() {
    std::vector<std::shared_ptr<Session>> live;
    std::lock_guard lock(sessions_mutex);
    for (auto& [raw, weak] : sessions) {
      if (auto session = weak.lock()) live.push_back(std::move(session));
    }
    return live;
  }

  void on_session_end();
  void begin_stop(std::chrono::milliseconds grace);
  // Reloads the TLS certificate at every SIGHUP until stop().
  void watch_sighup();
  awaitable<void> accept_loop();
  // Why a new connection from `peer` is refused (the connection limits), or nullopt.
  [[nodiscard]] std::optional<Error> admission(const IpAddress& peer, bool capped);
  // Answers a refused connection (inside TLS on a TLS port) and closes it.
  void refuse(tcp::socket socket, Error error);
  // Serves an admitted connection until it closes.
  void start_session(tcp::socket socket, const IpAddress& peer, bool capped);
  // Whether the per-address cap counts connections from `peer`.
  [[nodiscard]] bool per_ip_capped(const IpAddress& peer) const;
  // Counts a connection from `peer`; false when that address is at its cap.
  [[nodiscard]] bool take_per_ip(const IpAddress& peer);
  void release_per_ip(const IpAddress& peer);
  void refused(std::string_view reason) const {
    if (options.on_connection_refused) options.on_connection_refused(reason);
  }
};

struct Session : std::enable_shared_from_this<Session> {
  Server::Impl* server;
  detail::Transport transport;
  IpAddress peer;
  bool per_ip_counted = false;  // holds one of the peer's per-address slots
  // Waiting for the next request on a keep-alive connection: stop() may close it at once.
  bool idle = true;
  // Bounds the idle wait (idle_timeout), the reading of a request (read_timeout) and each
  // streamed chunk write (write_timeout, its default limit): a client that stalls is dropped.
  // One timer for all, instead of one armed and cancelled around every operation.
  detail::OperationWatchdog watchdog;

  Session(Server::Impl* s, tcp::socket socket, std::shared_ptr<asio::ssl::context> tls, IpAddress from, bool counted)
      : server(s),
        transport(std::move(socket), std::move(tls)),
        peer(std::move(from)),
        per_ip_counted(counted),
        watchdog(transport.socket().get_executor(), s->options.write_timeout, [this] { close(); }) {
    ++server->active;
    // Stream writes try the socket directly first (ConnectionWriter::write_raw).
    beast::error_code ignored;
    transport.socket().non_blocking(true, ignored);
  }
  ~Session() {
    {
      std::lock_guard lock(server->sessions_mutex);
      server->sessions.erase(this);
    }
    if (per_ip_counted) server->release_per_ip(peer);
    --server->active;
    server->on_session_end();
  }

  void close() { transport.close(); }
};

// The ResponseWriter of one request on a real connection.
class ConnectionWriter final : public ResponseWriter {
 public:
  ConnectionWriter(Session& session, unsigned version, bool keep_alive, std::optional<IpAddress> client = std::nullopt)
      : session_(session), version_(version), keep_alive_(keep_alive), client_(std::move(client)) {}

  awaitable<void> send(Response response) override {
    if (started_) throw std::logic_error("ResponseWriter::send after the response was started");
    started_ = true;
    response.version(version_);
    prepare(response);
    response.prepare_payload();
    auto [ec, n] = co_await session_.transport.write_message(response, session_.server->options.write_timeout);
    if (ec) gone_ = true;
    ended_ = true;
  }

  awaitable<bool> begin_stream(ResponseHeader header) override {
    if (started_) throw std::logic_error("ResponseWriter::begin_stream after the response was started");
    started_ = true;
    streaming_ = true;
    bhttp::response<bhttp::empty_body> response{std::move(header)};
    response.version(version_);
    prepare(response);
    response.chunked(true);
    // The head goes out with the first chunk: one send and one wake-up of the client instead
    // of two (a client gone by then is noticed at that write).
    head_ = detail::serialize_head(response.base());
    co_return true;
  }

  // Sends a head still held back (a stream that ends without any chunk, or is cut).
  awaitable<void> flush_head() {
    co_await send_kept();
    if (head_.empty() || gone_) co_return;
    const std::string head = std::exchange(head_, std::string());
    co_await write_raw(asio::buffer(head));
  }

  awaitable<bool> write(std::string_view bytes) override {
    if (!streaming_ || ended_) throw std::logic_error("ResponseWriter::write outside a stream");
    co_await send_kept();
    // Nothing is kept now, so take() sends the chunk; what the socket did not take follows.
    if (!gone_ && !bytes.empty()) take(bytes);
    co_await send_kept();
    co_return !gone_;
  }

  bool write_now(std::string_view bytes) override {
    if (!streaming_ || ended_) throw std::logic_error("ResponseWriter::write_now outside a stream");
    if (gone_ || bytes.empty()) return true;
    if (!kept_.empty()) return false;
    take(bytes);
    return true;
  }

  awaitable<void> end_stream(std::string_view last_bytes = {}) override {
    if (!streaming_ || ended_) co_return;
    ended_ = true;
    co_await send_kept();
    if (gone_) co_return;
    const std::string head = std::exchange(head_, std::string());
    if (last_bytes.empty()) {
      co_await write_raw(std::array{asio::buffer(head), asio::buffer(detail::kLastChunk)});
    } else {
      const detail::ChunkSizeLine size(last_bytes.size());
      co_await write_raw(std::array{asio::buffer(head), size.buffer(), asio::buffer(last_bytes),
                                    asio::buffer(detail::kCrlf), asio::buffer(detail::kLastChunk)});
    }
  }

  [[nodiscard]] bool client_gone() const override { return gone_; }
  [[nodiscard]] bool started() const override { return started_; }
  [[nodiscard]] std::optional<IpAddress> client_address() const override { return client_; }
  [[nodiscard]] bool ended() const { return ended_; }
  [[nodiscard]] bool keep_alive() const { return keep_alive_; }

 private:
  // A chunk usually fits in the socket's send buffer: it is sent at once (the socket is
  // non-blocking; over TLS as one record), without a round trip through the event loop. Only what does not fit waits for
  // the socket, under the session's write watchdog. The fast path is a plain function, so a chunk
  // costs a coroutine frame only when the socket is full.
  template <class Buffers>
  awaitable<void> write_raw(const Buffers& buffers) {
    beast::buffers_suffix<Buffers> rest(buffers);
    if (!send_now(rest)) co_await send_rest(rest);
  }

  // Sends what the socket takes now; true when nothing is left to wait for (all sent, or gone).
  template <class Buffers>
  bool send_now(beast::buffers_suffix<Buffers>& rest) {
    beast::error_code ec;
    rest.consume(session_.transport.write_now(rest, ec));
    if (ec && ec != asio::error::would_block && ec != asio::error::try_again) gone_ = true;
    return gone_ || beast::buffer_bytes(rest) == 0;
  }

  // Sends a chunk (with a head still held back) as far as the socket takes it now; the rest is kept
  // for send_kept() (over TLS the rest of a record half sent is retried with these same bytes).
  void take(std::string_view bytes) {
    const std::string head = std::exchange(head_, std::string());
    const detail::ChunkSizeLine size(bytes.size());
    const std::array buffers{asio::buffer(head), size.buffer(), asio::buffer(bytes), asio::buffer(detail::kCrlf)};
    beast::buffers_suffix<std::array<asio::const_buffer, 4>> rest(buffers);
    if (!send_now(rest)) {
      kept_.resize(beast::buffer_bytes(rest));
      asio::buffer_copy(asio::buffer(kept_), rest);
    }
  }

  // What write_now() could not send goes out before anything else.
  awaitable<void> send_kept() {
    if (kept_.empty()) co_return;
    const std::string kept = std::exchange(kept_, std::string());
    if (!gone_) co_await write_raw(asio::buffer(kept));
  }

  template <class Buffers>
  awaitable<void> send_rest(beast::buffers_suffix<Buffers>& rest) {
    session_.watchdog.begin();
    auto [write_ec, n] = co_await session_.transport.write(rest);
    session_.watchdog.end();
    if (write_ec) gone_ = true;
  }

  template <class Message>
  void prepare(Message& message) {
    // While stopping, every answer closes its connection.
    keep_alive_ = keep_alive_ && !session_.server->stopping.load();
    message.keep_alive(keep_alive_);
    if (message.find(bhttp::field::server) == message.end()) {
      message.set(bhttp::field::server, session_.server->options.server_name);
    }
  }

  Session& session_;
  unsigned version_;
  bool keep_alive_;
  std::optional<IpAddress> client_;
  bool started_ = false;
  bool streaming_ = false;
  std::string head_;  // a stream's head, until its first chunk
  std::string kept_;  // what write_now() could not send yet
  bool ended_ = false;
  bool gone_ = false;
};

// Closes after an error answer. Unread request bytes would make close() send a RST that can
// destroy the answer in the client's buffers, so the rest of the input is drained for a bounded
// time first (lingering close, as nginx does).
awaitable<void> linger(beast::tcp_stream& stream) {
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  std::array<char, kIdleReadChunk> sink{};
  std::size_t drained = 0;
  stream.expires_after(kLingerTimeout);
  while (drained < kMaxLingerBytes) {
    auto [ec, n] = co_await stream.async_read_some(asio::buffer(sink), kTuple);
    if (ec) break;
    drained += n;
  }
}

// Answers a request that could not be read (malformed, too large); the caller closes.
awaitable<void> reject(Session& session, Response response) {
  response.keep_alive(false);
  response.set(bhttp::field::server, session.server->options.server_name);
  auto [ec, n] = co_await session.transport.write_message(response, session.server->options.write_timeout);
  if (!ec) co_await linger(session.transport.tcp());
}

bool is_disconnect(const beast::error_code& ec) {
  return ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::operation_aborted ||
         ec == asio::error::bad_descriptor || ec == beast::error::timeout || ec == asio::error::broken_pipe ||
         ec == asio::ssl::error::stream_truncated;  // a TLS peer that closed without close_notify
}

// Reads one request whose first bytes are in `buffer`: the head within header_timeout, then a
// 100 Continue if asked for and the body, all within read_timeout of the start.
awaitable<beast::error_code> read_request(Session& session, beast::flat_buffer& buffer,
                                          bhttp::request_parser<bhttp::string_body>& parser) {
  const ServerOptions& options = session.server->options;
  parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(options.header_limit, UINT32_MAX)));
  parser.body_limit(options.body_limit);
  const auto whole_deadline = std::chrono::steady_clock::now() + options.read_timeout;
  session.watchdog.begin_for(options.header_timeout, whole_deadline);
  beast::error_code ec = co_await detail::read_message(session.transport, buffer, parser, false);
  session.watchdog.begin_for(options.read_timeout, whole_deadline);
  if (!ec && parser.get()[bhttp::field::expect] == "100-continue" && !parser.is_done()) {
    bhttp::response<bhttp::empty_body> proceed{bhttp::status::continue_, parser.get().version()};
    auto [write_ec, write_n] = co_await session.transport.write_message(proceed, options.write_timeout);
    ec = write_ec;
  }
  if (!ec && !parser.is_done()) ec = co_await detail::read_message(session.transport, buffer, parser, true);
  session.watchdog.end();
  co_return ec;
}

// A plain-HTTP request on the TLS port: answered in plain HTTP, so the client can read why, then
// closed.
awaitable<void> refuse_plain_http(Session& session) {
  Response response = error_response(
      Error{Errc::invalid_request, "this port serves https only: a plain HTTP request was sent to it (use an https:// URL)"});
  response.keep_alive(false);
  response.set(bhttp::field::server, session.server->options.server_name);
  response.prepare_payload();
  const std::string head = detail::serialize_head(response.base());
  session.watchdog.begin();
  auto [ec, n] = co_await asio::async_write(session.transport.socket(),
                                            std::array{asio::buffer(head), asio::const_buffer(asio::buffer(response.body()))}, kTuple);
  session.watchdog.end();
  if (!ec) co_await linger(session.transport.tcp());
}

// The TLS handshake of a new connection, done within tls_handshake_timeout of accept. False when
// the connection is to be closed: silent or slow client, not TLS (a plain-HTTP request is told so
// first), or a failed handshake (logged, counted in Server::failed_tls_handshakes).
awaitable<bool> tls_accept(Session& session) {
  const ServerOptions& options = session.server->options;
  const auto deadline = std::chrono::steady_clock::now() + options.tls_handshake_timeout;
  session.watchdog.begin_for(std::min(options.first_byte_timeout, options.tls_handshake_timeout), deadline);
  // Peeked, not read: OpenSSL reads the ClientHello from the socket itself.
  std::array<unsigned char, 1> first_bytes{};
  auto [ec, n] = co_await session.transport.socket().async_receive(asio::buffer(first_bytes), tcp::socket::message_peek,
                                                                    kTuple);
  session.watchdog.end();
  if (ec || n == 0) {
    ++session.server->failed_tls;
    spdlog::debug("http: TLS connection from {} closed before its handshake: {}", session.peer.to_string(),
                  session.watchdog.expired() ? "handshake timeout" : ec.message());
    co_return false;
  }
  const unsigned char first = first_bytes[0];
  if (first != kTlsHandshakeRecord) {
    ++session.server->failed_tls;
    spdlog::debug("http: a connection from {} to the TLS port does not speak TLS", session.peer.to_string());
    if (first >= 'A' && first <= 'Z') co_await refuse_plain_http(session);
    co_return false;
  }
  session.watchdog.begin_for(options.tls_handshake_timeout, deadline);
  auto [handshake_ec, used] = co_await session.transport.accept();
  session.watchdog.end();
  if (handshake_ec) {
    ++session.server->failed_tls;
    spdlog::debug("http: TLS handshake with {} failed: {}", session.peer.to_string(),
                  session.watchdog.expired() ? "handshake timeout" : handshake_ec.message());
    co_return false;
  }
  co_return true;
}

// An rvenc-mux/1 upgrade request: refused (accept_mux's answer), or answered with 101 and the
// connection then carries frames (mux_server.cpp) until it closes.
awaitable<void> upgrade_to_mux(Session& session, Request& request, beast::flat_buffer& buffer) {
  Server::Impl& server = *session.server;
  const ServerOptions& options = server.options;
  if (auto refusal = options.accept_mux(request)) {
    ConnectionWriter writer(session, request.version(), false);
    co_await writer.send(std::move(*refusal));
    co_return;
  }
  const bool trailers = detail::mux_client_takes_trailers(request);
  const std::string head = detail::mux_switching_head(options.server_name, trailers);
  session.watchdog.begin();
  auto [write_ec, n] = co_await session.transport.write(asio::buffer(head));
  session.watchdog.end();
  if (write_ec) co_return;
  co_await detail::serve_mux(detail::MuxHost{session.transport, server.handler, options, server.stopping, session.idle,
                                             session.watchdog, trailers},
                             buffer);
}

awaitable<void> run_session(std::shared_ptr<Session> session) {
  Server::Impl& server = *session->server;
  const ServerOptions& options = server.options;
  beast::flat_buffer buffer;
  if (session->transport.tls() && !co_await tls_accept(*session)) {
    session->close();
    co_return;
  }
  // A new connection gets first_byte_timeout for its first byte; a kept-alive one idle_timeout.
  bool first_request = true;
  for (;;) {
    session->idle = true;
    if (server.stopping) break;
    if (buffer.size() == 0) {
      session->watchdog.begin_for(first_request ? options.first_byte_timeout : options.idle_timeout);
      auto [ec, n] = co_await session->transport.read_some(buffer.prepare(kIdleReadChunk));
      session->watchdog.end();
      if (ec) break;  // first-byte or idle timeout, peer closed, or stop(): nothing to answer
      buffer.commit(n);
    }
    session->idle = false;
    first_request = false;

    bhttp::request_parser<bhttp::string_body> parser;
    const beast::error_code ec = co_await read_request(*session, buffer, parser);
    if (ec) {
      if (is_disconnect(ec)) {
        spdlog::debug("http: connection dropped while reading a request: {}", ec.message());
      } else {
        spdlog::debug("http: rejecting request: {}", ec.message());
        co_await reject(*session, detail::read_error_response(ec, options));
      }
      break;
    }

    Request request = parser.release();
    if (options.accept_mux && detail::is_mux_upgrade(request)) {
      co_await upgrade_to_mux(*session, request, buffer);
      break;
    }
    ConnectionWriter writer(*session, request.version(), request.keep_alive(),
                            http::client_address(session->peer, request, options.trusted_proxies));
    const bool failed = co_await detail::call_handler(server.handler, request, writer);
    if (!writer.ended()) {
      // A stream cut by an exception must look truncated to the client, so no final chunk.
      if (failed) {
        co_await writer.flush_head();
        break;
      }
      co_await writer.end_stream();
    }
    if (writer.client_gone() || !writer.keep_alive()) break;
  }
  session->close();
}

// What a connection refused at accept gets (`error`: why): the error JSON, Retry-After, close.
Response refusal_response(const Error& error, const std::string& server_name) {
  Response response = error_response(error);
  response.set(bhttp::field::retry_after, "1");
  response.keep_alive(false);
  response.set(bhttp::field::server, server_name);
  response.prepare_payload();
  return response;
}

// Answers a connection refused at accept (`error`: why) and closes it.
awaitable<void> refuse_connection(tcp::socket socket, std::string server_name, Error error) {
  beast::tcp_stream stream(std::move(socket));
  Response response = refusal_response(error, server_name);
  stream.expires_after(kRejectWriteTimeout);
  auto [ec, n] = co_await bhttp::async_write(stream, response, kTuple);
  if (!ec) co_await linger(stream);
}

// The same over TLS: the handshake (within `handshake_timeout`), then the answer inside TLS, so
// the client reads why instead of a bare close. `in_flight` counts this refusal until it ends.
awaitable<void> refuse_tls_connection(tcp::socket socket, std::shared_ptr<asio::ssl::context> context,
                                      std::chrono::milliseconds handshake_timeout, std::string server_name,
                                      Error error, std::atomic<std::size_t>& in_flight) {
  {
    asio::ssl::stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), *context);
    stream.next_layer().expires_after(handshake_timeout);
    auto [handshake_ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, kTuple);
    if (!handshake_ec) {
      Response response = refusal_response(error, server_name);
      stream.next_layer().expires_after(kRejectWriteTimeout);
      auto [ec, n] = co_await bhttp::async_write(stream, response, kTuple);
      if (!ec) co_await linger(stream.next_layer());
    }
    stream.next_layer().close();
  }
  --in_flight;
}

awaitable<void> Server::Impl::accept_loop() {
  for (;;) {
    // With one io thread every handler already runs serialized: a strand would only add a queue
    // and a lock to every completion of every connection.
    asio::any_io_executor session_executor =
        options.threads > 1 ? asio::any_io_executor(asio::make_strand(ioc)) : asio::any_io_executor(ioc.get_executor());
    auto [ec, socket] = co_await acceptor->async_accept(session_executor, kTuple);
    if (stopping) co_return;
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      spdlog::warn("http: accept failed: {}", ec.message());
      asio::steady_timer backoff(control, kAcceptBackoff);
      co_await backoff.async_wait(kTuple);
      continue;
    }
    ++accepted;
    // A stream is many small writes: with Nagle on, each waits for the peer's delayed ACK (40 ms).
    boost::system::error_code nodelay_ignored;
    socket.set_option(asio::ip::tcp::no_delay(true), nodelay_ignored);
    boost::system::error_code peer_ec;
    const IpAddress peer = normalize_address(socket.remote_endpoint(peer_ec).address());
    if (peer_ec) continue;  // already gone
    const bool capped = per_ip_capped(peer);
    if (auto refusal = admission(peer, capped)) {
      refuse(std::move(socket), std::move(*refusal));
      continue;
    }
    start_session(std::move(socket), peer, capped);
  }
}

std::optional<Error> Server::Impl::admission(const IpAddress& peer, bool capped) {
  if (active.load() >= options.max_connections) {
    refused("max_connections");
    return Error{Errc::overloaded, "the server is at its connection limit, retry later"};
  }
  if (capped && !take_per_ip(peer)) {
    refused("per_ip");
    return Error{Errc::rate_limit_exceeded, "too many connections from your address (at most " +
                                                std::to_string(options.max_connections_per_ip) + ")"};
  }
  return std::nullopt;
}

void Server::Impl::refuse(tcp::socket socket, Error error) {
  auto executor = socket.get_executor();
  if (!options.tls) {
    asio::co_spawn(executor, refuse_connection(std::move(socket), options.server_name, std::move(error)),
                   asio::detached);
    return;
  }
  // The answer goes inside TLS (a plain one means nothing to a TLS client); while many are being
  // answered already, a handshake costs what is short now: closed without one.
  if (tls_refusals.fetch_add(1) >= kMaxTlsRefusalsInFlight) {
    --tls_refusals;
    boost::system::error_code ignored;
    socket.close(ignored);
    return;
  }
  asio::co_spawn(executor,
                 refuse_tls_connection(std::move(socket), options.tls->current(), options.tls_handshake_timeout,
                                       options.server_name, std::move(error), tls_refusals),
                 asio::detached);
}

void Server::Impl::start_session(tcp::socket socket, const IpAddress& peer, bool capped) {
  auto session =
      std::make_shared<Session>(this, std::move(socket), options.tls ? options.tls->current() : nullptr, peer, capped);
  {
    std::lock_guard lock(sessions_mutex);
    sessions.emplace(session.get(), session);
  }
  auto executor = session->transport.socket().get_executor();
  asio::co_spawn(executor, run_session(std::move(session)), [](std::exception_ptr error) {
    if (!error) return;
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      spdlog::error("http: session failed: {}", e.what());
    }
  });
}

bool Server::Impl::per_ip_capped(const IpAddress& peer) const {
  if (options.max_connections_per_ip == 0 || in_ranges(peer, options.trusted_proxies)) return false;
  return options.per_ip_cap_loopback || !peer.is_loopback();
}

bool Server::Impl::take_per_ip(const IpAddress& peer) {
  std::lock_guard lock(per_ip_mutex);
  auto& count = per_ip[peer];
  if (count >= options.max_connections_per_ip) return false;
  ++count;
  return true;
}

void Server::Impl::release_per_ip(const IpAddress& peer) {
  std::lock_guard lock(per_ip_mutex);
  if (auto it = per_ip.find(peer); it != per_ip.end() && --it->second == 0) per_ip.erase(it);
}

void Server::Impl::on_session_end() {
  if (stopping && active.load() == 0 && !ioc.stopped()) {
    asio::post(control, [this] {
      if (grace_timer) grace_timer->cancel();
    });
  }
}

void Server::Impl::begin_stop(std::chrono::milliseconds grace) {
  if (stopping.exchange(true)) return;
  beast::error_code ignored;
  if (acceptor) acceptor->close(ignored);
  if (signals) signals->cancel(ignored);
  if (reload_signal) reload_signal->cancel(ignored);
  for (auto& session : live_sessions()) {
    asio::post(session->transport.socket().get_executor(), [session] {
      if (session->idle) session->close();
    });
  }
  if (active.load() == 0) return;
  grace_timer.emplace(control, grace);
  grace_timer->async_wait([this, grace](beast::error_code ec) {
    if (ec) return;  // every session finished in time
    if (grace.count() > 0) spdlog::warn("http: shutdown grace period over, closing {} connection(s)", active.load());
    for (auto& session : live_sessions()) {
      asio::post(session->transport.socket().get_executor(), [session] { session->close(); });
    }
    // Handlers still busy elsewhere (e.g. waiting on an upstream) are abandoned.
    asio::post(ioc, [this] { ioc.stop(); });
  });
}

void Server::Impl::watch_sighup() {
  reload_signal->async_wait([this](beast::error_code ec, int) {
    if (ec || stopping) return;
    if (auto reloaded = options.tls->reload(); reloaded) {
      spdlog::info("tls: SIGHUP: reloaded {}: {}", options.tls->cert_file(), options.tls->describe());
    } else {
      spdlog::error("tls: SIGHUP: reload failed, keeping the current certificate: {}", reloaded.error().message);
    }
    watch_sighup();
  });
}

// ---------------------------------------------------------------- Server

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() = default;

Result<std::unique_ptr<Server>> Server::create(ServerOptions options, Handler handler) {
  beast::error_code ec;
  const auto address = asio::ip::make_address(options.host, ec);
  if (ec) return fail(Errc::invalid_request, "invalid listen address '" + options.host + "': " + ec.message());
  const tcp::endpoint endpoint{address, options.port};
  const std::string where = options.host + ":" + std::to_string(options.port);
  auto impl = std::make_unique<Impl>(std::move(options), std::move(handler));
  impl->acceptor.emplace(impl->control);
  auto& acceptor = *impl->acceptor;
  if (acceptor.open(endpoint.protocol(), ec); ec) return fail(Errc::internal_error, "cannot open socket: " + ec.message());
  if (acceptor.set_option(asio::socket_base::reuse_address(true), ec); ec) {
    return fail(Errc::internal_error, "cannot set SO_REUSEADDR: " + ec.message());
  }
  if (acceptor.bind(endpoint, ec); ec) return fail(Errc::internal_error, "cannot bind " + where + ": " + ec.message());
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) {
    return fail(Errc::internal_error, "cannot listen on " + where + ": " + ec.message());
  }
  impl->port = acceptor.local_endpoint().port();
  Impl* raw = impl.get();
  if (raw->options.tls) {
    raw->reload_signal.emplace(raw->control, SIGHUP);
    raw->watch_sighup();
  }
  asio::co_spawn(raw->control, raw->accept_loop(), asio::detached);
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

std::uint16_t Server::port() const { return impl_->port; }

std::string Server::url() const {
  const std::string& host = impl_->options.host;
  const bool ipv6 = host.find(':') != std::string::npos;
  return std::string(impl_->options.tls ? "https://" : "http://") + (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(impl_->port);
}

asio::any_io_executor Server::executor() { return impl_->ioc.get_executor(); }

void Server::run() {
  const unsigned extra = std::max(1u, impl_->options.threads) - 1;
  {
    std::lock_guard lock(impl_->threads_mutex);
    for (unsigned i = 0; i < extra; ++i) impl_->threads.emplace_back([this] { impl_->ioc.run(); });
  }
  impl_->ioc.run();
  impl_->join();
}

void Server::start() {
  std::lock_guard lock(impl_->threads_mutex);
  for (unsigned i = 0; i < std::max(1u, impl_->options.threads); ++i) {
    impl_->threads.emplace_back([this] { impl_->ioc.run(); });
  }
}

void Server::stop(std::optional<std::chrono::milliseconds> grace) {
  const auto chosen = grace.value_or(impl_->options.shutdown_grace);
  Impl* impl = impl_.get();
  asio::post(impl->control, [impl, chosen] { impl->begin_stop(chosen); });
}

void Server::wait() { impl_->join(); }

void Server::stop_on_signals(std::function<void()> on_signal) {
  impl_->signals.emplace(impl_->control, SIGINT, SIGTERM);
  impl_->signals->async_wait([this, on_signal = std::move(on_signal)](beast::error_code ec, int signal_number) {
    if (ec) return;
    spdlog::info("http: signal {} received, stopping", signal_number);
    if (on_signal) on_signal();
    else stop();
  });
}

std::size_t Server::accepted_connections() const { return impl_->accepted.load(); }
std::size_t Server::active_connections() const { return impl_->active.load(); }
std::size_t Server::failed_tls_handshakes() const { return impl_->failed_tls.load(); }

Status Server::reload_tls() {
  if (!impl_->options.tls) return fail(Errc::invalid_request, "this server does not serve TLS");
  return impl_->options.tls->reload();
}

}  // namespace rvenc::http
