#include "rvenc/client/terminal.hpp"

#include "rvenc/common/utf8.hpp"

namespace rvenc::client {
namespace {

constexpr unsigned char kEsc = 0x1b;
constexpr unsigned char kBel = 0x07;
constexpr unsigned char kDel = 0x7f;

using utf8::continuation_bytes;
using utf8::valid_second;

}  // namespace

std::string TerminalTextFilter::filter(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (state_ == State::text)
      text_byte(byte, out);
    else
      sequence_byte(byte, out);
  }
  return out;
}

void TerminalTextFilter::text_byte(unsigned char byte, std::string& out) {
  if (pending_needed_ > 0) {
    const auto lead = static_cast<unsigned char>(pending_[0]);
    const bool fits = pending_size_ == 1 ? valid_second(lead, byte) : byte >= 0x80 && byte <= 0xbf;
    if (fits) {
      pending_[pending_size_++] = static_cast<char>(byte);
      if (--pending_needed_ > 0) return;
      // U+0080..U+009F are the C1 controls (0xC2 0x80..0x9F), CSI (U+009B) and OSC (U+009D) among them.
      const bool c1 = lead == 0xc2 && static_cast<unsigned char>(pending_[1]) <= 0x9f;
      if (!c1) out.append(pending_, pending_size_);
      pending_size_ = 0;
      return;
    }
    pending_size_ = pending_needed_ = 0;  // a broken character is dropped; `byte` starts afresh
  }
  if (byte == kEsc) {
    state_ = State::escape;
  } else if (byte == '\n' || byte == '\t' || (byte >= 0x20 && byte < kDel)) {
    out.push_back(static_cast<char>(byte));
  } else if (const std::uint8_t needed = continuation_bytes(byte); needed > 0) {
    pending_[0] = static_cast<char>(byte);
    pending_size_ = 1;
    pending_needed_ = needed;
  }
  // Everything else (other C0 controls, DEL, bytes that are not UTF-8, raw C1 0x80..0x9F) goes.
}

void TerminalTextFilter::sequence_byte(unsigned char byte, std::string& out) {
  // A byte that cannot belong to the sequence ends it and counts as text again (as on a terminal).
  const auto abandon = [&] {
    state_ = State::text;
    text_byte(byte, out);
  };
  switch (state_) {
    case State::escape:
      if (byte == '[') {
        state_ = State::csi;
      } else if (byte == ']' || byte == 'P' || byte == 'X' || byte == '^' || byte == '_') {
        state_ = State::string;  // OSC, DCS, SOS, PM, APC: a string up to BEL or ESC backslash
      } else if (byte >= 0x20 && byte <= 0x2f) {
        state_ = State::escape_intermediate;
      } else if (byte >= 0x30 && byte <= 0x7e) {
        state_ = State::text;
      } else {
        abandon();
      }
      return;
    case State::escape_intermediate:
      if (byte >= 0x30 && byte <= 0x7e)
        state_ = State::text;
      else if (byte < 0x20 || byte > 0x2f)
        abandon();
      return;
    case State::csi:
      if (byte >= 0x40 && byte <= 0x7e)
        state_ = State::text;
      else if (byte < 0x20 || byte > 0x3f)
        abandon();
      return;
    case State::string:
      if (byte == kBel) state_ = State::text;
      if (byte == kEsc) state_ = State::string_escape;
      return;
    case State::string_escape:
      if (byte == '\\') {
        state_ = State::text;
      } else {
        state_ = State::escape;  // ESC inside a string ends it and starts a new sequence
        sequence_byte(byte, out);
      }
      return;
    case State::text:
      text_byte(byte, out);
      return;
  }
}

std::string strip_terminal_controls(std::string_view text) {
  TerminalTextFilter filter;
  return filter.filter(text);
}

}  // namespace rvenc::client
