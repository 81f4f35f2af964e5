#include <random>

#include <gtest/gtest.h>

#include "rvenc/gateway/sse_relay.hpp"

namespace rvenc::gateway {
namespace {

const std::string kData = "event: data\ndata: 00aa\n\n";
const std::string kDone = "event: done\ndata: 11bb\n\n";
const std::string kUsage = "event: usage\ndata: {\"prompt_tokens\": 12, \"completion_tokens\": 40}\n\n";
const std::string kProvisional =
    "event: usage\ndata: {\"prompt_tokens\": 12, \"completion_tokens\": 0, \"final\": false}\n\n";
const std::string kFinal = "event: usage\ndata: {\"prompt_tokens\": 12, \"completion_tokens\": 40, \"final\": true}\n\n";

TEST(SseRelay, ForwardsEventsExactlyAndStripsUsage) {
  SseRelay relay;
  const std::string stream = ": keep-alive\n\n" + kData + kData + kDone + kUsage;
  auto out = relay.feed(stream);
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, ": keep-alive\n\n" + kData + kData + kDone);
  EXPECT_TRUE(relay.saw_done());
  ASSERT_TRUE(relay.final_usage());  // unmarked: from an enclave without provisional usage
  EXPECT_EQ(relay.final_usage()->prompt_tokens, 12);
  EXPECT_EQ(relay.final_usage()->completion_tokens, 40);
  EXPECT_FALSE(relay.provisional_usage());
  EXPECT_FALSE(relay.has_partial_event());
}

// Issue 30 item 2: the provisional usage (the prompt, first) and the final one are kept apart,
// both stripped; a stream cut after the provisional one still knows its prompt.
TEST(SseRelay, KeepsProvisionalAndFinalUsageApart) {
  SseRelay relay;
  const std::string start = kProvisional + kData + kData;  // the output may point into it
  auto out = relay.feed(start);
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, kData + kData);
  ASSERT_TRUE(relay.provisional_usage());
  EXPECT_EQ(relay.provisional_usage()->prompt_tokens, 12);
  EXPECT_EQ(relay.provisional_usage()->completion_tokens, 0);
  EXPECT_FALSE(relay.final_usage());
  const std::string end = kDone + kFinal;
  out = relay.feed(end);
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, kDone);
  ASSERT_TRUE(relay.final_usage());
  EXPECT_EQ(relay.final_usage()->completion_tokens, 40);
  EXPECT_EQ(relay.provisional_usage()->prompt_tokens, 12);
}

TEST(SseRelay, ByteAtATimeGivesTheSameBytes) {
  SseRelay relay;
  const std::string stream = kData + "event: data\r\ndata: 22cc\r\n\r\n" + kDone + kUsage;
  std::string out;
  for (char c : stream) out += relay.feed(std::string_view(&c, 1)).value();
  EXPECT_EQ(out, kData + "event: data\r\ndata: 22cc\r\n\r\n" + kDone);
  EXPECT_TRUE(relay.final_usage());
}

TEST(SseRelay, HoldsAnUnfinishedEvent) {
  SseRelay relay;
  const std::string input = kData + "event: data\ndata: 33";  // the result may point into it
  auto out = relay.feed(input);
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

namespace rvenc::gateway {
namespace {

TEST(SseRelay, UsageBetweenEventsIsCutOut) {
  SseRelay relay;
  const std::string input = kData + kUsage + kDone;
  auto out = relay.feed(input);
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, kData + kDone);
  EXPECT_TRUE(relay.saw_done());
  EXPECT_TRUE(relay.final_usage());
}

TEST(SseRelay, CrLfSplitAcrossFeedsStaysWithItsEvent) {
  SseRelay relay;
  const std::string event = "event: data\r\ndata: 44dd\r\n\r";
  auto first = relay.feed(event);
  ASSERT_TRUE(first);
  EXPECT_EQ(*first, event);
  const std::string rest = "\n" + kDone;
  auto second = relay.feed(rest);
  ASSERT_TRUE(second);
  EXPECT_EQ(*second, "\n" + kDone);

  // After a withheld usage event ending in \r, its \n is withheld too.
  SseRelay after_usage;
  ASSERT_EQ(after_usage.feed("event: usage\rdata: {\"prompt_tokens\": 1, \"completion_tokens\": 2}\r\r").value(), "");
  EXPECT_EQ(after_usage.feed("\n").value(), "");
  ASSERT_TRUE(after_usage.final_usage());
  EXPECT_EQ(after_usage.final_usage()->completion_tokens, 2);
}

TEST(SseRelay, EventsWithoutDataAreForwardedAndDoNotCount) {
  SseRelay relay;
  const std::string stream = "event: usage\n\nevent: done\n\n";
  EXPECT_EQ(relay.feed(stream).value(), stream);
  EXPECT_FALSE(relay.final_usage());
  EXPECT_FALSE(relay.saw_done());
}

// Any slicing of the input gives the same forwarded bytes as feeding it at once.
TEST(SseRelay, RandomSlicesGiveTheSameBytes) {
  const std::vector<std::string> endings{"\n", "\r\n", "\r"};
  std::mt19937 rng(20261126);
  for (int round = 0; round < 200; ++round) {
    std::string stream;
    std::string expected;
    const int events = 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < events; ++i) {
      const std::string& eol = endings[rng() % endings.size()];
      const bool usage = rng() % 5 == 0;
      std::string event = (rng() % 4 == 0 ? ": comment" + eol : std::string()) + "event: " +
                          (usage ? "usage" : "data") + eol + "data: " +
                          (usage ? R"({"prompt_tokens": 3, "completion_tokens": 4})" : std::string(rng() % 40, 'f')) +
                          eol + eol;
      stream += event;
      if (!usage) expected += event;
    }
    SseRelay whole;
    auto all = whole.feed(stream);
    ASSERT_TRUE(all);
    const std::string at_once(*all);
    SseRelay sliced;
    std::string out;
    for (std::size_t pos = 0; pos < stream.size();) {
      const std::size_t n = std::min<std::size_t>(1 + rng() % 32, stream.size() - pos);
      out += sliced.feed(std::string_view(stream).substr(pos, n)).value();
      pos += n;
    }
    EXPECT_EQ(at_once, expected) << "round " << round;
    EXPECT_EQ(out, at_once) << "round " << round;
    EXPECT_FALSE(sliced.has_partial_event()) << "round " << round;
    EXPECT_EQ(sliced.final_usage().has_value(), whole.final_usage().has_value());
  }
}

}  // namespace
}  // namespace rvenc::gateway
