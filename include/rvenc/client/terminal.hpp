// Text from the model or the gateway made safe to write to a terminal: terminal control sequences
// (ESC sequences such as CSI colours, OSC window titles and OSC 52 clipboard writes, DCS/APC/PM/
// SOS strings), C0 controls except newline and tab, DEL and C1 controls (U+0080..U+009F, and raw
// bytes that are not valid UTF-8) are removed; printable text, UTF-8 included, is kept as is.
//
// Design: a small byte-level state machine, so a stream can be filtered chunk by chunk and a
// sequence split across chunks (ESC at the end of one, "]0;title" in the next) is still removed.
// It strips rather than escapes: what a person reads is the text; `rvenc chat --raw` skips it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace rvenc::client {

class TerminalTextFilter {
 public:
  // The printable part of `text`, continuing whatever sequence an earlier call left open.
  [[nodiscard]] std::string filter(std::string_view text);
  // Forgets any open sequence (a new answer starts).
  void reset() noexcept { *this = TerminalTextFilter{}; }

 private:
  enum class State : std::uint8_t { text, escape, escape_intermediate, csi, string, string_escape };
  void text_byte(unsigned char byte, std::string& out);
  void sequence_byte(unsigned char byte, std::string& out);

  State state_ = State::text;
  // The UTF-8 character being read: its bytes so far and how many more it needs.
  char pending_[4] = {};
  std::uint8_t pending_size_ = 0;
  std::uint8_t pending_needed_ = 0;
};

// strip_terminal_controls("a\x1b]0;x\x07b") == "ab": one whole text through a fresh filter.
[[nodiscard]] std::string strip_terminal_controls(std::string_view text);

}  // namespace rvenc::client
