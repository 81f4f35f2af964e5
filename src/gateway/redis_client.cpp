#include "rvenc/gateway/redis_client.hpp"

#include <array>
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
using ReadBuffer = std::array<char, kReadChunk>;
// A subscription connection pings this often; no data for two intervals means it is dead.
constexpr std::chrono::milliseconds kSubscriberPingInterval{2'000};

std::string ms_text(std::chrono::milliseconds ms) { return std::to_string(ms.count()) + " ms"; }

// ---- reading ----------------------------------------------------------------------------------

// Reads once from `socket` and returns the replies completed by those bytes (possibly none).
// Errors name the cause: the socket's (the server closing it, or our own close after a timeout)
// or the reader's (not RESP2, over the limits).
asio::awaitable<Result<std::vector<RedisValue>>> read_replies(tcp::socket& socket, RedisReplyReader& reader,
                                                              ReadBuffer& chunk) {
  auto [ec, n] = co_await socket.async_read_some(asio::buffer(chunk), kTuple);
  if (ec == asio::error::eof) co_return fail(Errc::upstream_error, "the server closed the connection");
  if (ec == asio::error::operation_aborted) co_return fail(Errc::upstream_error, "no answer in time");
  if (ec) co_return fail(Errc::upstream_error, ec.message());
  if (auto fed = reader.feed(std::string_view(chunk.data(), n)); !fed) co_return std::unexpected(fed.error());
  std::vector<RedisValue> replies;
  for (;;) {
    auto reply = reader.next();
    if (!reply) co_return std::unexpected(reply.error());
    if (!*reply) co_return replies;
    replies.push_back(std::move(**reply));
  }
}

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
  RedisReplyReader reader;
  ReadBuffer chunk{};
  for (;;) {
    auto replies = co_await read_replies(socket, reader, chunk);
    if (!replies) co_return finish(std::unexpected(replies.error()));
    if (replies->size() > 1) co_return finish(fail(Errc::upstream_error, "a reply nobody asked for"));
    if (!replies->empty()) co_return finish(std::move(replies->front()));
  }
}

// Connects and selects the database.
asio::awaitable<Status> open_connection(tcp::socket& socket, const RedisOptions& options) {
  auto connected = co_await connect_socket(socket, options.url, options.connect_timeout);
  if (!connected) co_return connected;
  if (options.url.db != 0) {
    auto command = encode_redis_command({"SELECT", std::to_string(options.url.db)});
    if (!command) co_return std::unexpected(command.error());
    auto selected = co_await round_trip(socket, *command, options.command_timeout);
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

// ---- one pipelined connection -----------------------------------------------------------------

class Pipeline;

// A command sent (or about to be) and its reply. The caller waits on `timer`; complete() wakes it.
struct Pending {
  explicit Pending(asio::io_context& context) : timer(context) {}
  asio::steady_timer timer;
  std::optional<Result<RedisValue>> result;
  std::weak_ptr<Pipeline> connection;  // set once written to a connection
  void complete(Result<RedisValue> value) {
    if (result) return;
    result = std::move(value);
    timer.cancel();
  }
};

// One open connection shared by concurrent callers: commands are written in order and every
// reply completes the oldest command still waiting. close() fails all of them and reports the
// loss once. Everything runs on the client's thread.
class Pipeline : public std::enable_shared_from_this<Pipeline> {
 public:
  using LostHandler = std::function<void(const Pipeline&, const std::string& reason)>;

  Pipeline(asio::io_context& context, std::string peer, LostHandler on_lost)
      : context_(context), socket_(context), peer_(std::move(peer)), on_lost_(std::move(on_lost)) {}

  [[nodiscard]] tcp::socket& socket() noexcept { return socket_; }

  void start_reading() { asio::co_spawn(context_, read_loop(shared_from_this()), asio::detached); }

  void send(const std::shared_ptr<Pending>& pending, const std::string& bytes) {
    pending->connection = weak_from_this();
    awaiting_.push_back(pending);
    outbox_ += bytes;
    if (!writing_) {
      writing_ = true;
      asio::co_spawn(context_, write_loop(shared_from_this()), asio::detached);
    }
  }

  // Closes the connection and fails every command waiting on it.
  void close(const std::string& reason) {
    if (!open_) return;
    open_ = false;
    boost::system::error_code ignored;
    socket_.close(ignored);
    auto awaiting = std::move(awaiting_);
    awaiting_.clear();
    for (auto& pending : awaiting)
      pending->complete(fail(Errc::upstream_error, "redis connection to " + peer_ + " lost: " + reason));
    if (on_lost_) on_lost_(*this, reason);
  }

 private:
  static asio::awaitable<void> write_loop(std::shared_ptr<Pipeline> self) {
    while (self->open_ && !self->outbox_.empty()) {
      std::string out;
      out.swap(self->outbox_);
      auto [ec, n] = co_await asio::async_write(self->socket_, asio::buffer(out), kTuple);
      if (ec) {
        self->close("write failed: " + ec.message());
        break;
      }
    }
    self->writing_ = false;
  }

  static asio::awaitable<void> read_loop(std::shared_ptr<Pipeline> self) {
    RedisReplyReader reader;
    ReadBuffer chunk{};
    while (self->open_) {
      auto replies = co_await read_replies(self->socket_, reader, chunk);
      if (!replies) {
        self->close(replies.error().message);
        co_return;
      }
      for (auto& reply : *replies) {
        if (self->awaiting_.empty()) {
          self->close("a reply nobody asked for");
          co_return;
        }
        auto pending = std::move(self->awaiting_.front());
        self->awaiting_.pop_front();
        pending->complete(std::move(reply));
      }
    }
  }

  asio::io_context& context_;
  tcp::socket socket_;
  std::string peer_;
  LostHandler on_lost_;
  std::deque<std::shared_ptr<Pending>> awaiting_;  // written, reply not yet read (in order)
  std::string outbox_;
  bool writing_ = false;
  bool open_ = true;
};

}  // namespace

// ---- URLs -------------------------------------------------------------------------------------

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

// Which connection serves commands, and when the next attempt may be made after a failure.
struct RedisClient::Impl {
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
    auto bytes = encode_redis_command(args);
    if (!bytes) co_return std::unexpected(bytes.error());
    co_return co_await self->execute(std::move(*bytes));
  }

  asio::awaitable<Result<RedisValue>> execute(std::string bytes) {
    auto pending = std::make_shared<Pending>(context);
    if (state == State::connected) {
      current->send(pending, bytes);
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
      if (auto connection = pending->connection.lock()) connection->close("a command timed out");
    }
    co_return std::move(*pending->result);
  }

  asio::awaitable<void> connect() {
    auto connection = std::make_shared<Pipeline>(context, options.url.to_string(),
                                                 [this](const Pipeline& lost, const std::string& reason) {
                                                   on_lost(lost, reason);
                                                 });
    auto opened = co_await open_connection(connection->socket(), options);
    if (!opened) {
      connect_failed(opened.error().message);
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
      if (!q.pending->result) connection->send(q.pending, q.bytes);
    connection->start_reading();
  }

  void connect_failed(const std::string& reason) {
    last_error = reason;
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
  }

  // The current connection closed: the next command reconnects at once.
  void on_lost(const Pipeline& lost, const std::string& reason) {
    if (current.get() != &lost) return;
    current.reset();
    state = State::disconnected;
    last_error = reason;
    next_attempt = SteadyClock::now();
    spdlog::warn("redis: connection to {} lost: {}", options.url.to_string(), reason);
    down_reported = true;
  }

  // Declared first: destroyed last, after everything that refers to it.
  asio::io_context context{1};
  RedisOptions options;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  State state = State::disconnected;
  std::shared_ptr<Pipeline> current;
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
    auto subscribe = encode_redis_command({"SUBSCRIBE", channel});
    if (!subscribe) co_return subscribe.error().message;
    auto [write_ec, written] = co_await asio::async_write(socket, asio::buffer(*subscribe), kTuple);
    if (write_ec) co_return "write failed: " + write_ec.message();

    auto last_data = std::make_shared<SteadyClock::time_point>(SteadyClock::now());
    auto alive = std::make_shared<bool>(true);
    asio::co_spawn(context, ping_loop(socket, last_data, alive), asio::detached);
    struct Stop {
      std::shared_ptr<bool> alive;
      ~Stop() { *alive = false; }
    } stop{alive};

    RedisReplyReader reader;
    ReadBuffer chunk{};
    for (;;) {
      auto replies = co_await read_replies(socket, reader, chunk);
      if (!replies) {
        boost::system::error_code ignored;
        socket.close(ignored);
        co_return replies.error().message;
      }
      *last_data = SteadyClock::now();
      for (const RedisValue& value : *replies) dispatch(value, was_subscribed);
    }
  }

  // One push on the subscription: the subscribe confirmation, a message, or a PONG (ignored).
  void dispatch(const RedisValue& value, bool& was_subscribed) {
    if (value.type != RedisValue::Type::array || value.elements.empty()) return;
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

  // PINGs the idle subscription; closes the socket when nothing came back for two intervals.
  asio::awaitable<void> ping_loop(tcp::socket& socket, std::shared_ptr<SteadyClock::time_point> last_data,
                                  std::shared_ptr<bool> alive) {
    static const std::string ping = encode_redis_command({"PING"}).value();  // cannot fail: 14 bytes
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
