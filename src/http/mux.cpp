// MuxClient, the client side of rvenc-mux/1 (frames: mux_frame.cpp; server side: mux_server.cpp).
//
// A MuxClient keeps, per server and io_context, connections that carry many streams. Everything a
// connection shares with its streams (the stream table, the output buffer, each stream's received
// bytes) is guarded by the connection's mutex; its socket is only touched on its strand. A stream's
// reader waits on a channel of its own that the connection's reader signals: the wake-up runs on
// the reader's executor, whatever thread the connection runs on. A connection reads only while it
// has streams, so an idle one keeps no operation pending (its io_context's run() may return).
#include "rvenc/http/mux.hpp"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <spdlog/spdlog.h>

#include "context_registry.hpp"
#include "mux_outbox.hpp"
#include "mux_streams.hpp"
#include "resolve.hpp"
#include "rvenc/http/tls.hpp"
#include "wire.hpp"

namespace rvenc::http {

namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using Clock = detail::MuxClock;
using detail::MuxStream;
using detail::MuxWakeList;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
// One read may bring the chunks of every stream: read big.
constexpr std::size_t kReadSpace = 256 * 1024;
// A connection unused this long is not reused: the server closes idle ones after its
// idle_timeout (60 s by default), and an idle connection has no read pending to notice it.
constexpr std::chrono::seconds kIdleReuse{30};
// How often a connection with streams checks their deadlines (Timeouts::idle and total).
constexpr std::chrono::milliseconds kSweepInterval{100};
// Credit is returned in steps of half a window (one WINDOW frame per 128 KiB read).
constexpr std::uint32_t kCreditStep = mux::kInitialWindow / 2;

}  // namespace

struct MuxConnection : std::enable_shared_from_this<MuxConnection> {
  MuxConnection(const std::shared_ptr<MuxClient::State>& owner, Url url, const asio::any_io_executor& executor,
                std::chrono::milliseconds connect_limit, std::size_t head_limit)
      : state(owner),
        server(std::move(url)),
        where(server.host + ":" + std::to_string(server.port)),
        context(&asio::query(executor, asio::execution::context)),
        strand(asio::make_strand(executor)),
        socket(std::in_place, strand),
        sweep(std::in_place, strand),
        connect_timeout(connect_limit),
        header_limit(head_limit),
        streams(where, head_limit) {}

  std::weak_ptr<MuxClient::State> state;  // the client may go first
  Url server;
  std::string where;
  asio::execution_context* context;
  asio::strand<asio::any_io_executor> strand;
  // Reset when the io_context shuts down (an I/O object must not outlive its reactor).
  std::optional<tcp::socket> socket;
  // https://: the TLS layer over `socket` (reset before it); all reads and writes go through it.
  std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls;
  std::optional<asio::steady_timer> deadline;  // of the TLS handshake and upgrade (strand only)
  bool connect_deadline_passed = false;
  std::optional<asio::steady_timer> sweep;
  std::chrono::milliseconds connect_timeout;
  std::size_t header_limit;  // of a response head
  std::string in;           // the reader's buffer (strand only)
  std::size_t in_used = 0;  // bytes of `in` received and not yet dispatched

  std::mutex mutex;
  // Guarded by `mutex`.
  enum class Phase { connecting, open, closed } phase = Phase::connecting;
  bool trailers = false;  // the server said it sends TRAILER frames (mux::kTrailersField)
  detail::MuxStreamTable streams;
  detail::MuxOutbox outbox;  // the frame writer's queue
  bool reading = false;
  bool sweeping = false;
  Clock::time_point last_used = Clock::now();

  // Takes `stream` with its request (head and body); sent once the connection is open. A connection
  // that closed since it was chosen fails the stream at once, as lost (open() tries once more).
  void add(const std::shared_ptr<MuxStream>& stream, std::string_view head, std::string_view body) {
    std::lock_guard lock(mutex);
    if (phase == Phase::closed) {
      stream->error = Error{Errc::upstream_error, "rvenc-mux connection to " + where + " closed"};
      stream->joined_idle = true;
      stream->connection_lost = true;
      return;
    }
    stream->joined_idle = phase == Phase::open && streams.empty();
    streams.add(stream, Clock::now());
    mux::append_frame(outbox.frames(), mux::FrameType::request, stream->id, head, body);
    last_used = Clock::now();
    if (phase == Phase::open) resume_locked();
  }

  [[nodiscard]] bool usable(const Url& url, asio::execution_context* on) {
    std::lock_guard lock(mutex);
    return phase != Phase::closed && context == on && server.origin() == url.origin() &&
           streams.has_room() &&
           (!streams.empty() || Clock::now() - last_used < kIdleReuse);
  }

  // Starts the reader, the deadline sweep and the flush that an open connection with streams needs.
  void resume_locked() {
    auto self = shared_from_this();
    schedule_flush_locked();
    if (!streams.empty() && !reading) {
      reading = true;
      // Posted: on the strand, co_spawn would start the reader at once, under this lock.
      asio::post(strand, [self] { asio::co_spawn(self->strand, read_loop(self), asio::detached); });
    }
    if (!streams.empty() && !sweeping) {
      sweeping = true;
      asio::post(strand, [self] { self->arm_sweep(); });
    }
  }

  // The frame writer: frames are queued under the lock, and one flush posted per batch sends them.
  void queue_locked(auto&& append) {
    append(outbox.frames());
    schedule_flush_locked();
  }

  // Posted, so that the frames queued by everything ready to run leave in one send.
  void schedule_flush_locked() {
    if (phase != Phase::open || !outbox.start_flush()) return;
    asio::post(strand, [self = shared_from_this()] { self->flush(); });
  }
  // Sends what is queued: what the socket takes at once, the rest with an asynchronous write.
  void flush();
  static awaitable<void> write_rest(std::shared_ptr<MuxConnection> self, std::string sending);

  // The deadline sweep, every kSweepInterval while the connection has streams.
  void arm_sweep();
  // Fails the streams whose reader waited longer than Timeouts::idle, or past their total end.
  void check_deadlines();

  // Every stream fails with `error` (`refused`: the server does not speak rvenc-mux), and the
  // connection closes.
  void fail(Error error, bool refused = false) {
    MuxWakeList wake;
    {
      std::lock_guard lock(mutex);
      if (phase == Phase::closed) return;
      phase = Phase::closed;
      streams.fail_all(error, refused, wake);
      outbox.clear();
    }
    detail::wake_all(wake);
    asio::post(strand, [self = shared_from_this()] { self->close_io(); });
  }

  // The last stream went away on this side: a read left pending would keep the io_context busy.
  void unblock_reader_locked() {
    if (!streams.empty() || (!reading && !sweeping)) return;
    asio::post(strand, [self = shared_from_this()] {
      beast::error_code ignored;
      if (self->socket) self->socket->cancel(ignored);
      if (self->sweep) self->sweep->cancel();
    });
  }

  void close_io() {
    beast::error_code ignored;
    if (socket) socket->close(ignored);
    if (sweep) sweep->cancel();
  }

  // Connects, then asks for rvenc-mux/1; the streams fail when that fails (the server refused:
  // they go over HTTP/1.1).
  static awaitable<void> connect(std::shared_ptr<MuxConnection> self, std::string authorization);
  using UpgradeAnswer = bhttp::response_parser<bhttp::empty_body>;
  // Sends the upgrade request `head` and reads the answer's head into `parser` (what follows it
  // stays in `buffer`), through `tls` when there is one; timeout when the connect deadline passed.
  static awaitable<beast::error_code> exchange_upgrade(std::shared_ptr<MuxConnection> self,
                                                       beast::tcp_stream& stream, std::string head,
                                                       beast::flat_buffer& buffer, UpgradeAnswer& parser);
  // The server answered the upgrade with `status`, not 101: remembered, the streams go over HTTP/1.1.
  void refuse_upgrade(unsigned status);
  // The 101 came: the socket is the connection's, and it opens with the frames in `buffer`.
  void open_upgraded(beast::tcp_stream& stream, const beast::flat_buffer& buffer, bool server_trailers);
  // https://: takes the connected socket over and runs the TLS handshake through `tls`, the
  // handshake and the upgrade exchange bounded by the connect timeout (a timer closes the
  // socket); tls_error on failure.
  static awaitable<Status> start_tls(std::shared_ptr<MuxConnection> self, beast::tcp_stream& stream);
  static awaitable<void> read_loop(std::shared_ptr<MuxConnection> self);
  // Applies the frames `in` holds (whole ones); false after a protocol error (the connection failed).
  bool dispatch(std::size_t& used);
};

struct MuxClient::State : std::enable_shared_from_this<MuxClient::State> {
  State(HttpClient& client, MuxClientOptions opts) : fallback(&client), options(std::move(opts)) {}

  HttpClient* fallback;
  MuxClientOptions options;
  std::mutex mutex;
  std::vector<std::shared_ptr<MuxConnection>> connections;
  std::unordered_map<std::string, Clock::time_point> refused_until;  // by origin
  std::vector<asio::execution_context*> enlisted;

  [[nodiscard]] bool refused(const Url& server) {
    std::lock_guard lock(mutex);
    const auto found = refused_until.find(server.origin());
    if (found == refused_until.end()) return false;
    if (Clock::now() < found->second) return true;
    refused_until.erase(found);
    return false;
  }

  void remember_refusal(const Url& server) {
    std::lock_guard lock(mutex);
    refused_until[server.origin()] = Clock::now() + options.refusal_memory;
  }

  // A connection for `server` on `executor`'s io_context with room for `stream`, which it takes.
  std::shared_ptr<MuxConnection> attach(const Url& server, const asio::any_io_executor& executor,
                                        const std::shared_ptr<MuxStream>& stream, std::string_view head,
                                        std::string_view body,
                                        std::chrono::milliseconds connect_timeout) {
    auto* context = &asio::query(executor, asio::execution::context);
    std::shared_ptr<MuxConnection> chosen;
    bool fresh = false;
    {
      std::lock_guard lock(mutex);
      std::erase_if(connections, [](const auto& c) {
        std::lock_guard connection_lock(c->mutex);
        return c->phase == MuxConnection::Phase::closed;
      });
      for (auto& c : connections) {
        if (c->usable(server, context)) {
          chosen = c;
          break;
        }
      }
      if (!chosen) {
        detail::ContextRegistry<MuxClient::State>::enlist_once(*context, weak_from_this(), enlisted);
        chosen = std::make_shared<MuxConnection>(shared_from_this(), server, executor, connect_timeout,
                                                 options.header_limit);
        connections.push_back(chosen);
        fresh = true;
      }
    }
    chosen->add(stream, head, body);
    if (fresh) asio::co_spawn(chosen->strand, MuxConnection::connect(chosen, options.authorization), asio::detached);
    return chosen;
  }

  // `context` shuts down: its connections' I/O objects go now, before its reactor.
  void orphan(asio::execution_context* context) {
    std::vector<std::shared_ptr<MuxConnection>> leaving;
    {
      std::lock_guard lock(mutex);
      for (auto it = connections.begin(); it != connections.end();) {
        if ((*it)->context == context) {
          leaving.push_back(*it);
          it = connections.erase(it);
        } else {
          ++it;
        }
      }
      std::erase(enlisted, context);
    }
    for (auto& c : leaving) {
      {
        std::lock_guard lock(c->mutex);
        c->phase = MuxConnection::Phase::closed;
        c->streams.clear();
      }
      c->tls.reset();
      c->deadline.reset();
      c->socket.reset();
      c->sweep.reset();
    }
  }

  void close_all() {
    std::vector<std::shared_ptr<MuxConnection>> all;
    {
      std::lock_guard lock(mutex);
      all.swap(connections);
    }
    for (auto& c : all) c->fail(Error{Errc::upstream_error, "the rvenc-mux client was closed"});
  }
};

// --- The frame writer -----------------------------------------------------------------------------

void MuxConnection::flush() {
  for (;;) {
    std::string sending;
    {
      std::lock_guard lock(mutex);
      if (phase != Phase::open || !socket) {
        outbox.stop_flush();
        return;
      }
      auto taken = outbox.take();
      if (!taken) return;  // all sent: the flush is over
      sending = std::move(*taken);
    }
    if (tls) {  // a TLS record at a time: always the asynchronous write
      asio::co_spawn(strand, write_rest(shared_from_this(), std::move(sending)), asio::detached);
      return;
    }
    beast::error_code ec;
    const std::size_t sent = socket->write_some(asio::buffer(sending), ec);
    if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
      fail(Error{Errc::upstream_error, "rvenc-mux connection to " + where + " failed while sending: " + ec.message()});
      return;
    }
    if (sent < sending.size()) {
      sending.erase(0, sent);
      asio::co_spawn(strand, write_rest(shared_from_this(), std::move(sending)), asio::detached);
      return;
    }
  }
}

awaitable<void> MuxConnection::write_rest(std::shared_ptr<MuxConnection> self, std::string sending) {
  if (!self->socket) co_return;
  auto [ec, n] = self->tls ? co_await asio::async_write(*self->tls, asio::buffer(sending), kTuple)
                           : co_await asio::async_write(*self->socket, asio::buffer(sending), kTuple);
  if (ec) {
    self->fail(Error{Errc::upstream_error,
                     "rvenc-mux connection to " + self->where + " failed while sending: " + ec.message()});
    co_return;
  }
  self->flush();
}

// --- The deadline sweep ----------------------------------------------------------------------------

void MuxConnection::arm_sweep() {
  if (!sweep) return;
  sweep->expires_after(kSweepInterval);
  sweep->async_wait([self = shared_from_this()](beast::error_code ec) {
    if (!ec) {
      self->check_deadlines();
      return;
    }
    // Cancelled when the last stream went (a pending wait would keep the io_context busy).
    std::lock_guard lock(self->mutex);
    if (self->streams.empty() || self->phase == Phase::closed) {
      self->sweeping = false;
      return;
    }
    asio::post(self->strand, [self] { self->arm_sweep(); });
  });
}

void MuxConnection::check_deadlines() {
  MuxWakeList wake;
  bool again = false;
  {
    std::lock_guard lock(mutex);
    streams.expire(Clock::now(), outbox.frames(), wake);
    schedule_flush_locked();
    unblock_reader_locked();
    again = !streams.empty() && phase != Phase::closed;
    sweeping = again;
  }
  detail::wake_all(wake);
  if (again) arm_sweep();
}

// --- Opening: connect, TLS, the upgrade exchange ------------------------------------------------------

namespace {

// The request that asks `server` for rvenc-mux/1 (docs/mux.md, "Opening a connection").
std::string upgrade_head(const Url& server, const std::string& authorization) {
  Request upgrade{Verb::get, mux::kPath, kHttp11};
  upgrade.set(bhttp::field::host, server.host_header());
  upgrade.set(bhttp::field::connection, "Upgrade");
  upgrade.set(bhttp::field::upgrade, mux::kUpgradeToken);
  if (!authorization.empty()) upgrade.set(bhttp::field::authorization, authorization);
  upgrade.set(mux::kTrailersField, mux::kTrailersValue);
  return detail::serialize_head(upgrade.base());
}

}  // namespace

awaitable<void> MuxConnection::connect(std::shared_ptr<MuxConnection> self, std::string authorization) {
  // The connect and the upgrade exchange, under one deadline (the stream's expiry).
  beast::tcp_stream stream(self->strand);
  auto connected = co_await detail::connect(stream, self->server, self->connect_timeout, self->connect_timeout);
  if (!connected) {
    self->fail(connected.error());
    co_return;
  }
  if (self->server.secure()) {
    if (auto secured = co_await start_tls(self, stream); !secured) {
      self->fail(secured.error());
      co_return;
    }
  }
  beast::flat_buffer buffer;
  UpgradeAnswer parser;
  parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(self->header_limit, UINT32_MAX)));
  const beast::error_code ec =
      co_await exchange_upgrade(self, stream, upgrade_head(self->server, authorization), buffer, parser);
  if (self->deadline) self->deadline->cancel();
  if (ec) {
    self->fail(ec == beast::error::timeout
                   ? Error{Errc::upstream_timeout, "timed out opening a rvenc-mux connection to " + self->where}
                   : Error{Errc::upstream_error,
                           "opening a rvenc-mux connection to " + self->where + " failed: " + ec.message()});
    co_return;
  }
  const auto& answer = parser.get();
  if (answer.result() != bhttp::status::switching_protocols ||
      !beast::iequals(answer[bhttp::field::upgrade], mux::kUpgradeToken)) {
    self->refuse_upgrade(answer.result_int());
    co_return;
  }
  self->open_upgraded(stream, buffer, beast::iequals(answer[mux::kTrailersField], mux::kTrailersValue));
}

awaitable<beast::error_code> MuxConnection::exchange_upgrade(std::shared_ptr<MuxConnection> self,
                                                             beast::tcp_stream& stream, std::string head,
                                                             beast::flat_buffer& buffer, UpgradeAnswer& parser) {
  if (self->tls) {
    // Through TLS, still under the connect deadline's timer.
    auto [write_ec, written] = co_await asio::async_write(*self->tls, asio::buffer(head), kTuple);
    beast::error_code ec = write_ec;
    if (!ec) ec = co_await detail::read_message(*self->tls, buffer, parser, false);
    if (ec && self->connect_deadline_passed) ec = beast::error::timeout;
    co_return ec;
  }
  auto [write_ec, written] = co_await asio::async_write(stream, asio::buffer(head), kTuple);
  beast::error_code ec = write_ec;
  if (!ec) ec = co_await detail::read_message(stream, buffer, parser, false);
  co_return ec;
}

void MuxConnection::refuse_upgrade(unsigned status) {
  if (auto owner = state.lock()) {
    spdlog::info("http: {} does not take rvenc-mux connections (answered {}); using HTTP/1.1 for {} s", where, status,
                 owner->options.refusal_memory.count() / 1000);
    owner->remember_refusal(server);
  }
  fail(Error{Errc::upstream_error, where + " refused the rvenc-mux upgrade"}, true);
}

void MuxConnection::open_upgraded(beast::tcp_stream& stream, const beast::flat_buffer& buffer, bool server_trailers) {
  if (!tls) {
    stream.expires_never();
    *socket = stream.release_socket();
  }
  beast::error_code ignored;
  socket->non_blocking(true, ignored);
  // Frames that came with the 101.
  in.assign(static_cast<const char*>(buffer.data().data()), buffer.size());
  in_used = in.size();
  std::lock_guard lock(mutex);
  if (phase != Phase::connecting) return;  // failed meanwhile (the client closed)
  phase = Phase::open;
  trailers = server_trailers;
  resume_locked();
}

awaitable<Status> MuxConnection::start_tls(std::shared_ptr<MuxConnection> self, beast::tcp_stream& stream) {
  auto state = self->state.lock();
  if (!state) co_return rvenc::fail(Errc::upstream_error, "the rvenc-mux client was closed");
  auto context = state->fallback->tls_context();
  if (!context) co_return std::unexpected(context.error());
  stream.expires_never();
  *self->socket = stream.release_socket();
  self->deadline.emplace(self->strand);
  self->deadline->expires_after(self->connect_timeout);
  self->deadline->async_wait([weak = std::weak_ptr<MuxConnection>(self)](beast::error_code ec) {
    auto connection = weak.lock();
    if (ec || !connection || !connection->socket) return;
    connection->connect_deadline_passed = true;
    beast::error_code ignored;
    connection->socket->close(ignored);
  });
  self->tls = std::make_unique<asio::ssl::stream<tcp::socket&>>(*self->socket, **context);
  SSL* const ssl = self->tls->native_handle();
  if (auto ready = prepare_client_tls(ssl, self->server.host); !ready) co_return ready;
  auto [ec] = co_await self->tls->async_handshake(asio::ssl::stream_base::client, kTuple);
  if (!ec) co_return Status{};
  if (self->connect_deadline_passed) ec = beast::error::timeout;
  co_return std::unexpected(tls_handshake_error(ec, SSL_get_verify_result(ssl), self->where));
}

awaitable<void> MuxConnection::read_loop(std::shared_ptr<MuxConnection> self) {
  std::size_t& used = self->in_used;
  for (;;) {
    if (used > 0 && !self->dispatch(used)) co_return;
    {
      std::lock_guard lock(self->mutex);
      // Idle: no read stays pending (the next stream resumes the reader).
      if (self->streams.empty() || self->phase != Phase::open || !self->socket) {
        self->reading = false;
        co_return;
      }
    }
    if (self->in.size() < used + kReadSpace) self->in.resize(used + kReadSpace);
    const auto space = asio::buffer(self->in.data() + used, self->in.size() - used);
    auto [ec, n] = self->tls ? co_await self->tls->async_read_some(space, kTuple)
                             : co_await self->socket->async_read_some(space, kTuple);
    if (ec) {
      {
        std::lock_guard lock(self->mutex);
        // Cancelled because the last stream went away locally: pause, or go on if one came since.
        if (ec == asio::error::operation_aborted && self->phase == Phase::open && self->socket) {
          if (self->streams.empty()) {
            self->reading = false;
            co_return;
          }
          continue;
        }
        self->reading = false;
      }
      self->fail(Error{Errc::upstream_error, "rvenc-mux connection to " + self->where + " lost: " + ec.message()});
      co_return;
    }
    used += n;
  }
}

bool MuxConnection::dispatch(std::size_t& used) {
  MuxWakeList wake;
  std::optional<Error> broken;
  std::size_t offset = 0;
  {
    std::lock_guard lock(mutex);
    const auto now = Clock::now();
    const auto max_payload = std::max<std::size_t>(header_limit, mux::kMaxDataPayload);
    while (!broken) {
      auto next = mux::next_frame(std::string_view(in).substr(offset, used - offset), max_payload);
      if (!next) {
        broken = Error{Errc::upstream_error, "malformed rvenc-mux frame from " + where + ": " + next.error().message};
        break;
      }
      if (!*next) break;
      const mux::Frame frame = **next;
      offset += frame.size();
      broken = streams.receive(frame, now, wake);
    }
    last_used = now;
    if (streams.empty() && sweeping) asio::post(strand, [self = shared_from_this()] {
      if (self->sweep) self->sweep->cancel();
    });
  }
  detail::wake_all(wake);
  if (broken) {
    spdlog::warn("http: {}", broken->message);
    fail(std::move(*broken));
    return false;
  }
  std::memmove(in.data(), in.data() + offset, used - offset);
  used -= offset;
  return true;
}

namespace {

class MuxResponseStream final : public ResponseStream {
 public:
  MuxResponseStream(std::shared_ptr<MuxConnection> connection, std::shared_ptr<MuxStream> stream,
                    ResponseHeader header)
      : connection_(std::move(connection)), stream_(std::move(stream)), header_(std::move(header)) {}
  ~MuxResponseStream() override { reset("the gateway closed the stream", false); }

  [[nodiscard]] const ResponseHeader& header() const override { return header_; }

  awaitable<Result<std::optional<std::string>>> read_some() override {
    MuxStream& s = *stream_;
    for (;;) {
      {
        std::lock_guard lock(connection_->mutex);
        if (!s.received.empty()) {
          std::string bytes = std::exchange(s.received, std::move(spare_));
          s.received.clear();
          spare_.clear();
          finished_ = s.ended && !s.error;
          credit_locked(bytes.size());
          co_return std::optional<std::string>(std::move(bytes));
        }
        if (s.error) co_return std::unexpected(*s.error);
        if (s.ended) {
          finished_ = true;
          co_return std::optional<std::string>{};
        }
        s.waiting = true;
        s.quiet_since = Clock::now();
      }
      co_await s.signal.async_receive(kTuple);
    }
  }

  void recycle(std::string spent) override { spare_ = std::move(spent); }
  [[nodiscard]] bool finished() const override { return finished_; }
  void cancel() override { reset("cancelled", true); }

  awaitable<std::optional<std::string>> trailer() override {
    MuxStream& s = *stream_;
    for (;;) {
      {
        std::lock_guard lock(connection_->mutex);
        if (s.trailer) co_return std::exchange(s.trailer, std::nullopt);
        if (!s.awaiting_trailer) co_return std::nullopt;
        s.waiting = true;
      }
      co_await s.signal.async_receive(kTuple);
    }
  }

 private:
  void credit_locked(std::size_t bytes) {
    MuxStream& s = *stream_;
    if (s.ended || s.error) return;
    s.unacked += static_cast<std::uint32_t>(bytes);
    if (s.unacked < kCreditStep) return;
    const std::uint32_t increment = std::exchange(s.unacked, 0);
    connection_->queue_locked([&](std::string& out) { mux::append_window(out, s.id, increment); });
  }

  // Abandons the stream: the server is told (its handler sees the client gone), a pending
  // read_some() fails. `await_trailer`: trailer() may wait for what the server sends after.
  void reset(std::string_view why, bool await_trailer) {
    MuxStream& s = *stream_;
    bool wake = false;
    {
      std::lock_guard lock(connection_->mutex);
      if (s.ended || s.error) return;
      s.error = Error{Errc::upstream_error, "cancelled"};
      wake = std::exchange(s.waiting, false);
      const bool open = connection_->phase == MuxConnection::Phase::open;
      if (await_trailer && open && connection_->trailers && connection_->streams.contains(s.id)) {
        // Kept (the reader and the deadline sweep go on) until its TRAILER or kTrailerWait.
        connection_->streams.await_trailer(s, Clock::now());
        connection_->queue_locked(
            [&](std::string& out) { mux::append_frame(out, mux::FrameType::reset, s.id, why); });
      } else if (connection_->streams.erase(s.id) && open) {
        connection_->queue_locked(
            [&](std::string& out) { mux::append_frame(out, mux::FrameType::reset, s.id, why); });
        connection_->unblock_reader_locked();
      }
    }
    if (wake) s.signal.try_send(beast::error_code{});
  }

  std::shared_ptr<MuxConnection> connection_;
  std::shared_ptr<MuxStream> stream_;
  ResponseHeader header_;
  std::string spare_;
  bool finished_ = false;
};

}  // namespace

MuxClient::MuxClient(HttpClient& fallback, MuxClientOptions options)
    : state_(std::make_shared<State>(fallback, std::move(options))) {}

MuxClient::~MuxClient() { state_->close_all(); }

std::size_t MuxClient::connections() const {
  std::lock_guard lock(state_->mutex);
  return static_cast<std::size_t>(std::count_if(state_->connections.begin(), state_->connections.end(), [](auto& c) {
    std::lock_guard connection_lock(c->mutex);
    return c->phase != MuxConnection::Phase::closed;
  }));
}

awaitable<Result<std::unique_ptr<ResponseStream>>> MuxClient::open(Url server, Request request, Timeouts timeouts) {
  auto state = state_;
  if (state->refused(server)) co_return co_await state->fallback->open(std::move(server), std::move(request), timeouts);
  detail::prepare_request(server, request);
  const std::string head = detail::serialize_head(request.base());
  const std::size_t limit = std::min(state->options.max_request_bytes, mux::kMaxRequestFrame);
  if (request.chunked() || head.size() + request.body().size() > limit)
    co_return co_await state->fallback->open(std::move(server), std::move(request), timeouts);

  const auto executor = co_await asio::this_coro::executor;
  const std::optional<Clock::time_point> total_end =
      timeouts.total ? std::optional(Clock::now() + *timeouts.total) : std::nullopt;
  for (int attempt = 0;; ++attempt) {
    auto stream = std::make_shared<MuxStream>(executor);
    stream->idle = timeouts.idle;
    stream->total_end = total_end;
    auto connection = state->attach(server, executor, stream, head, request.body(), timeouts.connect);
    for (;;) {
      {
        std::lock_guard lock(connection->mutex);
        if (stream->headed || stream->error) break;
        stream->waiting = true;
        stream->quiet_since = Clock::now();
      }
      co_await stream->signal.async_receive(kTuple);
    }
    std::optional<ResponseHeader> header;
    bool retry = false;
    {
      std::lock_guard lock(connection->mutex);
      if (stream->headed) {
        header = std::move(stream->header);
      } else if (!stream->refused) {
        retry = attempt == 0 && stream->joined_idle && stream->connection_lost;
        if (!retry) co_return std::unexpected(*stream->error);
      }
    }
    if (retry) continue;
    // Refused: nothing was sent, HTTP/1.1 carries the request.
    if (!header) co_return co_await state->fallback->open(std::move(server), std::move(request), timeouts);
    co_return std::make_unique<MuxResponseStream>(std::move(connection), std::move(stream), std::move(*header));
  }
}

}  // namespace rvenc::http
