// The client's rvenc-mux/1 stream table (mux_streams.hpp): numbering, frame application, expiry.
#include "mux_streams.hpp"

#include <algorithm>
#include <climits>
#include <utility>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

namespace rvenc::http::detail {

namespace bhttp = boost::beast::http;

void wake_all(const MuxWakeList& wake) {
  for (const auto& s : wake) s->signal.try_send(boost::system::error_code{});
}

MuxStreamTable::MuxStreamTable(std::string where, std::size_t header_limit)
    : where_(std::move(where)), header_limit_(header_limit) {}

void MuxStreamTable::add(const std::shared_ptr<MuxStream>& stream, MuxClock::time_point now) {
  stream->id = next_id_;
  next_id_ += 2;  // odd ids, as HTTP/2 clients use
  stream->quiet_since = now;
  streams_.emplace(stream->id, stream);
}

void MuxStreamTable::await_trailer(MuxStream& stream, MuxClock::time_point now) {
  stream.awaiting_trailer = true;
  stream.trailer_end = now + mux::kTrailerWait;
}

std::optional<Error> MuxStreamTable::receive(const mux::Frame& frame, MuxClock::time_point now, MuxWakeList& wake) {
  const auto found = streams_.find(frame.stream);
  // Frames for a stream this side already reset or timed out.
  if (found == streams_.end()) return std::nullopt;
  MuxStream& s = *found->second;
  if (s.awaiting_trailer) {
    // Reset by this side: only its TRAILER (or the server's own RESET) matters now.
    if (frame.type == mux::FrameType::trailer) s.trailer = std::string(frame.payload.substr(0, mux::kMaxTrailer));
    if (frame.type != mux::FrameType::trailer && frame.type != mux::FrameType::reset) return std::nullopt;
    s.awaiting_trailer = false;
    if (std::exchange(s.waiting, false)) wake.push_back(found->second);
    streams_.erase(found);
    return std::nullopt;
  }
  bool done = false;
  if (auto broken = apply(s, frame, done)) return broken;
  s.quiet_since = now;
  if (std::exchange(s.waiting, false)) wake.push_back(found->second);
  if (done) streams_.erase(found);
  return std::nullopt;
}

std::optional<Error> MuxStreamTable::apply(MuxStream& s, const mux::Frame& frame, bool& done) const {
  switch (frame.type) {
    case mux::FrameType::head: {
      if (s.headed) return Error{Errc::upstream_error, "two response heads for one stream from " + where_};
      bhttp::response_parser<bhttp::empty_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(header_limit_, UINT32_MAX)));
      parser.eager(false);
      boost::beast::error_code ec;
      parser.put(boost::asio::buffer(frame.payload.data(), frame.payload.size()), ec);
      if (ec || !parser.is_header_done()) return Error{Errc::upstream_error, "malformed response head from " + where_};
      s.header = std::move(parser.get().base());
      s.headed = true;
      return std::nullopt;
    }
    case mux::FrameType::data:
      if (!s.headed || s.received.size() + frame.payload.size() > kMuxMaxUnread)
        return Error{Errc::upstream_error, "response data beyond the stream's window from " + where_};
      s.received.append(frame.payload);
      return std::nullopt;
    case mux::FrameType::end:
      if (!s.headed) return Error{Errc::upstream_error, "a stream ended before its response head from " + where_};
      s.ended = true;
      done = true;
      return std::nullopt;
    case mux::FrameType::reset:
      s.error = Error{Errc::upstream_error, "the enclave at " + where_ + " reset the stream: " +
                                                std::string(frame.payload.substr(0, mux::kMaxResetReason))};
      done = true;
      return std::nullopt;
    default:
      return Error{Errc::upstream_error, "unexpected rvenc-mux frame from " + where_};
  }
}

void MuxStreamTable::expire(MuxClock::time_point now, std::string& out, MuxWakeList& wake) {
  for (auto it = streams_.begin(); it != streams_.end();) {
    MuxStream& s = *it->second;
    if (s.awaiting_trailer) {
      // No trailer in time: its reader learns there is none.
      if (now < s.trailer_end) {
        ++it;
        continue;
      }
      s.awaiting_trailer = false;
      if (std::exchange(s.waiting, false)) wake.push_back(it->second);
      it = streams_.erase(it);
      continue;
    }
    std::optional<Error> expired;
    if (s.total_end && now >= *s.total_end) {
      expired = Error{Errc::upstream_timeout, "no complete answer from " + where_ + " within the total timeout"};
    } else if (s.waiting && now - s.quiet_since >= s.idle) {
      expired = Error{Errc::upstream_timeout, "no data from " + where_ + " for " + std::to_string(s.idle.count()) +
                                                  " ms while waiting for the response"};
    }
    if (!expired) {
      ++it;
      continue;
    }
    s.error = std::move(expired);
    mux::append_frame(out, mux::FrameType::reset, s.id, "timeout");
    if (std::exchange(s.waiting, false)) wake.push_back(it->second);
    it = streams_.erase(it);
  }
}

void MuxStreamTable::fail_all(const Error& error, bool refused, MuxWakeList& wake) {
  for (auto& [id, s] : streams_) {
    if (!s->error && !s->ended) {
      s->error = error;
      s->refused = refused;
      s->connection_lost = true;
    }
    s->awaiting_trailer = false;
    if (std::exchange(s->waiting, false)) wake.push_back(s);
  }
  streams_.clear();
}

}  // namespace rvenc::http::detail
