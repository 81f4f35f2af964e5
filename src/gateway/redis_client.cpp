#include "rvenc/gateway/redis_client.hpp"

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <spdlog/spdlog.h>

namespace rvenc::gateway {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

constexpr std::size_t kReadChunk = 16u * 1024;
// A subscription connection pings this often; no data for two intervals means it is dead.
constexpr std::chrono::milliseconds kSubscriberPingInterval{2'000};

std::string ms_text(std::chrono::milliseconds ms) { return std::to_string(ms.count()) + " ms"; }

// ---- RESP2 parsing ----------------------------------------------------------------------------

class RespParser {
 public:
  explicit RespParser(std::string_view input) : in_(input) {}

  // true: a whole value was parsed into `out`; false: the input ends before it does.
  Result<bool> parse(RedisValue& out, int depth) {
    if (depth > kMaxRedisNesting) return fail(Errc::invalid_request, "RESP reply nested too deeply");
    const auto header = line();
    if (!header) return std::unexpected(header.error());
    if (!*header) return false;
    const std::string_view text = **header;
    if (text.empty()) return fail(Errc::invalid_request, "empty RESP line");
    const std::string_view rest = text.substr(1);
    switch (text.front()) {
      case '+':
        out.type = RedisValue::Type::simple;
        out.text = std::string(rest);
        return true;
      case '-':
        out.type = RedisValue::Type::error;
        out.text = std::string(rest);
        return true;
      case ':': {
        out.type = RedisValue::Type::integer;
        auto n = number(rest);
        if (!n) return std::unexpected(n.error());
        out.integer = *n;
        return true;
      }
      case '$': {
        auto length = number(rest);
        if (!length) return std::unexpected(length.error());
        if (*length == -1) {
          out.type = RedisValue::Type::nil;
          return true;
        }
        if (*length < 0 || static_cast<std::uint64_t>(*length) > kMaxRedisReplyBytes)
          return fail(Errc::invalid_request, "RESP bulk string length out of range");
        const auto size = static_cast<std::size_t>(*length);
        if (in_.size() - pos_ < size + 2) return false;
        if (in_.substr(pos_ + size, 2) != "\r\n") return fail(Errc::invalid_request, "RESP bulk string not terminated");
        out.type = RedisValue::Type::bulk;
        out.text = std::string(in_.substr(pos_, size));
        pos_ += size + 2;
        return true;
      }
      case '*': {
        auto count = number(rest);
        if (!count) return std::unexpected(count.error());
        if (*count == -1) {
          out.type = RedisValue::Type::nil;
          return true;
        }
        if (*count < 0 || static_cast<std::uint64_t>(*count) > kMaxRedisArrayElements)
          return fail(Errc::invalid_request, "RESP array length out of range");
        out.type = RedisValue::Type::array;
        out.elements.clear();
        for (std::int64_t i = 0; i < *count; ++i) {
          RedisValue element;
          auto done = parse(element, depth + 1);
          if (!done || !*done) return done;
          out.elements.push_back(std::move(element));
        }
        return true;
      }
      default:
        return fail(Errc::invalid_request, "not a RESP2 reply (unknown type byte)");
    }
  }

  [[nodiscard]] std::size_t consumed() const noexcept { return pos_; }

 private:
  // The next line without its CRLF; nullopt when it is not complete yet.
  Result<std::optional<std::string_view>> line() {
    const std::size_t end = in_.find("\r\n", pos_);
    if (end == std::string_view::npos) {
      if (in_.size() - pos_ > kMaxRedisReplyBytes) return fail(Errc::invalid_request, "RESP line too long");
      return std::optional<std::string_view>();
    }
    const std::string_view text = in_.substr(pos_, end - pos_);
    pos_ = end + 2;
    return std::optional<std::string_view>(text);
  }

  static Result<std::int64_t> number(std::string_view text) {
    std::int64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || text.empty())
      return fail(Errc::invalid_request, "RESP number is not an integer");
    return value;
  }

  std::string_view in_;
  std::size_t pos_ = 0;
};

// ---- connecting -------------------------------------------------------------------------------

// Resolves and connects `socket` within `timeout`, with TCP_NODELAY (commands are small).
asio::awaitable<Status> connect_socket(tcp::socket& socket, const RedisUrl& url, std::chrono::milliseconds timeout) {
  const auto executor = co_await asio::this_coro::executor;
  const auto deadline = SteadyClock::now() + timeout;
  bool timed_out = false;
  tcp::resolver resolver(executor);
  asio::steady_timer timer(executor);
  timer.expires_at(deadline);
  timer.async_wait([&resolver, &timed_out](boost::system::error_code ec) {
    if (ec) return;
    timed_out = true;
    resolver.cancel();
  });
  auto [resolve_ec, endpoints] = co_await resolver.async_resolve(url.host, std::to_string(url.port), kTuple);
  if (resolve_ec) {
    timer.cancel();
    co_return fail(Errc::upstream_error, timed_out ? "timed out resolving " + url.host
                                                   : "cannot resolve " + url.host + ": " + resolve_ec.message());
  }
  timer.cancel();
  // A fresh wait: the first handler may still be queued with operation_aborted.
  asio::steady_timer connect_timer(executor);
  connect_timer.expires_at(deadline);
  connect_timer.async_wait([&socket, &timed_out](boost::system::error_code ec) {
    if (ec) return;
    timed_out = true;
    boost::system::error_code ignored;
    socket.close(ignored);
  });
  auto [connect_ec, endpoint] = co_await asio::async_connect(socket, endpoints, kTuple);
  connect_timer.cancel();
  if (timed_out) co_return fail(Errc::upstream_timeout, "timed out connecting after " + ms_text(timeout));
  if (connect_ec) co_return fail(Errc::upstream_error, "cannot connect: " + connect_ec.message());
  boost::system::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  co_return Status{};
}

// Writes `command` and reads one reply within `timeout` (before the connection is shared).
asio::awaitable<Result<RedisValue>> round_trip(tcp::socket& socket, const std::string& command,
                                               std::chrono::milliseconds timeout) {
  const auto executor = co_await asio::this_coro::executor;
  bool timed_out = false;
  asio::steady_timer timer(executor);
  timer.expires_after(timeout);
  timer.async_wait([&socket, &timed_out](boost::system::error_code ec) {
    if (ec) return;
    timed_out = true;
    boost::system::error_code ignored;
    socket.close(ignored);
  });
  auto finish = [&](Result<RedisValue> result) {
    timer.cancel();
    if (timed_out) return Result<RedisValue>(fail(Errc::upstream_timeout, "no reply within " + ms_text(timeout)));
    return result;
  };
  auto [write_ec, written] = co_await asio::async_write(socket, asio::buffer(command), kTuple);
  if (write_ec) co_return finish(fail(Errc::upstream_error, "write failed: " + write_ec.message()));
  std::string buffer;
  std::array<char, kReadChunk> chunk{};
  for (;;) {
    auto [read_ec, n] = co_await socket.async_read_some(asio::buffer(chunk), kTuple);
    if (read_ec) co_return finish(fail(Errc::upstream_error, "read failed: " + read_ec.message()));
    buffer.append(chunk.data(), n);
    auto parsed = parse_resp(buffer);
    if (!parsed) co_return finish(std::unexpected(parsed.error()));
    if (parsed->value) co_return finish(std::move(*parsed->value));
  }
}

// Connects and selects the database.
asio::awaitable<Status> open_connection(tcp::socket& socket, const RedisOptions& options) {
  auto connected = co_await connect_socket(socket, options.url, options.connect_timeout);
  if (!connected) co_return connected;
  if (options.url.db != 0) {
    const std::vector<std::string> select{"SELECT", std::to_string(options.url.db)};
    const std::string command = encode_redis_command(select);
    auto selected = co_await round_trip(socket, command, options.command_timeout);
    if (!selected) co_return std::unexpected(selected.error());
    if (selected->is_error()) co_return fail(Errc::upstream_error, "SELECT " + std::to_string(options.url.db) + " failed");
  }
  co_return Status{};
}

// Runs `context` on a thread until stopped; an exception escaping a handler is logged, not fatal.
void run_context(asio::io_context& context) {
  for (;;) {
    try {
      context.run();
      return;
    } catch (const std::exception& e) {
      spdlog::error("redis: unexpected error: {}", e.what());
    }
  }
}

}  // namespace

// ---- values and URLs --------------------------------------------------------------------------

bool RedisValue::is_error(std::string_view prefix) const noexcept {
  if (type != Type::error || !text.starts_with(prefix)) return false;
  return text.size() == prefix.size() || text[prefix.size()] == ' ';
}

std::string encode_redis_command(const std::vector<std::string>& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& arg : args) {
    out += "$" + std::to_string(arg.size()) + "\r\n";
    out += arg;
    out += "\r\n";
  }
  return out;
}

Result<RespParse> parse_resp(std::string_view input) {
  RespParser parser(input);
  RedisValue value;
  auto done = parser.parse(value, 0);
  if (!done) return std::unexpected(done.error());
  if (!*done) return RespParse{};
  return RespParse{std::move(value), parser.consumed()};
}

std::string RedisUrl::to_string() const {
  const std::string shown = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return "redis://" + shown + ":" + std::to_string(port) + "/" + std::to_string(db);
}

Result<RedisUrl> parse_redis_url(std::string_view text) {
  auto parsed = boost::urls::parse_uri(text);
  if (!parsed) return fail(Errc::invalid_request, "not a valid Redis URL: '" + std::string(text) + "'");
  const boost::urls::url_view& view = *parsed;
  std::string scheme(view.scheme());
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme != "redis")
    return fail(Errc::invalid_request, "unsupported Redis URL scheme '" + scheme + "': use redis://HOST:PORT[/DB]");
  if (view.has_userinfo()) return fail(Errc::invalid_request, "Redis URLs with a user or password are not supported");
  RedisUrl url;
  url.host = view.host_address();
  if (url.host.empty()) return fail(Errc::invalid_request, "Redis URL has no host: '" + std::string(text) + "'");
  if (view.has_port()) {
    const std::string_view port = view.port();
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535)
      return fail(Errc::invalid_request, "Redis URL has an invalid port: '" + std::string(text) + "'");
    url.port = static_cast<std::uint16_t>(value);
  }
  if (view.has_query() || view.has_fragment())
    return fail(Errc::invalid_request, "Redis URL must not have a query or fragment: '" + std::string(text) + "'");
  std::string_view path = view.encoded_path();
  if (path.starts_with('/')) path.remove_prefix(1);
  if (!path.empty()) {
    int db = -1;
    const auto [end, ec] = std::from_chars(path.data(), path.data() + path.size(), db);
    if (ec != std::errc() || end != path.data() + path.size() || db < 0 || db > kMaxRedisDb)
      return fail(Errc::invalid_request, "Redis URL path must be a database number: '" + std::string(text) + "'");
    url.db = db;
  }
  return url;
}

// ---- RedisClient ------------------------------------------------------------------------------

struct RedisClient::Impl {
  struct Connection;
  // A command sent (or about to be) and its reply. The caller waits on `timer`; complete() wakes it.
  struct Pending {
    explicit Pending(asio::io_context& context) : timer(context) {}
    asio::steady_timer timer;
    std::optional<Result<RedisValue>> result;
    std::weak_ptr<Connection> connection;  // set once written to a connection
    void complete(Result<RedisValue> value) {
      if (result) return;
      result = std::move(value);
      timer.cancel();
    }
  };

  struct Connection {
    explicit Connection(asio::io_context& context) : socket(context) {}
    tcp::socket socket;
    std::deque<std::shared_ptr<Pending>> awaiting;  // written, reply not yet read (in order)
    std::string outbox;
    bool writing = false;
    bool open = true;
  };

  struct Queued {
    std::shared_ptr<Pending> pending;
    std::string bytes;
  };

  enum class State { disconnected, connecting, connected };

  explicit Impl(RedisOptions o) : options(std::move(o)), work(context.get_executor()), backoff(options.backoff_min) {
    thread = std::thread([this] { run_context(context); });
  }

  ~Impl() {
    work.reset();
    context.stop();
    if (thread.joinable()) thread.join();
  }

  // Everything below runs on the client's thread.

  static asio::awaitable<Result<RedisValue>> run(Impl* self, std::vector<std::string> args) {
    co_return co_await self->execute(encode_redis_command(args));
  }

  asio::awaitable<Result<RedisValue>> execute(std::string bytes) {
    auto pending = std::make_shared<Pending>(context);
    if (state == State::connected) {
      enqueue(current, pending, std::move(bytes));
    } else {
      if (state == State::disconnected) {
        const auto now = SteadyClock::now();
        // Between failed attempts, fail at once: callers never queue up behind a dead server.
        if (now < next_attempt) {
          const auto wait = std::chrono::ceil<std::chrono::milliseconds>(next_attempt - now);
          co_return fail(Errc::upstream_error, "redis at " + options.url.to_string() + " is unavailable (" +
                                                   last_error + "); next attempt in " + ms_text(wait));
        }
        state = State::connecting;
        asio::co_spawn(context, connect(), asio::detached);
      }
      waiting.push_back(Queued{pending, std::move(bytes)});
    }
    if (!pending->result) {
      pending->timer.expires_after(options.command_timeout);
      co_await pending->timer.async_wait(kTuple);
    }
    if (!pending->result) {
      pending->result = fail(Errc::upstream_timeout, "no reply from redis at " + options.url.to_string() + " within " +
                                                         ms_text(options.command_timeout));
      // Replies come in order: once one is missing, the connection cannot be trusted.
      if (auto connection = pending->connection.lock()) drop(connection, "a command timed out");
    }
    co_return std::move(*pending->result);
  }

  asio::awaitable<void> connect() {
    auto connection = std::make_shared<Connection>(context);
    auto opened = co_await open_connection(connection->socket, options);
    if (!opened) {
      last_error = opened.error().message;
      state = State::disconnected;
      next_attempt = SteadyClock::now() + backoff;
      backoff = std::min(backoff * 2, options.backoff_max);
      if (!down_reported) {
        spdlog::warn("redis: cannot reach {}: {}", options.url.to_string(), last_error);
        down_reported = true;
      }
      auto failed = std::move(waiting);
      waiting.clear();
      for (auto& queued : failed)
        queued.pending->complete(fail(Errc::upstream_error, "redis at " + options.url.to_string() + ": " + last_error));
      co_return;
    }
    if (down_reported || !ever_connected) spdlog::info("redis: connected to {}", options.url.to_string());
    down_reported = false;
    ever_connected = true;
    backoff = options.backoff_min;
    state = State::connected;
    current = connection;
    auto queued = std::move(waiting);
    waiting.clear();
    for (auto& q : queued)
      if (!q.pending->result) enqueue(connection, q.pending, std::move(q.bytes));
    asio::co_spawn(context, read_loop(connection), asio::detached);
  }

  void enqueue(const std::shared_ptr<Connection>& connection, const std::shared_ptr<Pending>& pending, std::string bytes) {
    pending->connection = connection;
    connection->awaiting.push_back(pending);
    connection->outbox += bytes;
    if (!connection->writing) {
      connection->writing = true;
      asio::co_spawn(context, write_loop(connection), asio::detached);
    }
  }

  asio::awaitable<void> write_loop(std::shared_ptr<Connection> connection) {
    while (connection->open && !connection->outbox.empty()) {
      std::string out;
      out.swap(connection->outbox);
      auto [ec, n] = co_await asio::async_write(connection->socket, asio::buffer(out), kTuple);
      if (ec) {
        drop(connection, "write failed: " + ec.message());
        break;
      }
    }
    connection->writing = false;
  }

  asio::awaitable<void> read_loop(std::shared_ptr<Connection> connection) {
    std::string buffer;
    std::array<char, kReadChunk> chunk{};
    while (connection->open) {
      auto [ec, n] = co_await connection->socket.async_read_some(asio::buffer(chunk), kTuple);
      if (ec) {
        drop(connection, ec == asio::error::eof ? std::string("the server closed the connection") : ec.message());
        co_return;
      }
      buffer.append(chunk.data(), n);
      std::size_t offset = 0;
      for (;;) {
        auto parsed = parse_resp(std::string_view(buffer).substr(offset));
        if (!parsed) {
          drop(connection, "invalid reply: " + parsed.error().message);
          co_return;
        }
        if (!parsed->value) break;
        offset += parsed->consumed;
        if (connection->awaiting.empty()) {
          drop(connection, "a reply nobody asked for");
          co_return;
        }
        auto pending = std::move(connection->awaiting.front());
        connection->awaiting.pop_front();
        pending->complete(std::move(*parsed->value));
      }
      buffer.erase(0, offset);
    }
  }

  // Closes the connection and fails every command waiting on it; the next command reconnects.
  void drop(const std::shared_ptr<Connection>& connection, const std::string& reason) {
    if (!connection->open) return;
    connection->open = false;
    boost::system::error_code ignored;
    connection->socket.close(ignored);
    auto awaiting = std::move(connection->awaiting);
    connection->awaiting.clear();
    for (auto& pending : awaiting)
      pending->complete(fail(Errc::upstream_error, "redis connection to " + options.url.to_string() + " lost: " + reason));
    if (current == connection) {
      current.reset();
      state = State::disconnected;
      last_error = reason;
      next_attempt = SteadyClock::now();
      spdlog::warn("redis: connection to {} lost: {}", options.url.to_string(), reason);
      down_reported = true;
    }
  }

  // Declared first: destroyed last, after everything that refers to it.
  asio::io_context context{1};
  RedisOptions options;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  State state = State::disconnected;
  std::shared_ptr<Connection> current;
  std::vector<Queued> waiting;  // for the connection being opened
  SteadyClock::time_point next_attempt{};
  std::chrono::milliseconds backoff;
  std::string last_error;
  bool down_reported = false;
  bool ever_connected = false;
  std::thread thread;  // last: starts after everything above is constructed
};

RedisClient::RedisClient(RedisOptions options) : impl_(std::make_shared<Impl>(std::move(options))) {}

RedisClient::~RedisClient() = default;

const RedisOptions& RedisClient::options() const noexcept { return impl_->options; }

boost::asio::awaitable<Result<RedisValue>> RedisClient::command(std::vector<std::string> args) {
  co_return co_await asio::co_spawn(impl_->context, Impl::run(impl_.get(), std::move(args)), asio::use_awaitable);
}

Result<RedisValue> RedisClient::command_sync(std::vector<std::string> args) {
  return asio::co_spawn(impl_->context, Impl::run(impl_.get(), std::move(args)), asio::use_future).get();
}

// ---- RedisSubscriber --------------------------------------------------------------------------

struct RedisSubscriber::Impl {
  Impl(RedisOptions o, std::string c, Callbacks cb)
      : options(std::move(o)), channel(std::move(c)), callbacks(std::move(cb)) {
    asio::co_spawn(context, run(), asio::detached);
    thread = std::thread([this] { run_context(context); });
  }

  ~Impl() {
    context.stop();
    if (thread.joinable()) thread.join();
  }

  void set_subscribed(bool value) {
    {
      std::lock_guard lock(mutex);
      subscribed = value;
    }
    changed.notify_all();
  }

  asio::awaitable<void> run() {
    auto backoff = options.backoff_min;
    bool down_reported = false;
    for (;;) {
      tcp::socket socket(context);
      std::string reason;
      bool was_subscribed = false;
      auto opened = co_await open_connection(socket, options);
      if (opened) {
        reason = co_await session(socket, was_subscribed);
      } else {
        reason = opened.error().message;
      }
      set_subscribed(false);
      if (was_subscribed) backoff = options.backoff_min;
      if (was_subscribed || !down_reported) {
        spdlog::warn("redis: subscription to {} on {} lost: {}; reconnecting", channel, options.url.to_string(), reason);
        down_reported = true;
      }
      asio::steady_timer timer(context);
      timer.expires_after(backoff);
      co_await timer.async_wait(kTuple);
      backoff = std::min(backoff * 2, options.backoff_max);
    }
  }

  // Subscribes and dispatches messages until the connection fails; returns why it ended.
  asio::awaitable<std::string> session(tcp::socket& socket, bool& was_subscribed) {
    const std::vector<std::string> args{"SUBSCRIBE", channel};
    const std::string subscribe = encode_redis_command(args);
    auto [write_ec, written] = co_await asio::async_write(socket, asio::buffer(subscribe), kTuple);
    if (write_ec) co_return "write failed: " + write_ec.message();

    auto last_data = std::make_shared<SteadyClock::time_point>(SteadyClock::now());
    auto alive = std::make_shared<bool>(true);
    asio::co_spawn(context, ping_loop(socket, last_data, alive), asio::detached);
    struct Stop {
      std::shared_ptr<bool> alive;
      ~Stop() { *alive = false; }
    } stop{alive};

    std::string buffer;
    std::array<char, kReadChunk> chunk{};
    for (;;) {
      auto [ec, n] = co_await socket.async_read_some(asio::buffer(chunk), kTuple);
      if (ec) {
        boost::system::error_code ignored;
        socket.close(ignored);
        co_return ec == asio::error::eof ? std::string("the server closed the connection")
                                         : (ec == asio::error::operation_aborted ? std::string("no answer to PING")
                                                                                  : ec.message());
      }
      *last_data = SteadyClock::now();
      buffer.append(chunk.data(), n);
      std::size_t offset = 0;
      for (;;) {
        auto parsed = parse_resp(std::string_view(buffer).substr(offset));
        if (!parsed) {
          boost::system::error_code ignored;
          socket.close(ignored);
          co_return "invalid reply: " + parsed.error().message;
        }
        if (!parsed->value) break;
        offset += parsed->consumed;
        const RedisValue& value = *parsed->value;
        if (value.type != RedisValue::Type::array || value.elements.empty()) continue;
        const std::string& kind = value.elements[0].text;
        if (kind == "subscribe") {
          was_subscribed = true;
          spdlog::info("redis: subscribed to {} on {}", channel, options.url.to_string());
          if (callbacks.on_subscribed) callbacks.on_subscribed();
          set_subscribed(true);
        } else if (kind == "message" && value.elements.size() == 3) {
          if (callbacks.on_message) callbacks.on_message(value.elements[2].text);
        }
      }
      buffer.erase(0, offset);
    }
  }

  // PINGs the idle subscription; closes the socket when nothing came back for two intervals.
  asio::awaitable<void> ping_loop(tcp::socket& socket, std::shared_ptr<SteadyClock::time_point> last_data,
                                  std::shared_ptr<bool> alive) {
    static const std::string ping = encode_redis_command({"PING"});
    asio::steady_timer timer(context);
    while (*alive) {
      timer.expires_after(kSubscriberPingInterval);
      co_await timer.async_wait(kTuple);
      if (!*alive) co_return;
      if (SteadyClock::now() - *last_data > 2 * kSubscriberPingInterval) {
        boost::system::error_code ignored;
        socket.close(ignored);
        co_return;
      }
      auto [ec, n] = co_await asio::async_write(socket, asio::buffer(ping), kTuple);
      if (ec || !*alive) co_return;
    }
  }

  asio::io_context context{1};
  RedisOptions options;
  std::string channel;
  Callbacks callbacks;
  std::mutex mutex;
  std::condition_variable changed;
  bool subscribed = false;
  std::thread thread;
};

RedisSubscriber::RedisSubscriber(RedisOptions options, std::string channel, Callbacks callbacks)
    : impl_(std::make_shared<Impl>(std::move(options), std::move(channel), std::move(callbacks))) {}

RedisSubscriber::~RedisSubscriber() = default;

bool RedisSubscriber::subscribed() const noexcept {
  std::lock_guard lock(impl_->mutex);
  return impl_->subscribed;
}

bool RedisSubscriber::wait_subscribed(std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mutex);
  return impl_->changed.wait_for(lock, timeout, [this] { return impl_->subscribed; });
}

}  // namespace rvenc::gateway
