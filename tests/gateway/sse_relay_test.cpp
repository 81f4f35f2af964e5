#include <gtest/gtest.h>

#include "rvenc/gateway/sse_relay.hpp"

namespace rvenc::gateway {
namespace {

const std::string kData = "event: data\ndata: 00aa\n\n";
const std::string kDone = "event: done\ndata: 11bb\n\n";
const std::string kUsage = "event: usage\ndata: {\"prompt_tokens\": 12, \"completion_tokens\": 40}\n\n";

TEST(SseRelay, ForwardsEventsExactlyAndStripsUsage) {
  SseRelay relay;
  const std::string stream = ": keep-alive\n\n" + kData + kData + kDone + kUsage;
  auto out = relay.feed(stream);
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, ": keep-alive\n\n" + kData + kData + kDone);
  EXPECT_TRUE(relay.saw_done());
  ASSERT_TRUE(relay.usage());
  EXPECT_EQ(relay.usage()->prompt_tokens, 12);
  EXPECT_EQ(relay.usage()->completion_tokens, 40);
  EXPECT_FALSE(relay.has_partial_event());
}

TEST(SseRelay, ByteAtATimeGivesTheSameBytes) {
  SseRelay relay;
  const std::string stream = kData + "event: data\r\ndata: 22cc\r\n\r\n" + kDone + kUsage;
  std::string out;
  for (char c : stream) out += relay.feed(std::string_view(&c, 1)).value();
  EXPECT_EQ(out, kData + "event: data\r\ndata: 22cc\r\n\r\n" + kDone);
  EXPECT_TRUE(relay.usage());
}

TEST(SseRelay, HoldsAnUnfinishedEvent) {
  SseRelay relay;
  auto out = relay.feed(kData + "event: data\ndata: 33");
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, kData);
  EXPECT_TRUE(relay.has_partial_event());
  EXPECT_FALSE(relay.saw_done());
}

TEST(SseRelay, RefusesOversizedEvents) {
  SseRelay relay(64);
  auto out = relay.feed("event: data\ndata: " + std::string(100, 'a'));
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code, Errc::event_too_large);
  EXPECT_FALSE(relay.feed("\n\n"));
}

}  // namespace
}  // namespace rvenc::gateway
