// The gateway's view of an enclave event stream: it splits the bytes into raw events as each one
// completes, forwards every event's exact bytes, and withholds the enclave's `usage` events
// (PROTOCOL.md section 4): the provisional one at the start of the stream and the final one after
// `done`, whose token counts it keeps apart. Payloads are never interpreted:
// only each event's `event:` and `data` field names are looked at, as its lines complete.
//
// Design: the hot path copies nothing. Complete events are handed back as a view of the bytes
// just fed (or of the unfinished event carried over from the previous feed plus them); only an
// unfinished event is kept, and only a withheld event in the middle of a feed makes a copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "rvenc/common/error.hpp"
#include "rvenc/protocol/chat.hpp"
#include "rvenc/protocol/sse.hpp"

namespace rvenc::gateway {

inline constexpr std::string_view kUsageEventKind = "usage";

class SseRelay {
 public:
  explicit SseRelay(std::size_t max_event_bytes = protocol::kDefaultMaxEventBytes);

  // Takes upstream bytes; returns the bytes to forward now (the complete events so far, usage
  // events removed), valid until the next feed() and while `bytes` is. event_too_large when one
  // event exceeds the limit (the relay stays failed).
  [[nodiscard]] Result<std::string_view> feed(std::string_view bytes);

  [[nodiscard]] bool saw_done() const noexcept { return saw_done_; }
  // The usage marked `"final": false` (the prompt, before any token), and the final one (marked
  // true, or unmarked as from an enclave before provisional usage): the last of each kind.
  [[nodiscard]] std::optional<protocol::Usage> provisional_usage() const noexcept { return provisional_; }
  [[nodiscard]] std::optional<protocol::Usage> final_usage() const noexcept { return final_; }
  // True when an unfinished event is buffered (a stream that ends now was cut mid-event).
  [[nodiscard]] bool has_partial_event() const noexcept { return pending_.size() > consumed_; }

 private:
  enum class Kind { other, usage, done };

  void finish_line(std::string_view line);
  // `event` is the event's bytes up to and including its blank line.
  void finish_event(std::string_view event);
  Result<std::string_view> too_large();

  std::size_t max_event_bytes_;
  // The unfinished event (from consumed_ on) and, during feed(), what it is scanned in.
  std::string pending_;
  std::size_t consumed_ = 0;  // bytes of pending_ handed out by the last feed()
  std::string spliced_;       // the forwarded events when a withheld one sat between them
  std::size_t line_start_ = 0;  // of the current line, relative to the unfinished event
  bool after_cr_ = false;       // the last byte seen was a \r ending a line
  Kind kind_ = Kind::other;     // of the event being read
  bool has_data_ = false;
  bool last_forwarded_ = true;
  bool forward_ = true;  // the event that just ended is forwarded
  bool failed_ = false;
  bool saw_done_ = false;
  std::optional<protocol::Usage> provisional_;
  std::optional<protocol::Usage> final_;
};

}  // namespace rvenc::gateway
