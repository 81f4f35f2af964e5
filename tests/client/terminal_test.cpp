// Model output and gateway messages made safe for a terminal (security review, issue 30 item 10):
// control sequences removed, printable text (UTF-8 included), newlines and tabs kept, sequences
// split across streamed chunks still removed.
#include <gtest/gtest.h>

#include "rvenc/client/terminal.hpp"

namespace rvenc::client {
namespace {

TEST(TerminalText, PrintableTextIsKept) {
  EXPECT_EQ(strip_terminal_controls("Hello, world!\n\tindented ~ {json: [1]}"), "Hello, world!\n\tindented ~ {json: [1]}");
  EXPECT_EQ(strip_terminal_controls("Grüße ✓ 日本 🙂 \u00a0nbsp"), "Grüße ✓ 日本 🙂 \u00a0nbsp");
}

TEST(TerminalText, OscClipboardWriteAndWindowTitleAreRemoved) {
  // OSC 52 (set the clipboard) ended by BEL, and a window title ended by ST (ESC backslash).
  EXPECT_EQ(strip_terminal_controls("a\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\x07z"), "az");
  EXPECT_EQ(strip_terminal_controls("a\x1b]0;pwned\x1b\\z"), "az");
  EXPECT_EQ(strip_terminal_controls("a\x1bP1$qm\x1b\\z\x1b_apc\x07!"), "az!");  // DCS, APC
}

TEST(TerminalText, CsiAndOtherEscapesAreRemoved) {
  EXPECT_EQ(strip_terminal_controls("\x1b[31;1mred\x1b[0m \x1b[2J\x1b[H\x1b[?1049h"), "red ");
  EXPECT_EQ(strip_terminal_controls("x\x1b" "7y\x1b(0z\x1b" "c"), "xyz");  // DECSC, charset, RIS
}

TEST(TerminalText, C0ControlsExceptNewlineAndTabAndDelAreRemoved) {
  EXPECT_EQ(strip_terminal_controls(std::string_view("a\rb\bc\x07" "d\x00" "e\x7f" "f\n\tg", 14)), "abcdef\n\tg");
}

TEST(TerminalText, C1ControlsAreRemovedEncodedOrRaw) {
  // U+009B (CSI) and U+009D (OSC) as UTF-8, then as raw bytes (not valid UTF-8), then U+0085.
  EXPECT_EQ(strip_terminal_controls("a\xc2\x9b" "31mb\xc2\x9d" "c"), "a31mbc");
  EXPECT_EQ(strip_terminal_controls("a\x9b" "31mb\x9d\x80" "c\xc2\x85"), "a31mbc");
  // U+00A0 just above the C1 range is text; broken and overlong UTF-8 is dropped.
  EXPECT_EQ(strip_terminal_controls("\xc2\xa0|\xc0\x9b|\xe2\x9c|\xed\xa0\x80|\xf5\x80"), "\xc2\xa0||||");
}

TEST(TerminalText, SequencesSplitAcrossChunksAreStillRemoved) {
  TerminalTextFilter filter;
  std::string out;
  for (std::string_view chunk : {"Hi \x1b", "]0;ti", "tle\x1b", "\\ there \xe2", "\x9c", "\x93 \x1b[3", "1mred\xc2",
                                 "\x9b" "x"})
    out += filter.filter(chunk);
  EXPECT_EQ(out, "Hi  there ✓ redx");
  // Byte by byte.
  filter.reset();
  out.clear();
  for (const char c : std::string_view("a\x1b]52;c;AAAA\x07" "b\x1b[1mc✓"))
    out += filter.filter(std::string_view(&c, 1));
  EXPECT_EQ(out, "abc✓");
}

TEST(TerminalText, ControlsInsideASequenceEndIt) {
  // A newline ends an unfinished CSI and is kept; ESC inside an OSC starts a new sequence.
  EXPECT_EQ(strip_terminal_controls("a\x1b[12\nb"), "a\nb");
  EXPECT_EQ(strip_terminal_controls("a\x1b]0;t\x1b[31mb"), "ab");
}

}  // namespace
}  // namespace rvenc::client
