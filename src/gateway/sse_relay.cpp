#include "rvenc/gateway/sse_relay.hpp"

#include <boost/json/parse.hpp>

namespace rvenc::gateway {

SseRelay::SseRelay(std::size_t max_event_bytes) : parser_(max_event_bytes), max_event_bytes_(max_event_bytes) {}

Result<std::string> SseRelay::feed(std::string_view bytes) {
  if (failed_) return fail(Errc::event_too_large, "an upstream event was larger than the limit");
  std::string out;
  for (const char c : bytes) {
    if (after_cr_ && c == '\n') {
      // The "\n" of a "\r\n" whose "\r" already ended the line.
      after_cr_ = false;
      if (current_.empty()) {
        if (last_forwarded_) out.push_back(c);
        std::vector<protocol::SseEvent> ignored;
        (void)parser_.feed(std::string_view(&c, 1), ignored);
      } else {
        current_.push_back(c);
      }
      continue;
    }
    after_cr_ = false;
    current_.push_back(c);
    if (c == '\n' || c == '\r') {
      after_cr_ = c == '\r';
      if (line_length_ == 0) {
        finish_event(out);
        if (failed_) return fail(Errc::event_too_large, "an upstream event was larger than the limit");
      } else {
        line_length_ = 0;
      }
    } else {
      ++line_length_;
    }
    if (current_.size() > max_event_bytes_) {
      failed_ = true;
      return fail(Errc::event_too_large, "an upstream event was larger than the limit");
    }
  }
  return out;
}

void SseRelay::finish_event(std::string& out) {
  std::vector<protocol::SseEvent> events;
  if (!parser_.feed(current_, events)) {
    failed_ = true;
    current_.clear();
    return;
  }
  bool forward = true;
  for (const auto& event : events) {
    if (event.event == kUsageEventKind) {
      forward = false;
      boost::system::error_code ec;
      const auto value = boost::json::parse(event.data, ec);
      if (!ec) {
        if (auto usage = protocol::parse_usage(value)) usage_ = usage;
      }
    } else if (event.event == "done") {
      saw_done_ = true;
    }
  }
  if (forward) out += current_;
  last_forwarded_ = forward;
  current_.clear();
}

}  // namespace rvenc::gateway
