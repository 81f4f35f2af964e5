// HttpClient: keep-alive pool of released descriptors, request() and open()/ResponseStream,
// and the blocking fetch().
#include "rvenc/http/client.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/core/buffers_range.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include "context_registry.hpp"
#include "resolve.hpp"
#include "rvenc/http/tls.hpp"
#include "rvenc/http/watchdog.hpp"
#include "wire.hpp"

namespace rvenc::http {

namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// Beast reads "whatever capacity is left, at least 512 bytes": from an empty buffer that is 512,
// i.e. two or three recv() calls per streamed event of a few hundred bytes, and a read that fills
// its buffer makes the next one a speculative recv() that finds nothing. A page avoids both.
constexpr std::size_t kConnectionReadBuffer = 4096;
// A pooled connection's buffer above this (a large answer's reads grew it) goes back to the page.
constexpr std::size_t kMaxPooledReadBuffer = 16 * 1024;

using TlsStream = asio::ssl::stream<beast::tcp_stream&>;

// The TLS sessions the servers handed out, one per origin, offered again on the next new
// connection to it (resumption: no certificate exchange, a fraction of a full handshake's CPU).
class TlsSessions {
 public:
  TlsSessions() = default;
  TlsSessions(const TlsSessions&) = delete;
  TlsSessions& operator=(const TlsSessions&) = delete;
  ~TlsSessions() {
    for (auto& [key, session] : sessions_) SSL_SESSION_free(session);
  }
  // Takes over `session` (one reference) as the one to offer for `key`.
  void store(const std::string& key, SSL_SESSION* session) {
    std::lock_guard lock(mutex_);
    auto& slot = sessions_[key];
    if (slot != nullptr) SSL_SESSION_free(slot);
    slot = session;
  }
  // Offers the session stored for `key`, if any, on `ssl`.
  void offer(const std::string& key, SSL* ssl) {
    std::lock_guard lock(mutex_);
    const auto found = sessions_.find(key);
    if (found != sessions_.end()) SSL_set_session(ssl, found->second);
  }

 private:
  std::mutex mutex_;
  std::unordered_map<std::string, SSL_SESSION*> sessions_;
};

struct Connection {
  beast::tcp_stream stream;
  // https: what the new-session callback needs to file the sessions this connection receives, and
  // the TLS layer over `stream` (declared after them all: destroyed first).
  std::shared_ptr<TlsSessions> sessions;
  std::string session_key;
  std::unique_ptr<TlsStream> tls;
  beast::flat_buffer buffer;
  int family = AF_INET;  // of the socket, to move it to another io_context without a getsockname
  // Bounds the reads of response heads and streamed bodies (each begin_for its own limit) and
  // closes the connection when one outlasts it: one timer for the connection's whole life, where
  // the timed stream arms and cancels one per read. After `stream`: stopped before it closes.
  detail::OperationWatchdog watchdog;
  explicit Connection(const asio::any_io_executor& executor)
      : stream(executor), watchdog(executor, Timeouts::kDefaultIdle, [this] { stream.close(); }) {
    buffer.reserve(kConnectionReadBuffer);
  }
};

asio::execution_context* context_of(const asio::any_io_executor& executor) {
  return &asio::query(executor, asio::execution::context);
}

}  // namespace

// Idle connections stay registered with the io_context they last ran on, so reusing one on that
// context costs no system call but the liveness check (deregistering and registering a descriptor
// is two epoll_ctl, plus an ioctl to make Asio's socket non-blocking again). Another context takes
// one over by its descriptor, and a context that shuts down leaves its idle connections to the
// pool as bare descriptors, so the pool may outlive any io_context. A TLS connection carries its
// SSL state in its stream object, which belongs to one io_context: it is pooled with that object,
// reused only on the same io_context, and closed when that context shuts down (a new connection
// elsewhere resumes the TLS session instead).
struct HttpClient::Pool : std::enable_shared_from_this<HttpClient::Pool> {
  struct Entry {
    std::unique_ptr<Connection> connection;  // registered with `context`, or
    int fd = -1;                             // a bare descriptor (its context is gone)
    int family = AF_INET;
    asio::execution_context* context = nullptr;
    Clock::time_point since;
    bool tls = false;  // never a bare descriptor
  };

  explicit Pool(HttpClientOptions opts) : options(std::move(opts)) {}
  ~Pool() {
    for (auto& [key, queue] : idle)
      for (auto& entry : queue)
        if (entry.fd >= 0) ::close(entry.fd);
  }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  std::unique_ptr<Connection> take(const std::string& key, const asio::any_io_executor& executor) {
    std::lock_guard lock(mutex);
    const auto found = idle.find(key);
    if (found == idle.end()) return nullptr;
    auto& queue = found->second;
    auto* const context = context_of(executor);
    for (;;) {
      // The most recently used connection of this context first, else the most recent plain one.
      auto pick = std::find_if(queue.rbegin(), queue.rend(), [&](const Entry& e) { return e.context == context; });
      if (pick == queue.rend()) pick = std::find_if(queue.rbegin(), queue.rend(), [](const Entry& e) { return !e.tls; });
      if (pick == queue.rend()) return nullptr;
      Entry entry = std::move(*pick);
      queue.erase(std::next(pick).base());
      if (entry.connection) entry.fd = entry.connection->stream.socket().native_handle();
      const bool usable = Clock::now() - entry.since <= options.pool_idle && looks_alive(entry.fd);
      if (entry.connection) {
        if (usable && entry.context == context) return std::move(entry.connection);
        if (entry.tls) continue;  // stale: closed with its stream
        beast::error_code ec;
        entry.fd = entry.connection->stream.socket().release(ec);
        entry.connection.reset();
        if (ec) continue;
      }
      if (usable) return adopt(entry.fd, entry.family, executor);
      ::close(entry.fd);
    }
  }

  void put(const std::string& key, std::unique_ptr<Connection> connection) {
    if (options.max_idle_per_host == 0) return;
    auto* const context = context_of(connection->stream.get_executor());
    const int family = connection->family;
    const bool tls = connection->tls != nullptr;
    std::lock_guard lock(mutex);
    detail::ContextRegistry<HttpClient::Pool>::enlist_once(*context, weak_from_this(), enlisted);
    auto& queue = idle[key];
    while (!queue.empty() && queue.size() >= options.max_idle_per_host) {
      if (queue.front().fd >= 0 && !queue.front().connection) ::close(queue.front().fd);
      queue.pop_front();
    }
    queue.push_back(Entry{std::move(connection), -1, family, context, Clock::now(), tls});
  }

  // `context` shuts down (its reactor still exists): its connections become bare descriptors.
  void orphan(asio::execution_context* context) {
    std::lock_guard lock(mutex);
    for (auto& [key, queue] : idle) {
      for (auto& entry : queue) {
        if (entry.context != context || !entry.connection) continue;
        if (entry.tls) {
          entry.connection.reset();
          continue;
        }
        beast::error_code ec;
        entry.fd = entry.connection->stream.socket().release(ec);
        entry.connection.reset();
        entry.context = nullptr;
      }
      std::erase_if(queue, [](const Entry& e) { return !e.connection && e.fd < 0; });
    }
    std::erase(enlisted, context);
  }

  std::size_t count() {
    std::lock_guard lock(mutex);
    std::size_t total = 0;
    for (const auto& [key, queue] : idle) total += queue.size();
    return total;
  }

  // A pooled connection is only reused when the peer has neither closed it nor sent anything.
  static bool looks_alive(int fd) {
    char byte = 0;
    const auto n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }

  static std::unique_ptr<Connection> adopt(int fd, int family, const asio::any_io_executor& executor) {
    auto connection = std::make_unique<Connection>(executor);
    connection->family = family;
    beast::error_code ec;
    connection->stream.socket().assign(family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
    if (ec) {
      ::close(fd);
      return nullptr;
    }
    connection->stream.socket().non_blocking(true, ec);
    return connection;
  }

  // The client TLS context, made on the first https connection (loading the trust store costs
  // milliseconds a plain-http HttpClient should not pay).
  Result<std::shared_ptr<TlsContext>> tls_context() {
    std::lock_guard lock(tls_mutex);
    if (!tls) {
      auto made = make_client_tls_context(options.ca_file);
      if (!made) return std::unexpected(made.error());
      tls = std::move(*made);
      SSL_CTX_set_session_cache_mode(tls->native_handle(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
      SSL_CTX_sess_set_new_cb(tls->native_handle(), &Pool::on_new_session);
    }
    return tls;
  }

  // The index of the Connection pointer in each client SSL object.
  static int connection_index() {
    static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
  }

  // OpenSSL hands over a session the server issued (TLS 1.3: after the handshake, while reading).
  static int on_new_session(SSL* ssl, SSL_SESSION* session) {
    auto* connection = static_cast<Connection*>(SSL_get_ex_data(ssl, connection_index()));
    if (connection == nullptr || !connection->sessions) return 0;
    // A copy: OpenSSL marks a connection's own session not resumable when the connection is freed
    // without close_notify, the usual end of a keep-alive connection.
    if (SSL_SESSION* copy = SSL_SESSION_dup(session)) connection->sessions->store(connection->session_key, copy);
    return 0;  // OpenSSL keeps its reference to `session`
  }

  const HttpClientOptions options;
  const std::shared_ptr<TlsSessions> sessions = std::make_shared<TlsSessions>();
  std::mutex tls_mutex;
  std::shared_ptr<TlsContext> tls;
  std::mutex mutex;
  std::unordered_map<std::string, std::deque<Entry>> idle;
  std::vector<asio::execution_context*> enlisted;  // contexts whose ContextRegistry knows this pool
};

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::string_view kUserAgent = "rvenc";

std::string pool_key(const Url& server) { return server.origin(); }

// The per-operation deadline: the idle timeout, cut short by the total timeout when there is one.
struct Deadline {
  Timeouts timeouts;
  std::optional<Clock::time_point> end;

  explicit Deadline(const Timeouts& t) : timeouts(t) {
    if (t.total) end = Clock::now() + *t.total;
  }
  [[nodiscard]] Clock::duration bound(std::chrono::milliseconds limit) const {
    if (!end) return limit;
    return std::min<Clock::duration>(limit, *end - Clock::now());
  }
  [[nodiscard]] bool total_expired() const { return end && Clock::now() >= *end; }
};

Error transport_error(const beast::error_code& ec, const Url& server, const Deadline& deadline,
                      const HttpClientOptions& options, std::string_view during) {
  const std::string where = server.host + ":" + std::to_string(server.port);
  if (ec == beast::error::timeout || ec == asio::error::timed_out) {
    if (deadline.total_expired()) {
      return Error{Errc::upstream_timeout, "no complete answer from " + where + " within the total timeout of " +
                                               std::to_string(deadline.timeouts.total->count()) + " ms"};
    }
    return Error{Errc::upstream_timeout, "no data from " + where + " for " +
                                             std::to_string(deadline.timeouts.idle.count()) + " ms while " +
                                             std::string(during)};
  }
  if (ec == bhttp::error::body_limit) {
    return Error{Errc::upstream_error,
                 "response from " + where + " exceeds " + std::to_string(options.body_limit) + " bytes"};
  }
  if (ec == bhttp::error::header_limit) {
    return Error{Errc::upstream_error,
                 "response headers from " + where + " exceed " + std::to_string(options.header_limit) + " bytes"};
  }
  return Error{Errc::upstream_error, "HTTP exchange with " + where + " failed while " + std::string(during) + ": " +
                                         ec.message()};
}

bool is_idempotent(Verb method) {
  return method == Verb::get || method == Verb::head || method == Verb::options || method == Verb::put ||
         method == Verb::delete_;
}

}  // namespace

namespace detail {

void prepare_request(const Url& server, Request& request) {
  if (request.target().empty()) request.target(server.target);
  if (request.find(bhttp::field::host) == request.end()) request.set(bhttp::field::host, server.host_header());
  if (request.find(bhttp::field::user_agent) == request.end()) request.set(bhttp::field::user_agent, kUserAgent);
  request.prepare_payload();
}

// An IP literal (the usual enclave or local address) is its own answer: Asio's resolver would hand
// getaddrinfo to its own thread and back for every new connection, a cost that shows when
// connections beyond the pool come and go per request.
awaitable<Result<std::vector<tcp::endpoint>>> resolve(const Url& server, Clock::duration limit) {
  beast::error_code literal_ec;
  const auto address = asio::ip::make_address(server.host, literal_ec);
  if (!literal_ec) co_return std::vector<tcp::endpoint>{tcp::endpoint(address, server.port)};

  const auto executor = co_await asio::this_coro::executor;
  // Resolution has no built-in deadline: a timer cancels it.
  auto resolver = std::make_shared<tcp::resolver>(executor);
  asio::steady_timer timer(executor);
  timer.expires_after(limit);
  timer.async_wait([resolver](beast::error_code ec) {
    if (!ec) resolver->cancel();
  });
  auto [resolve_ec, results] = co_await resolver->async_resolve(server.host, std::to_string(server.port), kTuple);
  timer.cancel();
  if (resolve_ec == asio::error::operation_aborted) {
    co_return fail(Errc::upstream_timeout, "timed out resolving " + server.host);
  }
  if (resolve_ec) co_return fail(Errc::upstream_error, "cannot resolve " + server.host + ": " + resolve_ec.message());
  std::vector<tcp::endpoint> endpoints;
  for (const auto& entry : results) endpoints.push_back(entry.endpoint());
  co_return endpoints;
}

awaitable<Result<tcp::endpoint>> connect(beast::tcp_stream& stream, const Url& server, Clock::duration limit,
                                         std::chrono::milliseconds connect_timeout) {
  const std::string where = server.host + ":" + std::to_string(server.port);
  auto endpoints = co_await resolve(server, limit);
  if (!endpoints) co_return std::unexpected(endpoints.error());
  stream.expires_after(limit);
  auto [connect_ec, endpoint] = co_await stream.async_connect(*endpoints, kTuple);
  if (connect_ec == beast::error::timeout) {
    co_return fail(Errc::upstream_timeout,
                   "timed out connecting to " + where + " after " + std::to_string(connect_timeout.count()) + " ms");
  }
  if (connect_ec) co_return fail(Errc::upstream_error, "cannot connect to " + where + ": " + connect_ec.message());
  beast::error_code ignored;
  stream.socket().set_option(tcp::no_delay(true), ignored);
  co_return endpoint;
}

}  // namespace detail

namespace {

// The TLS handshake on a connected `connection`, within the connect timeout: SNI, verification of
// the certificate for server.host, and the origin's last session offered for resumption.
awaitable<Status> start_tls(HttpClient::Pool& pool, Connection& connection, const Url& server, const Deadline& deadline) {
  auto context = pool.tls_context();
  if (!context) co_return std::unexpected(context.error());
  connection.tls = std::make_unique<TlsStream>(connection.stream, **context);
  SSL* const ssl = connection.tls->native_handle();
  if (auto ready = prepare_client_tls(ssl, server.host); !ready) co_return ready;
  connection.sessions = pool.sessions;
  connection.session_key = pool_key(server);
  SSL_set_ex_data(ssl, HttpClient::Pool::connection_index(), &connection);
  connection.sessions->offer(connection.session_key, ssl);
  connection.stream.expires_after(deadline.bound(deadline.timeouts.connect));
  auto [ec] = co_await connection.tls->async_handshake(asio::ssl::stream_base::client, kTuple);
  connection.stream.expires_never();
  if (ec) {
    co_return std::unexpected(
        tls_handshake_error(ec, SSL_get_verify_result(ssl), server.host + ":" + std::to_string(server.port)));
  }
  co_return Status{};
}

awaitable<Result<std::unique_ptr<Connection>>> connect(HttpClient::Pool& pool, const Url& server,
                                                       const Deadline& deadline) {
  auto connection = std::make_unique<Connection>(co_await asio::this_coro::executor);
  auto endpoint = co_await detail::connect(connection->stream, server, deadline.bound(deadline.timeouts.connect),
                                           deadline.timeouts.connect);
  if (!endpoint) co_return std::unexpected(endpoint.error());
  connection->family = endpoint->protocol().family();
  beast::error_code ignored;
  connection->stream.socket().non_blocking(true, ignored);  // for send_request's first try
  if (server.secure()) {
    if (auto secured = co_await start_tls(pool, *connection, server, deadline); !secured)
      co_return std::unexpected(secured.error());
  }
  co_return connection;
}

// Over TLS: head and body as one record, under the stream's timeout.
awaitable<beast::error_code> send_request_tls(Connection& connection, const Request& request) {
  if (request.chunked()) {
    auto [ec, n] = co_await bhttp::async_write(*connection.tls, request, kTuple);
    co_return ec;
  }
  std::string wire = detail::serialize_head(request.base());
  wire += request.body();
  auto [ec, n] = co_await asio::async_write(*connection.tls, asio::buffer(wire), kTuple);
  co_return ec;
}

// Head and body in one send, usually taken whole by the non-blocking socket at once (no trip
// through the event loop, no Beast serializer); the rest, if any, under the stream's timeout.
awaitable<beast::error_code> send_request(Connection& connection, const Request& request) {
  if (connection.tls) co_return co_await send_request_tls(connection, request);
  if (request.chunked()) {
    auto [ec, n] = co_await bhttp::async_write(connection.stream, request, kTuple);
    co_return ec;
  }
  const std::string head = detail::serialize_head(request.base());
  const std::array buffers{asio::buffer(head), asio::buffer(request.body())};
  beast::buffers_suffix<std::array<asio::const_buffer, 2>> rest(buffers);
  beast::error_code ec;
  rest.consume(connection.stream.socket().write_some(rest, ec));
  if (ec == asio::error::would_block || ec == asio::error::try_again) ec = {};
  if (!ec && beast::buffer_bytes(rest) > 0) {
    auto [rest_ec, n] = co_await asio::async_write(connection.stream, rest, kTuple);
    ec = rest_ec;
  }
  co_return ec;
}

std::string_view buffered(const beast::flat_buffer& buffer) {
  return {static_cast<const char*>(buffer.data().data()), buffer.size()};
}

// Reads through a connection's TLS layer, for detail::read_message. A server that closes without
// TLS's close_notify (most HTTP servers do) ends the connection as a plain one does: the
// parser then decides whether that cut a message (the payload has its own end-to-end integrity).
struct TlsReader {
  TlsStream& tls;
  template <class Token>
  awaitable<std::tuple<beast::error_code, std::size_t>> async_read_some(asio::mutable_buffer space, Token /*token*/) {
    auto [ec, n] = co_await tls.async_read_some(space, kTuple);
    if (ec == asio::ssl::error::stream_truncated) ec = asio::error::eof;
    co_return std::tuple{ec, n};
  }
};

// One read of whatever arrives, straight from the socket or through the TLS layer.
awaitable<std::tuple<beast::error_code, std::size_t>> read_available(Connection& connection,
                                                                asio::mutable_buffer space) {
  if (connection.tls) co_return co_await TlsReader{*connection.tls}.async_read_some(space, kTuple);
  co_return co_await connection.stream.socket().async_read_some(space, kTuple);
}

// The tls_error for a plain http:// request answered by a TLS port.
Error plain_to_tls_port(const Url& server) {
  return Error{Errc::tls_error, server.origin() + " is a TLS port: use https://"};
}

// How TLS servers answer a plain HTTP request (nginx; Go and Apache httpd say the second).
bool says_plain_http_to_tls_port(const Response& response) {
  if (response.result() != bhttp::status::bad_request) return false;
  const std::string_view body = response.body();
  return body.find("plain HTTP request was sent to HTTPS port") != std::string_view::npos ||
         body.find("HTTP request to an HTTPS server") != std::string_view::npos;
}

struct Failure {
  Error error;
  bool retryable = false;
};

// Borrows or opens a connection, sends `request` and reads the response head into `parser`.
template <class Parser>
awaitable<std::expected<std::unique_ptr<Connection>, Failure>> send_and_read_head(
    HttpClient::Pool& pool, const Url& server, const Request& request, Parser& parser, const Deadline& deadline,
    bool allow_pooled) {
  const HttpClientOptions& options = pool.options;
  const auto executor = co_await asio::this_coro::executor;
  std::unique_ptr<Connection> connection;
  if (allow_pooled) connection = pool.take(pool_key(server), executor);
  const bool reused = connection != nullptr;
  if (!connection) {
    auto fresh = co_await connect(pool, server, deadline);
    if (!fresh) co_return std::unexpected(Failure{fresh.error(), false});
    connection = std::move(*fresh);
  }

  connection->stream.expires_after(deadline.bound(deadline.timeouts.idle));
  auto write_ec = co_await send_request(*connection, request);
  // A server may answer before it has read the whole body (413 for a body over its limit) and
  // close: that answer is read below and reported instead of the failed write.
  const bool answered_early = !reused && (write_ec == asio::error::broken_pipe || write_ec == asio::error::connection_reset);
  if (write_ec && !answered_early) {
    // A reused connection the server had already closed: the request did not get through.
    co_return std::unexpected(
        Failure{transport_error(write_ec, server, deadline, options, "sending the request"), reused});
  }
  // The watchdog bounds the reads from here on (the TLS layer reads through the timed stream).
  connection->stream.expires_never();
  connection->watchdog.begin_for(deadline.timeouts.idle, deadline.end);
  beast::error_code read_ec;
  if (connection->tls) {
    TlsReader reader{*connection->tls};
    read_ec = co_await detail::read_message(reader, connection->buffer, parser, false);
  } else {
    read_ec = co_await detail::read_message(connection->stream.socket(), connection->buffer, parser, false);
  }
  connection->watchdog.end();
  if (read_ec && connection->watchdog.expired()) read_ec = beast::error::timeout;
  if (read_ec && !server.secure() && looks_like_tls(buffered(connection->buffer))) {
    co_return std::unexpected(Failure{plain_to_tls_port(server), false});  // it answered with a TLS record
  }
  if (read_ec && answered_early) {
    co_return std::unexpected(Failure{transport_error(write_ec, server, deadline, options, "sending the request"), false});
  }
  if (read_ec) {
    const bool nothing_received = !parser.got_some() && read_ec != beast::error::timeout;
    co_return std::unexpected(Failure{transport_error(read_ec, server, deadline, options, "waiting for the response"),
                                      reused && nothing_received && is_idempotent(request.method())});
  }
  co_return connection;
}

// Pools the connection after a complete, clean response that allows keep-alive.
void release(HttpClient::Pool& pool, const Url& server, std::unique_ptr<Connection> connection, bool keep_alive) {
  if (!keep_alive || connection->buffer.size() != 0) return;
  // The room a large answer's reads took (detail::BodyReadSpace) is not kept while idle.
  if (connection->buffer.capacity() > kMaxPooledReadBuffer) {
    connection->buffer.shrink_to_fit();
    connection->buffer.reserve(kConnectionReadBuffer);
  }
  connection->watchdog.disarm();
  pool.put(pool_key(server), std::move(connection));
}

template <class Parser>
void limit_parser(Parser& parser, const Request& request, const HttpClientOptions& options) {
  parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(options.header_limit, UINT32_MAX)));
  // A HEAD answer announces a body it never sends.
  if (request.method() == Verb::head) parser.skip(true);
}

// The body of a streamed response: what each read brings is appended to a string that
// read_some() hands out. Unlike string_body it reserves nothing up front, so an upstream that
// announces a huge Content-Length cannot make us allocate it.
struct StreamedBody {
  using value_type = std::string;

  class reader {
   public:
    template <bool isRequest, class Fields>
    reader(bhttp::header<isRequest, Fields>& /*head*/, value_type& body) : body_(body) {}
    void init(const boost::optional<std::uint64_t>& /*length*/, beast::error_code& ec) { ec = {}; }
    template <class ConstBufferSequence>
    std::size_t put(const ConstBufferSequence& buffers, beast::error_code& ec) {
      ec = {};
      std::size_t total = 0;
      for (const auto buffer : beast::buffers_range_ref(buffers)) {
        body_.append(static_cast<const char*>(buffer.data()), buffer.size());
        total += buffer.size();
      }
      return total;
    }
    void finish(beast::error_code& ec) { ec = {}; }

   private:
    value_type& body_;
  };
};

class StreamImpl final : public ResponseStream {
 public:
  StreamImpl(std::shared_ptr<HttpClient::Pool> pool, Url server, Deadline deadline)
      : pool_(std::move(pool)), server_(std::move(server)), deadline_(std::move(deadline)) {
    parser_.body_limit(boost::none);
  }

  [[nodiscard]] const ResponseHeader& header() const override { return parser_.get().base(); }

  awaitable<Result<std::optional<std::string>>> read_some() override {
    if (cancelled_) co_return fail(Errc::upstream_error, "the response stream was cancelled");
    if (error_) co_return std::unexpected(*error_);
    if (finished_) co_return std::nullopt;
    auto& buffer = connection_->buffer;
    for (;;) {
      // The body taken from these bytes is never longer than they are: one allocation, where
      // appending chunk by chunk would grow the string several times per read.
      parser_.get().body().reserve(buffer.size());
      // Every HTTP chunk already received first, so a burst of events is handed out (and
      // forwarded) at once, as nginx does.
      beast::error_code ec = detail::parse_buffered(parser_, buffer, [this] { return parser_.is_done(); });
      if (!ec) {
        if (parser_.is_done()) complete();
        if (auto& body = parser_.get().body(); !body.empty()) co_return std::exchange(body, std::string());
        if (finished_) co_return std::nullopt;
        // One read straight from the socket (Beast's read_some would wrap it in its own operation).
        const std::size_t space =
            read_space_.next(buffer.capacity() - buffer.size(), parser_.content_length_remaining());
        connection_->watchdog.begin_for(deadline_.timeouts.idle, deadline_.end);
        auto [read_ec, n] = co_await read_available(*connection_, buffer.prepare(space));
        connection_->watchdog.end();
        buffer.commit(n);
        read_space_.read(space, n);
        if (cancelled_) co_return fail(Errc::upstream_error, "the response stream was cancelled");
        ec = read_ec;
        // A body may end with the connection; any other body cut by it is a partial message.
        if (ec == asio::error::eof) {
          parser_.put_eof(ec);
        } else if (ec && connection_->watchdog.expired()) {
          ec = beast::error::timeout;
        }
      }
      if (ec) {
        error_ = transport_error(ec, server_, deadline_, pool_->options, "reading the response body");
        connection_.reset();
        co_return std::unexpected(*error_);
      }
    }
  }

  [[nodiscard]] bool finished() const override { return finished_; }

  void recycle(std::string spent) override {
    auto& body = parser_.get().body();
    if (body.empty() && spent.capacity() > body.capacity()) {
      spent.clear();
      body = std::move(spent);
    }
  }

  void cancel() override {
    cancelled_ = true;
    if (connection_) connection_->stream.close();
  }

  bhttp::response_parser<StreamedBody>& parser() { return parser_; }
  void attach(std::unique_ptr<Connection> connection) { connection_ = std::move(connection); }

 private:
  // The whole body is in: the connection goes back to the pool at once.
  void complete() {
    finished_ = true;
    release(*pool_, server_, std::move(connection_), parser_.keep_alive());
  }

  std::shared_ptr<HttpClient::Pool> pool_;
  Url server_;
  Deadline deadline_;
  bhttp::response_parser<StreamedBody> parser_;
  std::unique_ptr<Connection> connection_;
  detail::BodyReadSpace read_space_;
  std::optional<Error> error_;
  bool cancelled_ = false;
  bool finished_ = false;
};

}  // namespace

awaitable<Result<std::string>> ResponseStream::read_all(std::uint64_t limit) {
  std::string body;
  for (;;) {
    auto bytes = co_await read_some();
    if (!bytes) co_return std::unexpected(bytes.error());
    if (!*bytes) co_return body;
    if (body.size() + (*bytes)->size() > limit) {
      cancel();
      co_return fail(Errc::upstream_error, "response body exceeds " + std::to_string(limit) + " bytes");
    }
    body += **bytes;
  }
}

HttpClient::HttpClient(HttpClientOptions options) : pool_(std::make_shared<Pool>(std::move(options))) {}
HttpClient::~HttpClient() = default;

const HttpClientOptions& HttpClient::options() const { return pool_->options; }
std::size_t HttpClient::idle_connections() const { return pool_->count(); }
Result<std::shared_ptr<TlsContext>> HttpClient::tls_context() const { return pool_->tls_context(); }

awaitable<Result<Response>> HttpClient::request(Url server, Request request, Timeouts timeouts) {
  const std::shared_ptr<Pool> pool = pool_;  // keeps the pool alive for the whole exchange
  const HttpClientOptions& options = pool->options;
  detail::prepare_request(server, request);
  const Deadline deadline(timeouts);
  for (int attempt = 0;; ++attempt) {
    bhttp::response_parser<bhttp::string_body> parser;
    limit_parser(parser, request, options);
    parser.body_limit(options.body_limit);
    auto connection = co_await send_and_read_head(*pool, server, request, parser, deadline, attempt == 0);
    if (!connection) {
      if (connection.error().retryable && attempt == 0) continue;
      co_return std::unexpected(connection.error().error);
    }
    auto& stream = (*connection)->stream;
    while (!parser.is_done()) {
      stream.expires_after(deadline.bound(timeouts.idle));
      auto [ec, n] = (*connection)->tls
                         ? co_await bhttp::async_read_some(*(*connection)->tls, (*connection)->buffer, parser, kTuple)
                         : co_await bhttp::async_read_some(stream, (*connection)->buffer, parser, kTuple);
      if (ec == asio::ssl::error::stream_truncated) {  // see TlsReader
        parser.put_eof(ec);
        if (!ec && !parser.is_done()) ec = bhttp::error::partial_message;
      }
      if (ec) co_return std::unexpected(transport_error(ec, server, deadline, options, "reading the response body"));
    }
    // The parser's keep_alive() is also false for a body that ended with the connection.
    const bool keep_alive = parser.keep_alive();
    Response response = parser.release();
    release(*pool, server, std::move(*connection), keep_alive);
    if (!server.secure() && says_plain_http_to_tls_port(response)) co_return std::unexpected(plain_to_tls_port(server));
    co_return response;
  }
}

awaitable<Result<std::unique_ptr<ResponseStream>>> HttpClient::open(Url server, Request request, Timeouts timeouts) {
  const std::shared_ptr<Pool> pool = pool_;
  const HttpClientOptions& options = pool->options;
  detail::prepare_request(server, request);
  const Deadline deadline(timeouts);
  for (int attempt = 0;; ++attempt) {
    auto stream = std::make_unique<StreamImpl>(pool, server, deadline);
    limit_parser(stream->parser(), request, options);
    auto connection = co_await send_and_read_head(*pool, server, request, stream->parser(), deadline, attempt == 0);
    if (!connection) {
      if (connection.error().retryable && attempt == 0) continue;
      co_return std::unexpected(connection.error().error);
    }
    stream->attach(std::move(*connection));
    co_return std::unique_ptr<ResponseStream>(std::move(stream));
  }
}

Request make_request(Verb method, std::string target, std::string body, std::string_view content_type) {
  Request request{method, std::move(target), kHttp11};
  if (!body.empty()) request.set(bhttp::field::content_type, content_type);
  request.body() = std::move(body);
  request.prepare_payload();
  return request;
}

Result<Response> fetch(std::string_view method, std::string_view url, std::string body, const Fields& headers,
                       std::chrono::milliseconds timeout, HttpClientOptions client_options) {
  auto server = parse_url(url);
  if (!server) return std::unexpected(server.error());
  const Verb verb = bhttp::string_to_verb(method);
  if (verb == Verb::unknown) return fail(Errc::invalid_request, "unknown HTTP method '" + std::string(method) + "'");
  Request request = make_request(verb, server->target, std::move(body));
  for (const auto& field : headers) request.set(field.name_string(), field.value());

  asio::io_context context;
  std::optional<Result<Response>> outcome;
  HttpClient client(std::move(client_options));
  asio::co_spawn(context, client.request(*server, std::move(request), Timeouts{timeout, timeout, timeout}),
                 [&outcome](std::exception_ptr error, Result<Response> result) {
                   if (error) {
                     outcome = fail(Errc::internal_error, "HTTP request failed unexpectedly");
                   } else {
                     outcome = std::move(result);
                   }
                 });
  context.run();
  if (!outcome) return fail(Errc::internal_error, "HTTP request did not complete");
  return std::move(*outcome);
}

}  // namespace rvenc::http
