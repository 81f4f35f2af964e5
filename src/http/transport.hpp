// The byte stream under one server connection: plain TCP, or TLS over TCP (tls_server.hpp). The
// HTTP/1.1 and rvenc-mux session code reads and writes through it without knowing which.
//
// Design: one class with a runtime branch per operation rather than templates over the stream
// type, so server.cpp and mux_server.cpp stay one compiled copy each. Plain TCP keeps its fast
// path (non-blocking write_some straight to the socket, see ConnectionWriter); over TLS there is no
// such path (a record half-written by a non-blocking write cannot be taken back), so writers use the
// asynchronous write, which sends at once when the socket has room. Deadlines stay with the
// callers (OperationWatchdog, or write_message's timeout); over TLS every other operation first
// clears the tcp_stream's expiry, so the deadline of an earlier message write never cuts a later
// read.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <tuple>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/write.hpp>

namespace rvenc::http::detail {

class Transport {
 public:
  using IoResult = std::tuple<boost::beast::error_code, std::size_t>;

  // Plain TCP when `tls` is null; otherwise TLS with that context (the handshake is accept()).
  Transport(boost::asio::ip::tcp::socket socket, std::shared_ptr<boost::asio::ssl::context> tls)
      : context_(std::move(tls)) {
    if (context_) tls_.emplace(boost::beast::tcp_stream(std::move(socket)), *context_);
    else plain_.emplace(std::move(socket));
  }

  [[nodiscard]] bool tls() const { return tls_.has_value(); }
  [[nodiscard]] boost::beast::tcp_stream& tcp() { return tls_ ? tls_->next_layer() : *plain_; }
  [[nodiscard]] boost::asio::ip::tcp::socket& socket() { return tcp().socket(); }

  // The TLS server handshake; `received` holds bytes already read from the socket (the
  // ClientHello's start). Returns how many of them the handshake used.
  boost::asio::awaitable<IoResult> accept(boost::asio::const_buffer received) {
    tls_->next_layer().expires_never();
    co_return co_await tls_->async_handshake(boost::asio::ssl::stream_base::server, received, kTuple);
  }

  boost::asio::awaitable<IoResult> read_some(boost::asio::mutable_buffer buffer) {
    if (!tls_) co_return co_await plain_->socket().async_read_some(buffer, kTuple);
    tls_->next_layer().expires_never();
    co_return co_await tls_->async_read_some(buffer, kTuple);
  }
  // For detail::read_message (wire.hpp), which reads with a stream's async_read_some(buffer, token).
  template <class Token>
  boost::asio::awaitable<IoResult> async_read_some(boost::asio::mutable_buffer buffer, Token /*as_tuple*/) {
    return read_some(buffer);
  }

  // Writes all of `buffers`; the caller bounds the wait.
  template <class Buffers>
  boost::asio::awaitable<IoResult> write(const Buffers& buffers) {
    if (!tls_) co_return co_await boost::asio::async_write(plain_->socket(), buffers, kTuple);
    tls_->next_layer().expires_never();
    co_return co_await boost::asio::async_write(*tls_, buffers, kTuple);
  }

  // Writes a whole Beast message within `timeout`.
  template <class Message>
  boost::asio::awaitable<IoResult> write_message(Message& message, std::chrono::milliseconds timeout) {
    tcp().expires_after(timeout);
    if (!tls_) co_return co_await boost::beast::http::async_write(*plain_, message, kTuple);
    co_return co_await boost::beast::http::async_write(*tls_, message, kTuple);
  }

  // Closes the socket at once (no TLS close_notify): pending operations fail.
  void close() {
    boost::beast::error_code ignored;
    socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
    tcp().close();
  }

 private:
  static constexpr auto kTuple = boost::asio::as_tuple(boost::asio::use_awaitable);
  std::shared_ptr<boost::asio::ssl::context> context_;  // outlives tls_ (declared first)
  std::optional<boost::beast::tcp_stream> plain_;
  std::optional<boost::asio::ssl::stream<boost::beast::tcp_stream>> tls_;
};

}  // namespace rvenc::http::detail
