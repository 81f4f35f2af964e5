// The server side of rvenc-mux/1. Everything runs on the connection's executor (its strand when
// the server has several threads), so no state here needs a lock. Frames from every stream are
// queued in one buffer and flushed once the handlers that are ready have run: the chunks of many
// streams leave in one send.
#include "mux_server.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <unordered_map>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <spdlog/spdlog.h>

#include "handler_call.hpp"
#include "rvenc/http/mux.hpp"
#include "wire.hpp"

namespace rvenc::http::detail {

namespace bhttp = beast::http;
namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kReadSpace = 64 * 1024;
// Output queued beyond this makes writers wait (write_now() declines) until the socket drains.
constexpr std::size_t kMaxQueuedOutput = 4 * 1024 * 1024;
// A write this large is flushed before its writer goes on (MuxWriter::write).
constexpr std::size_t kSendAtOnceBytes = 16 * 1024;

struct ServerStream {
  explicit ServerStream(std::uint32_t stream_id) : id(stream_id) {}
  std::uint32_t id;
  std::int64_t credit = mux::kInitialWindow;
  bool gone = false;                          // reset by the client, or the connection is lost
  bool reset_by_client = false;               // a RESET frame came (a TRAILER may follow)
  std::optional<asio::steady_timer> wake;     // a writer waiting for credit
};

struct MuxSession : std::enable_shared_from_this<MuxSession> {
  explicit MuxSession(MuxHost h)
      : host(h),
        executor(h.transport.socket().get_executor()),
        done(executor, asio::steady_timer::time_point::max()),
        drained(executor, asio::steady_timer::time_point::max()),
        write_watchdog(executor, h.options.write_timeout, [this] { close(); }) {}

  MuxHost host;
  asio::any_io_executor executor;
  std::unordered_map<std::uint32_t, std::shared_ptr<ServerStream>> streams;
  std::size_t running = 0;  // stream coroutines not finished
  std::string out;
  bool flushing = false;
  bool closed = false;
  bool close_when_flushed = false;
  asio::steady_timer done;     // serve_mux waits on it for the last stream coroutine
  asio::steady_timer drained;  // writers wait on it while `out` is over kMaxQueuedOutput
  OperationWatchdog write_watchdog;

  void queue(mux::FrameType type, std::uint32_t stream, std::string_view payload) {
    if (closed) return;
    mux::append_frame(out, type, stream, payload);
    if (!flushing) {
      flushing = true;
      // After the handlers that are ready now: their frames go out together.
      asio::post(executor, [self = shared_from_this()] { self->flush(); });
    }
  }

  void flush() {
    if (closed || out.empty()) {
      flushing = false;
      return;
    }
    beast::error_code ec;
    // Over TLS a record half sent is completed by write_rest() with these same bytes (transport.hpp).
    const std::size_t sent = host.transport.write_now(asio::buffer(out), ec);
    if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
      close();
      return;
    }
    out.erase(0, sent);
    if (out.empty()) {
      flushing = false;
      drained.cancel();
      if (close_when_flushed) close();
      return;
    }
    asio::co_spawn(executor, write_rest(shared_from_this()), asio::detached);
  }

  static awaitable<void> write_rest(std::shared_ptr<MuxSession> self) {
    while (!self->closed && !self->out.empty()) {
      std::string sending = std::exchange(self->out, std::string());
      self->drained.cancel();
      self->write_watchdog.begin();
      auto [ec, n] = co_await self->host.transport.write(asio::buffer(sending));
      self->write_watchdog.end();
      if (ec) {
        self->close();
        co_return;
      }
    }
    self->flushing = false;
    self->drained.cancel();
    if (self->close_when_flushed) self->close();
  }

  // The response head of stream `id`, as HTTP/1.1 with this server's name unless it has one.
  template <class Message>
  void queue_head(std::uint32_t id, Message& message) {
    message.version(kHttp11);
    if (message.find(beast::http::field::server) == message.end())
      message.set(beast::http::field::server, host.options.server_name);
    queue(mux::FrameType::head, id, serialize_head(message.base()));
  }

  void wake(ServerStream& stream) {
    if (stream.wake) stream.wake->cancel();
  }

  // Every stream is gone; the reader's pending read fails.
  void close() {
    if (closed) return;
    closed = true;
    out.clear();
    for (auto& [id, stream] : streams) {
      stream->gone = true;
      wake(*stream);
    }
    streams.clear();
    drained.cancel();
    write_watchdog.stop();
    host.transport.close();
  }

  void stream_done(const ServerStream& stream) {
    const auto found = streams.find(stream.id);
    if (found != streams.end() && found->second.get() == &stream) streams.erase(found);
    --running;
    host.idle = running == 0;
    if (running > 0) return;
    done.cancel();
    // Stopping: the last stream has ended, the connection closes (as an idle keep-alive one
    // would) once what is queued has gone out.
    if (host.stopping) close_after_flush();
  }

  void close_after_flush() {
    if (out.empty() && !flushing) close();
    else close_when_flushed = true;
  }
};

class MuxWriter final : public ResponseWriter {
 public:
  MuxWriter(MuxSession& session, std::shared_ptr<ServerStream> stream)
      : session_(session), stream_(std::move(stream)) {}

  awaitable<void> send(Response response) override {
    if (started_) throw std::logic_error("ResponseWriter::send after the response was started");
    started_ = true;
    response.prepare_payload();
    session_.queue_head(stream_->id, response);
    co_await send_data(response.body());
    if (!client_gone()) session_.queue(mux::FrameType::end, stream_->id, {});
    ended_ = true;
  }

  awaitable<bool> begin_stream(ResponseHeader header) override {
    if (started_) throw std::logic_error("ResponseWriter::begin_stream after the response was started");
    started_ = true;
    streaming_ = true;
    bhttp::response<bhttp::empty_body> response{std::move(header)};
    session_.queue_head(stream_->id, response);
    co_return !client_gone();
  }

  awaitable<bool> write(std::string_view bytes) override {
    if (!streaming_ || ended_) throw std::logic_error("ResponseWriter::write outside a stream");
    co_await send_data(bytes);
    // A large write leaves now, not with the batch: it gains nothing from other streams' frames,
    // and the client starts on it while this handler prepares the next (a large answer's records).
    if (bytes.size() >= kSendAtOnceBytes && session_.flushing)
      co_await asio::post(session_.executor, asio::use_awaitable);
    co_return !client_gone();
  }

  bool write_now(std::string_view bytes) override {
    if (!streaming_ || ended_) throw std::logic_error("ResponseWriter::write_now outside a stream");
    if (client_gone() || bytes.empty()) return true;
    if (stream_->credit < static_cast<std::int64_t>(bytes.size()) || bytes.size() > mux::kMaxDataPayload ||
        session_.out.size() > kMaxQueuedOutput)
      return false;
    session_.queue(mux::FrameType::data, stream_->id, bytes);
    stream_->credit -= static_cast<std::int64_t>(bytes.size());
    return true;
  }

  awaitable<void> end_stream(std::string_view last_bytes = {}) override {
    if (!streaming_ || ended_) co_return;
    ended_ = true;
    co_await send_data(last_bytes);
    if (!client_gone()) session_.queue(mux::FrameType::end, stream_->id, {});
  }

  [[nodiscard]] bool client_gone() const override { return stream_->gone || session_.closed; }
  [[nodiscard]] bool started() const override { return started_; }
  [[nodiscard]] bool ended() const { return ended_; }

  // Only for a stream the client reset, on a connection whose client takes TRAILER frames.
  void send_trailer(std::string_view payload) override {
    if (!stream_->reset_by_client || !session_.host.trailers || trailer_sent_) return;
    trailer_sent_ = true;
    session_.queue(mux::FrameType::trailer, stream_->id, payload.substr(0, mux::kMaxTrailer));
  }

  // A stream cut by an exception: the client sees it reset, never a clean end.
  void reset(std::string_view why) {
    ended_ = true;
    if (!client_gone()) session_.queue(mux::FrameType::reset, stream_->id, why);
  }

 private:
  // DATA frames within the stream's credit; waits for WINDOW frames, or for the connection's
  // output to drain, as needed. A client that grants no credit for write_timeout is treated as gone.
  awaitable<void> send_data(std::string_view bytes) {
    while (!bytes.empty() && !client_gone()) {
      if (stream_->credit <= 0) {
        auto& timer = stream_->wake.emplace(session_.executor, session_.host.options.write_timeout);
        auto [ec] = co_await timer.async_wait(kTuple);
        if (!ec && stream_->credit <= 0 && !client_gone()) {
          stream_->gone = true;
          session_.queue(mux::FrameType::reset, stream_->id, "timeout");
        }
        continue;
      }
      if (session_.out.size() > kMaxQueuedOutput) {
        co_await session_.drained.async_wait(kTuple);
        continue;
      }
      const std::size_t n =
          std::min({bytes.size(), mux::kMaxDataPayload, static_cast<std::size_t>(stream_->credit)});
      session_.queue(mux::FrameType::data, stream_->id, bytes.substr(0, n));
      stream_->credit -= static_cast<std::int64_t>(n);
      bytes.remove_prefix(n);
    }
  }

  MuxSession& session_;
  std::shared_ptr<ServerStream> stream_;
  bool started_ = false;
  bool streaming_ = false;
  bool ended_ = false;
  bool trailer_sent_ = false;
};

awaitable<void> run_stream(std::shared_ptr<MuxSession> session, std::shared_ptr<ServerStream> stream,
                           Request request) {
  MuxWriter writer(*session, stream);
  const bool failed = co_await call_handler(session->host.handler, request, writer);
  if (!writer.ended()) {
    if (failed) writer.reset("internal error");
    else co_await writer.end_stream();
  }
  session->stream_done(*stream);
}

// Answers a request that could not be parsed, on its stream.
void answer_unreadable(MuxSession& session, std::uint32_t id, const beast::error_code& ec) {
  Response response = read_error_response(ec, session.host.options);
  response.prepare_payload();
  session.queue_head(id, response);
  session.queue(mux::FrameType::data, id, response.body());
  session.queue(mux::FrameType::end, id, {});
}

void start_stream(MuxSession& session, std::uint32_t id, std::string_view message) {
  if (session.host.stopping) {
    session.queue(mux::FrameType::reset, id, "the server is shutting down");
    return;
  }
  if (session.streams.size() >= mux::kMaxStreams) {
    session.queue(mux::FrameType::reset, id, "too many streams on one connection");
    return;
  }
  const ServerOptions& options = session.host.options;
  bhttp::request_parser<bhttp::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(options.header_limit, UINT32_MAX)));
  parser.body_limit(options.body_limit);
  parser.eager(true);
  beast::error_code ec;
  while (!message.empty() && !parser.is_done()) {
    const std::size_t used = parser.put(asio::buffer(message.data(), message.size()), ec);
    message.remove_prefix(used);
    if (ec || used == 0) break;
  }
  if (!ec && !parser.is_done()) ec = bhttp::error::partial_message;
  if (!ec && !message.empty()) ec = bhttp::error::unexpected_body;
  if (ec) {
    answer_unreadable(session, id, ec);
    return;
  }
  auto stream = std::make_shared<ServerStream>(id);
  session.streams.emplace(id, stream);
  ++session.running;
  session.host.idle = false;
  asio::co_spawn(session.executor, run_stream(session.shared_from_this(), std::move(stream), parser.release()),
                 asio::detached);
}

// Applies the whole frames in `in[0, used)`; false after a protocol error (the session closed).
bool dispatch(MuxSession& session, std::string& in, std::size_t& used, std::size_t max_payload) {
  std::size_t offset = 0;
  for (;;) {
    auto next = mux::next_frame(std::string_view(in).substr(offset, used - offset), max_payload);
    if (!next) {
      spdlog::debug("http: closing a rvenc-mux connection: {}", next.error().message);
      session.close();
      return false;
    }
    if (!*next) break;
    const mux::Frame frame = **next;
    offset += frame.size();
    const auto found = session.streams.find(frame.stream);
    switch (frame.type) {
      case mux::FrameType::request:
        if (found != session.streams.end()) {
          spdlog::debug("http: closing a rvenc-mux connection: stream {} opened twice", frame.stream);
          session.close();
          return false;
        }
        start_stream(session, frame.stream, frame.payload);
        break;
      case mux::FrameType::window: {
        const auto increment = mux::window_increment(frame.payload);
        if (!increment) {
          spdlog::debug("http: closing a rvenc-mux connection: malformed WINDOW frame");
          session.close();
          return false;
        }
        if (found == session.streams.end()) break;  // a stream that has just ended
        found->second->credit += *increment;
        session.wake(*found->second);
        break;
      }
      case mux::FrameType::reset:
        if (found == session.streams.end()) break;
        found->second->gone = true;
        found->second->reset_by_client = true;
        session.wake(*found->second);
        session.streams.erase(found);
        break;
      default:
        spdlog::debug("http: closing a rvenc-mux connection: unexpected frame type {}",
                      static_cast<int>(frame.type));
        session.close();
        return false;
    }
  }
  std::memmove(in.data(), in.data() + offset, used - offset);
  used -= offset;
  return true;
}

}  // namespace

bool is_mux_upgrade(const Request& request) {
  return request.method() == Verb::get && target_path(request) == mux::kPath &&
         beast::iequals(request[bhttp::field::upgrade], mux::kUpgradeToken);
}

bool mux_client_takes_trailers(const Request& request) {
  return beast::iequals(request[mux::kTrailersField], mux::kTrailersValue);
}

std::string mux_switching_head(std::string_view server_name, bool trailers) {
  std::string head = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " +
                     std::string(mux::kUpgradeToken) + "\r\nServer: " + std::string(server_name) + "\r\n";
  if (trailers) head += std::string(mux::kTrailersField) + ": " + std::string(mux::kTrailersValue) + "\r\n";
  return head + "\r\n";
}

awaitable<void> serve_mux(MuxHost host, beast::flat_buffer& buffer) {
  auto session = std::make_shared<MuxSession>(host);
  // The parser applies the server's own limits to each request (431, 413 on its stream).
  const std::size_t max_payload = mux::kMaxRequestFrame;
  std::string in(static_cast<const char*>(buffer.data().data()), buffer.size());
  buffer.consume(buffer.size());
  std::size_t used = in.size();
  host.idle = true;
  for (;;) {
    if (used > 0 && !dispatch(*session, in, used, max_payload)) break;
    if (session->closed || (host.stopping && session->running == 0)) break;
    if (in.size() < used + kReadSpace) in.resize(used + kReadSpace);
    const bool waiting_for_work = session->running == 0;
    if (waiting_for_work) host.idle_watchdog.begin_for(host.options.idle_timeout);
    auto [ec, n] = co_await host.transport.read_some(asio::buffer(in.data() + used, in.size() - used));
    if (waiting_for_work) host.idle_watchdog.end();
    if (ec) break;
    used += n;
  }
  session->close();
  while (session->running > 0) co_await session->done.async_wait(kTuple);
}

}  // namespace rvenc::http::detail
