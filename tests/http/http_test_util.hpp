// Helpers for the HTTP tests: a real server on 127.0.0.1 port 0 in background threads, a
// coroutine runner for client code, a raw POSIX connection for malformed/slow clients, and a
// Gate that lets a test release a waiting handler (a signal, never a sleep).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <string>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/parser.hpp>

#include "rvenc/http/client.hpp"
#include "rvenc/http/server.hpp"
#include "rvenc/http/url.hpp"
#include "support/test_support.hpp"

namespace rvenc::http::test {

inline constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
// Guards against hangs only; never asserted on.
inline constexpr int kRawReceiveGuardSeconds = 20;

struct TestServer {
  std::unique_ptr<Server> server;
  Url url;

  explicit TestServer(Handler handler, ServerOptions options = {}) {
    options.host = "127.0.0.1";
    options.port = 0;
    auto created = Server::create(std::move(options), std::move(handler));
    if (!created) throw std::runtime_error(created.error().to_string());
    server = std::move(*created);
    url = *parse_url(server->url());
    server->start();
  }
  ~TestServer() {
    server->stop(std::chrono::milliseconds(0));
    server->wait();
  }
  [[nodiscard]] std::string at(const std::string& path) const { return url.origin() + path; }
};

// Runs the coroutine made by `make` on a fresh io_context in this thread; rethrows its exception.
template <class MakeCoroutine>
void run_coroutine(MakeCoroutine&& make) {
  asio::io_context context;
  std::exception_ptr failure;
  asio::co_spawn(context, make(), [&failure](std::exception_ptr error) { failure = error; });
  context.run();
  if (failure) std::rethrow_exception(failure);
}

// A one-shot latch a handler can co_await and a test thread can open. The timer lives in the
// waiting coroutine, so it never outlives the server's io_context.
class Gate {
 public:
  awaitable<void> wait() {
    asio::steady_timer timer(co_await asio::this_coro::executor, asio::steady_timer::time_point::max());
    {
      std::lock_guard lock(mutex_);
      if (opened_) co_return;
      timer_ = &timer;
    }
    co_await timer.async_wait(kTuple);
    std::lock_guard lock(mutex_);
    timer_ = nullptr;
  }
  void open() {
    std::lock_guard lock(mutex_);
    opened_ = true;
    if (timer_) {
      asio::post(timer_->get_executor(), [this] {
        std::lock_guard inner(mutex_);
        if (timer_) timer_->cancel();
      });
    }
  }

 private:
  std::mutex mutex_;
  bool opened_ = false;
  asio::steady_timer* timer_ = nullptr;
};

// A one-connection server answering with canned bytes (what a real server would never send):
// accepts once, reads the request head (and a Content-Length body), writes `answer`, and closes;
// or, with AfterAnswer::stay_open, keeps the connection open and silent until it is destroyed
// (an upstream that neither closes nor sends more). `sent` is ready once all of `answer` was
// sent: on loopback, that means it is in the client's receive buffer.
class CannedServer {
 public:
  enum class AfterAnswer { close, stay_open };

  explicit CannedServer(std::string answer, AfterAnswer after = AfterAnswer::close) {
    std::uint16_t port = 0;
    listener_ = rvenc::test::listen_on_loopback(1, port);
    url = *parse_url("http://127.0.0.1:" + std::to_string(port));
    received = received_promise_.get_future();
    sent = sent_promise_.get_future();
    thread_ = std::thread([this, answer = std::move(answer), after, release = release_.get_future()] {
      const int fd = ::accept(listener_, nullptr, nullptr);
      if (fd < 0) {
        received_promise_.set_value({});
        sent_promise_.set_value();
        return;
      }
      received_promise_.set_value(read_request(fd));
      std::size_t off = 0;
      while (off < answer.size()) {
        const auto n = ::send(fd, answer.data() + off, answer.size() - off, MSG_NOSIGNAL);
        if (n <= 0) break;
        off += static_cast<std::size_t>(n);
      }
      sent_promise_.set_value();
      if (after == AfterAnswer::stay_open) release.wait();
      ::close(fd);
    });
  }
  ~CannedServer() {
    release_.set_value();
    ::shutdown(listener_, SHUT_RDWR);  // ends an accept() still waiting
    thread_.join();
    ::close(listener_);
  }
  CannedServer(const CannedServer&) = delete;
  CannedServer& operator=(const CannedServer&) = delete;

  Url url;
  std::future<std::string> received;  // the request's bytes, head and body
  std::future<void> sent;

 private:
  // The head, then as many body bytes as its Content-Length announces.
  static std::string read_request(int fd) {
    std::string request;
    char buffer[4096];
    std::size_t expected = std::string::npos;
    while (request.size() < expected) {
      if (const auto head_end = expected == std::string::npos ? request.find("\r\n\r\n") : std::string::npos;
          head_end != std::string::npos) {
        const auto field = request.find("\r\nContent-Length: ");
        expected = head_end + 4 + (field < head_end ? std::stoul(request.substr(field + 18)) : 0);
        continue;
      }
      const auto n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      request.append(buffer, static_cast<std::size_t>(n));
    }
    return request;
  }

  int listener_ = -1;
  std::promise<std::string> received_promise_;
  std::promise<void> sent_promise_;
  std::promise<void> release_;
  std::thread thread_;
};

// A blocking POSIX client for bytes a real HTTP client would never send.
class RawConnection {
 public:
  explicit RawConnection(std::uint16_t port) {
    fd_ = rvenc::test::connect_to_loopback(port);
    if (fd_ < 0) throw std::runtime_error("raw connect failed");
    timeval guard{kRawReceiveGuardSeconds, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &guard, sizeof guard);
  }
  ~RawConnection() { ::close(fd_); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  void send(std::string_view bytes) {
    while (!bytes.empty()) {
      const auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error("raw send failed");
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  // Ends our side of the connection (the server reads EOF).
  void shutdown_send() { ::shutdown(fd_, SHUT_WR); }

  // One complete response; nullopt when the connection ended (or the guard expired) first.
  std::optional<Response> read_response() {
    beast::http::response_parser<beast::http::string_body> parser;
    parser.eager(true);
    for (;;) {
      while (!pending_.empty() && !parser.is_done()) {
        beast::error_code ec;
        const auto used = parser.put(asio::buffer(pending_), ec);
        pending_.erase(0, used);
        if (ec == beast::http::error::need_more) break;
        if (ec) return std::nullopt;
        if (used == 0) break;
      }
      if (parser.is_done()) return parser.release();
      if (!receive()) return std::nullopt;
    }
  }

  // Every byte until the server closes the connection (or the guard expires).
  std::string read_until_closed() {
    while (receive()) {
    }
    return std::exchange(pending_, std::string());
  }

  // True when the server closed the connection (EOF or reset), false if the guard expired.
  bool wait_closed() {
    for (;;) {
      char buffer[4096];
      const auto n = ::recv(fd_, buffer, sizeof buffer, 0);
      if (n == 0) return true;
      if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;
    }
  }

 private:
  bool receive() {
    char buffer[4096];
    const auto n = ::recv(fd_, buffer, sizeof buffer, 0);
    if (n <= 0) return false;
    pending_.append(buffer, static_cast<std::size_t>(n));
    return true;
  }

  int fd_ = -1;
  std::string pending_;
};

inline Handler text_handler(std::string body) {
  return [body](Request&, ResponseWriter& writer) -> awaitable<void> {
    Response response{beast::http::status::ok, kHttp11};
    response.set(beast::http::field::content_type, "text/plain");
    response.body() = body;
    co_await writer.send(std::move(response));
  };
}

}  // namespace rvenc::http::test
