// The SDK's stream decoder on shaped streams (docs/traffic-shaping.md), without sockets: fillers
// are never shown, split chunks are joined, and truncation or reordering among fillers is caught.
#include <set>

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "rvenc/client/response.hpp"
#include "rvenc/protocol/sealing.hpp"
#include "rvenc/protocol/shaping.hpp"

namespace rvenc::client {
namespace {

constexpr std::size_t kRecord = 128;

struct Keys {
  crypto::SharedSecret secret;
  crypto::Nonce nonce = crypto::random_nonce();
  Keys() { crypto::random_bytes(secret.span()); }
};

std::string chunk(const std::string& content) {
  return R"({"choices":[{"index":0,"delta":{"content":")" + content + R"("}}]})";
}

// init, a filler, two chunks (the second larger than a record), fillers, done: the SSE events.
std::vector<std::string> shaped_events(protocol::ResponseSealer& sealer) {
  using protocol::EventKind;
  protocol::ShapedWriter writer(kRecord);
  std::vector<std::string> events{sealer.init_event()};
  events.push_back(sealer.seal_event(EventKind::data, writer.next_record()));  // filler: nothing yet
  writer.push(chunk("Hello"));
  writer.push(chunk(std::string(200, 'w')));
  while (!writer.empty()) events.push_back(sealer.seal_event(EventKind::data, writer.next_record()));
  for (int i = 0; i < 3; ++i) events.push_back(sealer.seal_event(EventKind::data, writer.next_record()));
  events.push_back(sealer.seal_event(EventKind::done, "[DONE]"));
  return events;
}

std::string join(const std::vector<std::string>& events) {
  std::string text;
  for (const auto& event : events) text += event;
  return text;
}

TEST(ShapedStream, FillersAreDroppedAndSplitChunksJoined) {
  Keys keys;
  protocol::ResponseSealer sealer(protocol::Version::v3, keys.secret, keys.nonce);
  const auto events = shaped_events(sealer);
  // Every data event has one size on the wire.
  std::set<std::size_t> sizes;
  for (std::size_t i = 1; i + 1 < events.size(); ++i) sizes.insert(events[i].size());
  EXPECT_EQ(sizes.size(), 1U);
  ResponseDecoder decoder(protocol::Version::v3, keys.secret, keys.nonce);
  std::vector<Chunk> chunks;
  ASSERT_TRUE(decoder.feed(join(events), chunks));
  ASSERT_TRUE(decoder.finish());
  ASSERT_EQ(chunks.size(), 2U);
  EXPECT_EQ(chunks[0].object.at("choices").at(0).at("delta").at("content").as_string(), "Hello");
  EXPECT_EQ(chunks[1].object.at("choices").at(0).at("delta").at("content").as_string(), std::string(200, 'w'));
}

TEST(ShapedStream, TruncationAmongFillersIsDetected) {
  Keys keys;
  protocol::ResponseSealer sealer(protocol::Version::v3, keys.secret, keys.nonce);
  auto events = shaped_events(sealer);
  events.erase(events.end() - 3, events.end());  // the last fillers and done cut off
  ResponseDecoder decoder(protocol::Version::v3, keys.secret, keys.nonce);
  std::vector<Chunk> chunks;
  ASSERT_TRUE(decoder.feed(join(events), chunks));
  EXPECT_EQ(decoder.finish().error().code, Errc::truncated_stream);
}

TEST(ShapedStream, AFillerDroppedOrSwappedIsTampering) {
  Keys keys;
  protocol::ResponseSealer sealer(protocol::Version::v3, keys.secret, keys.nonce);
  const auto events = shaped_events(sealer);
  auto dropped = events;
  dropped.erase(dropped.end() - 3);  // one filler in the middle of the tail
  auto swapped = events;
  std::swap(swapped[1], swapped[2]);  // the first filler after the first content record
  for (const auto& stream : {dropped, swapped}) {
    ResponseDecoder decoder(protocol::Version::v3, keys.secret, keys.nonce);
    std::vector<Chunk> chunks;
    auto fed = decoder.feed(join(stream), chunks);
    ASSERT_FALSE(fed);
    EXPECT_EQ(fed.error().code, Errc::tampered_stream);
  }
}

TEST(ShapedStream, DoneInsideASplitChunkIsTampering) {
  Keys keys;
  protocol::ResponseSealer sealer(protocol::Version::v3, keys.secret, keys.nonce);
  protocol::ShapedWriter writer(kRecord);
  writer.push(chunk(std::string(300, 'x')));
  std::string text = sealer.init_event() + sealer.seal_event(protocol::EventKind::data, writer.next_record()) +
                     sealer.seal_event(protocol::EventKind::done, "[DONE]");
  ResponseDecoder decoder(protocol::Version::v3, keys.secret, keys.nonce);
  std::vector<Chunk> chunks;
  auto fed = decoder.feed(text, chunks);
  ASSERT_FALSE(fed);
  EXPECT_EQ(fed.error().code, Errc::tampered_stream);
  EXPECT_TRUE(chunks.empty());
}

}  // namespace
}  // namespace rvenc::client
