// The incremental SSE parser and writer.
#include <gtest/gtest.h>

#include "rvenc/protocol/sse.hpp"

namespace rvenc::protocol {
namespace {

std::vector<SseEvent> parse_all(std::string_view text, std::size_t chunk = 0, std::size_t limit = kDefaultMaxEventBytes) {
  SseParser parser(limit);
  std::vector<SseEvent> out;
  if (chunk == 0) chunk = text.size() + 1;
  for (std::size_t i = 0; i < text.size(); i += chunk) {
    auto ok = parser.feed(text.substr(i, chunk), out);
    EXPECT_TRUE(ok.has_value()) << ok.error().to_string();
  }
  return out;
}

TEST(Sse, EventsAndKinds) {
  const auto events = parse_all("event: data\ndata: abc\n\nevent: done\ndata: [DONE]\n\n");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].event, "data");
  EXPECT_EQ(events[0].data, "abc");
  EXPECT_EQ(events[1].event, "done");
  EXPECT_EQ(events[1].data, "[DONE]");
}

TEST(Sse, OneByteAtATimeAndEverySplitGiveTheSameEvents) {
  const std::string text =
      ": hello\r\nevent: data\r\ndata: one\r\ndata: two\r\n\r\nevent: usage\ndata: {\"a\":1}\n\ndata:x\r\rid: 7\nevent:error\ndata\n\n";
  const auto whole = parse_all(text);
  ASSERT_EQ(whole.size(), 4u);
  EXPECT_EQ(whole[0].data, "one\ntwo");
  EXPECT_EQ(whole[1].event, "usage");
  EXPECT_EQ(whole[2].event, "message");
  EXPECT_EQ(whole[2].data, "x");
  EXPECT_EQ(whole[3].event, "error");
  EXPECT_EQ(whole[3].data, "");
  EXPECT_EQ(whole[3].id, "7");
  for (std::size_t chunk = 1; chunk < 9; ++chunk) {
    const auto split = parse_all(text, chunk);
    ASSERT_EQ(split.size(), whole.size()) << chunk;
    for (std::size_t i = 0; i < whole.size(); ++i) {
      EXPECT_EQ(split[i].event, whole[i].event);
      EXPECT_EQ(split[i].data, whole[i].data);
    }
  }
  for (std::size_t cut = 0; cut <= text.size(); ++cut) {
    SseParser parser;
    std::vector<SseEvent> out;
    ASSERT_TRUE(parser.feed(std::string_view(text).substr(0, cut), out).has_value());
    ASSERT_TRUE(parser.feed(std::string_view(text).substr(cut), out).has_value());
    ASSERT_EQ(out.size(), whole.size()) << cut;
    EXPECT_EQ(out[0].data, whole[0].data);
  }
}

TEST(Sse, FindLineEndTakesTheFirstOfCrAndLf) {
  EXPECT_EQ(find_line_end("abc"), std::string_view::npos);
  EXPECT_EQ(find_line_end(""), std::string_view::npos);
  EXPECT_EQ(find_line_end("ab\ncd\r"), 2u);
  EXPECT_EQ(find_line_end("ab\rcd\n"), 2u);
  EXPECT_EQ(find_line_end("ab\ncd\r", 3), 5u);
  EXPECT_EQ(find_line_end("ab\n", 3), std::string_view::npos);
  EXPECT_EQ(find_line_end("ab\n", 7), std::string_view::npos);
  const std::string long_line = std::string(300000, 'f') + "\r\n";
  EXPECT_EQ(find_line_end(long_line), 300000u);
  EXPECT_EQ(find_line_end(long_line, 300001), 300001u);
}

TEST(Sse, LineEndingsAllWork) {
  for (std::string_view eol : {"\n", "\r\n", "\r"}) {
    std::string text;
    for (auto line : {"event: data", "data: a", "data: b", "", ": keep-alive", "", "event: done", "data: [DONE]", ""}) {
      text += line;
      text += eol;
    }
    const auto events = parse_all(text, 1);
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[0].data, "a\nb");
    EXPECT_EQ(events[1].event, "done");
  }
}

TEST(Sse, CommentsUnknownFieldsAndSpaces) {
  const auto events = parse_all(
      ": comment\nretry: 1000\nfoo: bar\nevent:data\ndata:  two spaces\ndata:no space\ndata\n: another\n\n");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].event, "data");
  EXPECT_EQ(events[0].data, " two spaces\nno space\n");
}

TEST(Sse, EventsWithoutDataAreNotDispatchedAndNameResets) {
  const auto events = parse_all("event: data\n\n: only a comment\n\nevent: x\nid: 1\n\ndata: plain\n\n");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].event, "message");
  EXPECT_EQ(events[0].data, "plain");
}

TEST(Sse, UnknownKindsArePassedThrough) {
  const auto events = parse_all("event: usage\ndata: {\"prompt_tokens\":1}\n\nevent: weird\ndata: ?\n\n");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].event, "usage");
  EXPECT_EQ(events[1].event, "weird");
}

TEST(Sse, PartialEventDetected) {
  SseParser parser;
  std::vector<SseEvent> out;
  EXPECT_FALSE(parser.has_partial_event());
  ASSERT_TRUE(parser.feed("event: data\ndata: abc", out).has_value());
  EXPECT_TRUE(parser.has_partial_event());
  ASSERT_TRUE(parser.feed("\n", out).has_value());
  EXPECT_TRUE(parser.has_partial_event());
  ASSERT_TRUE(parser.feed("\n", out).has_value());
  EXPECT_FALSE(parser.has_partial_event());
  EXPECT_EQ(out.size(), 1u);
}

TEST(Sse, OversizeEventFailsAndStaysFailed) {
  constexpr std::size_t kLimit = 100;
  {
    // One long line, fed byte by byte, never ending.
    SseParser parser(kLimit);
    std::vector<SseEvent> out;
    Status status;
    std::size_t fed = 0;
    const std::string line = "data: " + std::string(500, 'a');
    for (char c : line) {
      status = parser.feed(std::string_view(&c, 1), out);
      ++fed;
      if (!status) break;
    }
    ASSERT_FALSE(status.has_value());
    EXPECT_EQ(status.error().code, Errc::event_too_large);
    EXPECT_NE(status.error().message.find("100"), std::string::npos);
    EXPECT_LE(fed, kLimit + 1);
    auto again = parser.feed("\n\nevent: data\ndata: ok\n\n", out);
    ASSERT_FALSE(again.has_value());
    EXPECT_EQ(again.error().code, Errc::event_too_large);
    EXPECT_TRUE(out.empty());
  }
  {
    // Many short lines of one event add up.
    SseParser parser(kLimit);
    std::vector<SseEvent> out;
    std::string text;
    for (int i = 0; i < 30; ++i) text += "data: x\n";
    auto status = parser.feed(text, out);
    ASSERT_FALSE(status.has_value());
    EXPECT_EQ(status.error().code, Errc::event_too_large);
  }
  {
    // Many small events are fine: the limit is per event.
    std::string text;
    for (int i = 0; i < 1000; ++i) text += "event: data\ndata: 0123456789\n\n";
    EXPECT_EQ(parse_all(text, 7, kLimit).size(), 1000u);
  }
}

TEST(Sse, FormatRoundTrips) {
  EXPECT_EQ(format_event("data", "abc"), "event: data\ndata: abc\n\n");
  EXPECT_EQ(format_event("data", "a\nb"), "event: data\ndata: a\ndata: b\n\n");
  EXPECT_EQ(format_event("data", ""), "event: data\ndata: \n\n");
  EXPECT_EQ(format_data_only("[DONE]"), "data: [DONE]\n\n");
  for (std::string data : {"one", "a\nb\nc", "", "trailing\n", "cr\r\nlf"}) {
    const auto events = parse_all(format_event("error", data), 1);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].event, "error");
    std::string expected = data;
    if (auto pos = expected.find("\r\n"); pos != std::string::npos) expected.replace(pos, 2, "\n");
    EXPECT_EQ(events[0].data, expected);
  }
}

}  // namespace
}  // namespace rvenc::protocol
