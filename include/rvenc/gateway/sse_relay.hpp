// The gateway's view of an enclave event stream: it splits the bytes into raw events as each one
// completes, forwards every event's exact bytes, and withholds the enclave's trailing `usage`
// event (PROTOCOL.md section 4), whose token counts it keeps. Events are parsed with the core
// protocol::SseParser only to learn their kind; payloads are never interpreted.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rvenc/protocol/chat.hpp"
#include "rvenc/protocol/sse.hpp"

namespace rvenc::gateway {

inline constexpr std::string_view kUsageEventKind = "usage";

class SseRelay {
 public:
  explicit SseRelay(std::size_t max_event_bytes = protocol::kDefaultMaxEventBytes);

  // Takes upstream bytes; returns the bytes to forward now (the complete events so far, usage
  // events removed). event_too_large when one event exceeds the limit (the relay stays failed).
  [[nodiscard]] Result<std::string> feed(std::string_view bytes);

  [[nodiscard]] bool saw_done() const noexcept { return saw_done_; }
  [[nodiscard]] std::optional<protocol::Usage> usage() const noexcept { return usage_; }
  // True when an unfinished event is buffered (a stream that ends now was cut mid-event).
  [[nodiscard]] bool has_partial_event() const noexcept { return !current_.empty(); }

 private:
  void finish_event(std::string& out);

  protocol::SseParser parser_;
  std::size_t max_event_bytes_;
  std::string current_;
  std::size_t line_length_ = 0;
  bool after_cr_ = false;
  bool last_forwarded_ = true;
  bool failed_ = false;
  bool saw_done_ = false;
  std::optional<protocol::Usage> usage_;
};

}  // namespace rvenc::gateway
