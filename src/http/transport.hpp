// The byte stream under one server connection: plain TCP, or TLS over TCP (tls_server.hpp). The
// HTTP/1.1 and rvenc-mux session code reads and writes through it without knowing which.
//
// Design: one class with a runtime branch per operation rather than templates over the stream
// type, so server.cpp and mux_server.cpp stay one compiled copy each. TLS runs OpenSSL straight on
// the non-blocking socket (its socket BIO, as nginx does) instead of Asio's ssl::stream, whose
// engine keeps two 17 KiB vectors and a 2 x 17 KiB BIO pair per connection for its whole life and
// copies every record through them; OpenSSL's own buffers are released while a connection is idle
// (SSL_MODE_RELEASE_BUFFERS), so an open TLS stream costs little more than a plain one (bench
// --tls). Asio only waits for readiness (async_wait) when OpenSSL asks to (WANT_READ/WANT_WRITE).
// Both transports have the same non-blocking fast path, write_now(): plain bytes go to the socket,
// TLS bytes become one record (a gather list is joined first: one record and one send per chunk,
// not one per piece). What write_now() did not take must be written next, and first (a TLS record
// half sent is completed by retrying the same bytes; partial writes and moving retry buffers are
// allowed). Deadlines stay with the callers (OperationWatchdog, or write_message's timer). After
// close() no OpenSSL call touches the descriptor again (its number may belong to a new socket).
#pragma once

#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_range.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "wire.hpp"

namespace rvenc::http::detail {

// OpenSSL's socket BIO writes with write(2), which raises SIGPIPE on a connection the peer reset;
// this one sends with MSG_NOSIGNAL (as Asio does) and reads with recv(2). The descriptor is the
// BIO's data. Made once per process.
inline int socket_bio_fd(BIO* bio) { return static_cast<int>(reinterpret_cast<std::intptr_t>(BIO_get_data(bio))); }

inline int socket_bio_result(BIO* bio, ssize_t n, bool reading) {
  BIO_clear_retry_flags(bio);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    if (reading) BIO_set_retry_read(bio);
    else BIO_set_retry_write(bio);
  }
  return static_cast<int>(n);
}

inline BIO_METHOD* nosignal_socket_bio() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "rvenc socket");
    BIO_meth_set_write(m, [](BIO* bio, const char* data, int size) {
      return socket_bio_result(bio, ::send(socket_bio_fd(bio), data, static_cast<std::size_t>(size), MSG_NOSIGNAL), false);
    });
    BIO_meth_set_read(m, [](BIO* bio, char* data, int size) {
      return socket_bio_result(bio, ::recv(socket_bio_fd(bio), data, static_cast<std::size_t>(size), 0), true);
    });
    BIO_meth_set_ctrl(m, [](BIO*, int command, long, void*) -> long { return command == BIO_CTRL_FLUSH ? 1 : 0; });
    BIO_meth_set_create(m, [](BIO* bio) {
      BIO_set_init(bio, 1);
      return 1;
    });
    return m;
  }();
  return method;
}

class Transport {
 public:
  using IoResult = std::tuple<boost::beast::error_code, std::size_t>;

  // Plain TCP when `tls` is null; otherwise TLS with that context (the handshake is accept()).
  Transport(boost::asio::ip::tcp::socket socket, std::shared_ptr<boost::asio::ssl::context> tls)
      : context_(std::move(tls)), tcp_(std::move(socket)) {
    if (!context_) return;
    // OpenSSL reads and writes the descriptor itself: it must never block the event loop.
    boost::beast::error_code ignored;
    tcp_.socket().non_blocking(true, ignored);
    ssl_.reset(SSL_new(context_->native_handle()));
    if (ssl_) {
      SSL_set_mode(ssl_.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                   SSL_MODE_RELEASE_BUFFERS);
      SSL_set_accept_state(ssl_.get());
      BIO* bio = BIO_new(nosignal_socket_bio());
      if (bio == nullptr) {
        ssl_.reset();
        return;
      }
      BIO_set_data(bio, reinterpret_cast<void*>(static_cast<std::intptr_t>(tcp_.socket().native_handle())));
      SSL_set_bio(ssl_.get(), bio, bio);  // the SSL owns it
    }
  }
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  [[nodiscard]] bool tls() const { return context_ != nullptr; }
  [[nodiscard]] boost::beast::tcp_stream& tcp() { return tcp_; }
  [[nodiscard]] boost::asio::ip::tcp::socket& socket() { return tcp_.socket(); }

  // The TLS server handshake. The ClientHello must still be unread on the socket (peek at it).
  boost::asio::awaitable<IoResult> accept() {
    co_return co_await run_ssl([this](std::size_t& n) {
      n = 0;
      return SSL_do_handshake(ssl_.get());
    });
  }

  boost::asio::awaitable<IoResult> read_some(boost::asio::mutable_buffer buffer) {
    if (!tls()) co_return co_await tcp_.socket().async_read_some(buffer, kTuple);
    if (buffer.size() == 0) co_return IoResult{};
    co_return co_await run_ssl(
        [this, buffer](std::size_t& n) { return SSL_read_ex(ssl_.get(), buffer.data(), buffer.size(), &n); });
  }
  // For detail::read_message (wire.hpp), which reads with a stream's async_read_some(buffer, token).
  template <class Token>
  boost::asio::awaitable<IoResult> async_read_some(boost::asio::mutable_buffer buffer, Token /*as_tuple*/) {
    return read_some(buffer);
  }

  // Sends what the socket takes now without waiting; how many bytes of `buffers` were taken.
  // would_block (or try_again) in `ec` when the rest must wait: write it next, before anything else.
  template <class Buffers>
  std::size_t write_now(const Buffers& buffers, boost::beast::error_code& ec) {
    ec = {};
    if (!tls()) return tcp_.socket().write_some(buffers, ec);
    std::string storage;
    const std::string_view joined = contiguous(buffers, storage);
    std::size_t taken = 0;
    while (taken < joined.size() && !ec) {
      std::size_t n = 0;
      const int result = ssl_call([&](std::size_t& out) {
        return SSL_write_ex(ssl_.get(), joined.data() + taken, joined.size() - taken, &out);
      }, n);
      if (result == 1) taken += n;
      else ec = error_of(result);
    }
    return taken;
  }

  // Writes all of `buffers`; the caller bounds the wait.
  template <class Buffers>
  boost::asio::awaitable<IoResult> write(const Buffers& buffers) {
    if (!tls()) co_return co_await boost::asio::async_write(tcp_.socket(), buffers, kTuple);
    std::string storage;
    const std::string_view joined = contiguous(buffers, storage);
    std::size_t written = 0;
    while (written < joined.size()) {
      auto [ec, n] = co_await run_ssl([&](std::size_t& out) {
        return SSL_write_ex(ssl_.get(), joined.data() + written, joined.size() - written, &out);
      });
      written += n;
      if (ec) co_return IoResult{ec, written};
    }
    co_return IoResult{boost::beast::error_code{}, written};
  }

  // Writes a whole Beast message within `timeout` (the connection is closed when it passes).
  template <class Message>
  boost::asio::awaitable<IoResult> write_message(Message& message, std::chrono::milliseconds timeout) {
    boost::asio::steady_timer deadline(co_await boost::asio::this_coro::executor, timeout);
    // Expired while this Transport may be gone already: the handler only closes a live one.
    deadline.async_wait([alive = std::weak_ptr<Transport*>(self_)](const boost::beast::error_code& ec) {
      if (auto self = alive.lock(); self && !ec) (*self)->close();
    });
    const std::string head = serialize_head(message.base());
    auto result = co_await write(std::array{boost::asio::const_buffer(boost::asio::buffer(head)), body_of(message)});
    deadline.cancel();
    co_return result;
  }

  // Closes the socket at once (no TLS close_notify): pending operations fail.
  void close() {
    boost::beast::error_code ignored;
    socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
    tcp_.close();
  }

 private:
  struct SslFree {
    void operator()(SSL* ssl) const { SSL_free(ssl); }
  };
  static constexpr auto kTuple = boost::asio::as_tuple(boost::asio::use_awaitable);

  // The bytes of `buffers` in one piece: the one non-empty buffer itself, or joined in `storage`.
  template <class Buffers>
  static std::string_view contiguous(const Buffers& buffers, std::string& storage) {
    std::string_view only;
    std::size_t pieces = 0;
    for (const boost::asio::const_buffer piece : boost::beast::buffers_range_ref(buffers)) {
      if (piece.size() == 0) continue;
      if (++pieces > 1) break;
      only = std::string_view(static_cast<const char*>(piece.data()), piece.size());
    }
    if (pieces <= 1) return only;
    storage = boost::beast::buffers_to_string(buffers);
    return storage;
  }
  template <class Fields>
  static boost::asio::const_buffer body_of(boost::beast::http::response<boost::beast::http::empty_body, Fields>&) {
    return {};
  }
  template <class Message>
  static boost::asio::const_buffer body_of(Message& message) {
    return boost::asio::buffer(message.body());
  }

  // One OpenSSL call on this connection: its result (1 = done), `n` what it moved. Never on a
  // closed descriptor (the call is then not made and fails as SSL_ERROR_SYSCALL with EBADF).
  template <class Call>
  int ssl_call(Call&& call, std::size_t& n) {
    n = 0;
    if (!ssl_ || !tcp_.socket().is_open()) {
      last_error_ = SSL_ERROR_SYSCALL;
      errno_ = EBADF;
      return -1;
    }
    ERR_clear_error();
    errno = 0;
    const int result = call(n);
    if (result != 1) {
      last_error_ = SSL_get_error(ssl_.get(), result);
      errno_ = errno;
      ssl_reason_ = ERR_peek_last_error();
    }
    return result;
  }

  // The error of the last failed ssl_call: would_block while OpenSSL waits for the socket.
  boost::beast::error_code error_of(int /*result*/) const {
    namespace error = boost::asio::error;
    switch (last_error_) {
      case SSL_ERROR_WANT_READ:
      case SSL_ERROR_WANT_WRITE:
        return error::would_block;
      case SSL_ERROR_ZERO_RETURN:
        return error::eof;  // close_notify
      case SSL_ERROR_SYSCALL:
        if (errno_ != 0) return {errno_, boost::system::system_category()};
        return boost::asio::ssl::error::stream_truncated;  // closed without close_notify
      default:
        if (ERR_GET_REASON(ssl_reason_) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
          return boost::asio::ssl::error::stream_truncated;
        return {static_cast<int>(ssl_reason_ != 0 ? ssl_reason_ : 1), boost::asio::error::get_ssl_category()};
    }
  }

  // Runs `call` until it is done, waiting for the socket whenever OpenSSL asks to.
  template <class Call>
  boost::asio::awaitable<IoResult> run_ssl(Call call) {
    namespace asio = boost::asio;
    for (;;) {
      std::size_t n = 0;
      const int result = ssl_call(call, n);
      if (result == 1) co_return IoResult{boost::beast::error_code{}, n};
      if (last_error_ != SSL_ERROR_WANT_READ && last_error_ != SSL_ERROR_WANT_WRITE)
        co_return IoResult{error_of(result), 0};
      const auto wait = last_error_ == SSL_ERROR_WANT_READ ? asio::socket_base::wait_read : asio::socket_base::wait_write;
      auto [ec] = co_await tcp_.socket().async_wait(wait, kTuple);
      if (ec) co_return IoResult{ec, 0};
    }
  }

  std::shared_ptr<boost::asio::ssl::context> context_;  // outlives ssl_ (declared first)
  boost::beast::tcp_stream tcp_;
  std::unique_ptr<SSL, SslFree> ssl_;
  std::shared_ptr<Transport*> self_ = std::make_shared<Transport*>(this);
  int last_error_ = SSL_ERROR_NONE;
  int errno_ = 0;
  unsigned long ssl_reason_ = 0;
};

}  // namespace rvenc::http::detail
