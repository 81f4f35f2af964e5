// Server-sent events: an incremental parser that takes arbitrary byte slices (one byte at a
// time works) and a writer. Follows the WHATWG event-stream rules that matter here: \n, \r\n
// and \r line ends, comment lines, multi-line data joined with \n, unknown fields ignored.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "rvenc/common/error.hpp"

namespace rvenc::protocol {

inline constexpr std::size_t kDefaultMaxEventBytes = 10u * 1024 * 1024;

// Offset of the first \n or \r in `text` at or after `pos`, or std::string_view::npos. Two memchr
// passes: the one line-end search of every SSE reader and writer here. (libstdc++'s
// find_first_of("\r\n") calls memchr once per byte: a millisecond on a sealed embeddings answer.)
[[nodiscard]] std::size_t find_line_end(std::string_view text, std::size_t pos = 0) noexcept;

struct SseEvent {
  std::string event = "message";  // the SSE default when no "event:" line is given
  std::string data;
  std::string id;
};

class SseParser {
 public:
  explicit SseParser(std::size_t max_event_bytes = kDefaultMaxEventBytes) : max_event_bytes_(max_event_bytes) {}

  // Appends the complete events found in `bytes` to `out`. event_too_large once a single
  // event (its lines so far) exceeds the limit; the parser then stays failed.
  [[nodiscard]] Status feed(std::string_view bytes, std::vector<SseEvent>& out);

  // True when bytes of an unfinished event (or line) are buffered: a stream that ends now was cut.
  [[nodiscard]] bool has_partial_event() const noexcept;
  [[nodiscard]] std::size_t max_event_bytes() const noexcept { return max_event_bytes_; }

 private:
  void process_line(std::string_view line, std::vector<SseEvent>& out);
  void process_gathered_line(std::vector<SseEvent>& out);

  std::size_t max_event_bytes_;
  std::string line_;
  bool last_was_cr_ = false;
  bool failed_ = false;
  std::size_t event_bytes_ = 0;
  bool have_data_ = false;
  bool have_fields_ = false;
  SseEvent current_;
};

// "event: <kind>\ndata: <data>\n\n"; multi-line data becomes several data lines.
[[nodiscard]] std::string format_event(std::string_view kind, std::string_view data);
// OpenAI style: "data: <data>\n\n".
[[nodiscard]] std::string format_data_only(std::string_view data);

}  // namespace rvenc::protocol
