#include "rvenc/gateway/sse_relay.hpp"

#include <vector>

#include <boost/json/parse.hpp>

namespace rvenc::gateway {
SseRelay::SseRelay(std::size_t max_event_bytes) : max_event_bytes_(max_event_bytes) {}

Result<std::string_view> SseRelay::too_large() {
  failed_ = true;
  pending_.clear();
  consumed_ = 0;
  return fail(Errc::event_too_large,
              "an upstream event was larger than the limit of " + std::to_string(max_event_bytes_) + " bytes");
}

Result<std::string_view> SseRelay::feed(std::string_view bytes) {
  if (failed_) return too_large();
  pending_.erase(0, consumed_);
  consumed_ = 0;
  spliced_.clear();

  // Scan the input in place unless an unfinished event is carried over; either way the buffer
  // starts with the current event, so line_start_ is an offset into it.
  const bool carried = !pending_.empty();
  std::size_t pos = pending_.size();
  if (carried) pending_.append(bytes);
  const std::string_view buffer = carried ? std::string_view(pending_) : bytes;
  const char* const data = buffer.data();

  std::size_t event_start = 0;
  std::size_t line_start = line_start_;
  std::size_t forward_begin = 0;
  std::size_t forward_end = 0;
  const auto forward = [&](std::size_t begin, std::size_t end) {
    if (begin != forward_end) {
      spliced_.append(buffer.substr(forward_begin, forward_end - forward_begin));
      forward_begin = begin;
    }
    forward_end = end;
  };

  while (pos < buffer.size()) {
    if (after_cr_) {
      after_cr_ = false;
      if (data[pos] == '\n') {
        // The \n of a \r\n whose \r already ended the line; after a blank line it closes the
        // event that just ended and goes wherever that event went.
        if (pos == event_start) {
          if (last_forwarded_) forward(pos, pos + 1);
          event_start = pos + 1;
        }
        line_start = ++pos;
        continue;
      }
    }
    const std::size_t end = protocol::find_line_end(buffer, pos);
    if (end == std::string_view::npos) break;
    after_cr_ = data[end] == '\r';
    const std::string_view line = buffer.substr(line_start, end - line_start);
    pos = end + 1;
    if (line.empty()) {
      const std::string_view event = buffer.substr(event_start, pos - event_start);
      if (event.size() > max_event_bytes_) return too_large();
      finish_event(event);
      if (forward_) forward(event_start, pos);
      event_start = pos;
    } else {
      finish_line(line);
    }
    line_start = pos;
  }

  const std::size_t unfinished = buffer.size() - event_start;
  if (unfinished > max_event_bytes_) return too_large();
  line_start_ = line_start - event_start;
  std::string_view out = buffer.substr(forward_begin, forward_end - forward_begin);
  if (!spliced_.empty()) out = spliced_.append(out);
  if (carried) {
    // `out` may point into pending_: the handed-out prefix is dropped at the next feed().
    consumed_ = event_start;
  } else {
    pending_.assign(buffer.substr(event_start));
  }
  return out;
}

void SseRelay::finish_line(std::string_view line) {
  if (line.front() == ':') return;  // a comment
  const auto colon = line.find(':');
  const std::string_view field = line.substr(0, colon);
  if (field == "data") {
    has_data_ = true;
  } else if (field == "event") {
    std::string_view value = colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
    if (value.starts_with(' ')) value.remove_prefix(1);
    kind_ = value == kUsageEventKind ? Kind::usage : value == "done" ? Kind::done : Kind::other;
  }
}

void SseRelay::finish_event(std::string_view event) {
  // As for any SSE client, an event without data lines is not an event (it is forwarded as is).
  forward_ = !(has_data_ && kind_ == Kind::usage);
  if (!forward_) {
    protocol::SseParser parser(max_event_bytes_);
    std::vector<protocol::SseEvent> events;
    if (parser.feed(event, events) && !events.empty()) {
      boost::system::error_code ec;
      const auto value = boost::json::parse(events.back().data, ec);
      if (auto usage = ec ? std::nullopt : protocol::parse_usage(value)) {
        const auto* final = value.as_object().if_contains("final");
        (final && final->is_bool() && !final->get_bool() ? provisional_ : final_) = usage;
      }
    }
  } else if (has_data_ && kind_ == Kind::done) {
    saw_done_ = true;
  }
  last_forwarded_ = forward_;
  kind_ = Kind::other;
  has_data_ = false;
}

}  // namespace rvenc::gateway
