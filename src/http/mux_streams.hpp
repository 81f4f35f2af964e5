// The client side of rvenc-mux/1's streams (docs/mux.md): what one stream holds, and the table of a
// connection's open streams that numbers them, applies the frames the server sends to them,
// expires them and fails them all. Private to rvenc_http (MuxConnection in mux.cpp owns one).
//
// Design: pure logic, no socket. The table never locks: its owner (the connection) calls it under
// the mutex that guards the streams. It never wakes a stream's reader either: it collects the
// streams to wake in a MuxWakeList, and the owner wakes them (wake_all) once its lock is released.
// Frames this side must answer with (a RESET for a stream that timed out) are appended to the
// owner's output buffer. So the table is tested without a server (tests/http/http_mux_streams_test.cpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>

#include "rvenc/common/error.hpp"
#include "rvenc/http/client.hpp"
#include "rvenc/http/mux_frame.hpp"
#include "rvenc/http/types.hpp"

namespace rvenc::http::detail {

using MuxClock = std::chrono::steady_clock;

// Stream ids are not reused: a connection that has numbered this many takes no more streams.
inline constexpr std::uint32_t kMuxLastStreamId = 0x7fff'ffff;
// Beyond its window a stream's unread bytes mean a misbehaving server.
inline constexpr std::size_t kMuxMaxUnread = mux::kInitialWindow + mux::kMaxDataPayload;

struct MuxStream {
  using Signal = boost::asio::experimental::concurrent_channel<void(boost::system::error_code)>;

  explicit MuxStream(const boost::asio::any_io_executor& executor) : signal(executor, 1) {}

  Signal signal;  // a wake-up for the stream's reader (capacity 1: none is lost)
  std::uint32_t id = 0;
  std::chrono::milliseconds idle{Timeouts::kDefaultIdle};
  std::optional<MuxClock::time_point> total_end;
  // Guarded by the connection's mutex.
  std::optional<ResponseHeader> header;  // until open() takes it
  bool headed = false;                   // HEAD arrived
  std::string received;                  // body bytes not handed out yet
  bool ended = false;                    // END arrived
  std::optional<Error> error;
  bool refused = false;  // the server does not speak rvenc-mux: use HTTP/1.1
  bool waiting = false;
  // Joined a connection that had been idle, which the server may have closed meanwhile: a
  // connection lost before any answer (`connection_lost`) is then retried once on a new one.
  bool joined_idle = false;
  bool connection_lost = false;
  MuxClock::time_point quiet_since;  // of the reader's wait: the start of the silence Timeouts::idle bounds
  std::uint32_t unacked = 0;         // bytes handed out and not yet credited back
  // Reset by this side on a connection whose server sends TRAILER frames: kept in the table until
  // its TRAILER comes or trailer_end passes (its other frames are dropped).
  bool awaiting_trailer = false;
  MuxClock::time_point trailer_end;
  std::optional<std::string> trailer;
};

// Streams whose reader waits for what the table just did to them.
using MuxWakeList = std::vector<std::shared_ptr<MuxStream>>;

// Wakes each stream's reader; call it without the connection's lock.
void wake_all(const MuxWakeList& wake);

class MuxStreamTable {
 public:
  // `where` (host:port) names the server in errors; `header_limit` bounds a response head.
  MuxStreamTable(std::string where, std::size_t header_limit);

  // Numbers `stream` (odd ids, as HTTP/2 clients use) and holds it.
  void add(const std::shared_ptr<MuxStream>& stream, MuxClock::time_point now);
  [[nodiscard]] bool empty() const { return streams_.empty(); }
  [[nodiscard]] std::size_t size() const { return streams_.size(); }
  // Room for one more stream: fewer than mux::kMaxStreams open and ids left.
  [[nodiscard]] bool has_room() const {
    return streams_.size() < mux::kMaxStreams && next_id_ < kMuxLastStreamId;
  }
  [[nodiscard]] bool contains(std::uint32_t id) const { return streams_.contains(id); }
  // Drops a stream; false when it was not held.
  bool erase(std::uint32_t id) { return streams_.erase(id) > 0; }
  // This side reset `stream` on a connection whose server sends TRAILER frames: it stays until
  // its TRAILER (or the server's RESET) comes, or until mux::kTrailerWait from `now`.
  void await_trailer(MuxStream& stream, MuxClock::time_point now);

  // Applies one frame from the server to its stream (frames for streams no longer held are
  // dropped). An error is a protocol violation: the connection must fail.
  [[nodiscard]] std::optional<Error> receive(const mux::Frame& frame, MuxClock::time_point now, MuxWakeList& wake);
  // Fails the streams whose reader waited longer than Timeouts::idle or that are past their total
  // end (a RESET "timeout" for each is appended to `out`), and drops those whose TRAILER did not
  // come in time.
  void expire(MuxClock::time_point now, std::string& out, MuxWakeList& wake);
  // Every stream fails with `error` (`refused`: the server does not speak rvenc-mux) and leaves.
  void fail_all(const Error& error, bool refused, MuxWakeList& wake);
  // Drops every stream without waking any (the io_context is shutting down).
  void clear() { streams_.clear(); }

 private:
  // A HEAD, DATA, END or RESET frame for a live stream; sets `done` when the stream is complete.
  [[nodiscard]] std::optional<Error> apply(MuxStream& stream, const mux::Frame& frame, bool& done) const;

  std::string where_;
  std::size_t header_limit_;
  std::unordered_map<std::uint32_t, std::shared_ptr<MuxStream>> streams_;
  std::uint32_t next_id_ = 1;
};

}  // namespace rvenc::http::detail
