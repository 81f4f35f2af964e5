// Stream shaping's plaintext format (protocol/shaping.hpp): the request member, the records, the
// fillers and the length buckets.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "rvenc/crypto/crypto.hpp"
#include "rvenc/protocol/shaping.hpp"

namespace rvenc::protocol {
namespace {

namespace json = boost::json;

std::span<const std::uint8_t> bytes(const std::string& text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

TEST(Shaping, TheRequestMemberIsTakenOutAndParsed) {
  json::object request = json::parse(R"({"model":"m","rvenc_shaping":{"mode":"cadence","intervalMs":25}})").as_object();
  auto ask = take_shaping_member(request);
  ASSERT_TRUE(ask && *ask);
  EXPECT_EQ((*ask)->mode, ShapingMode::cadence);
  EXPECT_EQ((*ask)->interval_ms, 25);
  EXPECT_FALSE(request.contains(kShapingMember));  // never forwarded to the engine
  json::object plain{{"model", "m"}};
  auto none = take_shaping_member(plain);
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
}

TEST(Shaping, AMalformedMemberIsAnInvalidInferenceNamingIt) {
  for (const char* member : {R"("cadence")", R"({"mode":"burst"})", R"({"mode":"pad","intervalMs":0})",
                             R"({"mode":"pad","intervalMs":"40"})", R"({"mode":"pad","extra":1})", R"({})"}) {
    json::object request = json::parse(std::string(R"({"rvenc_shaping":)") + member + "}").as_object();
    auto ask = take_shaping_member(request);
    ASSERT_FALSE(ask) << member;
    EXPECT_EQ(ask.error().code, Errc::invalid_inference) << member;
    EXPECT_NE(ask.error().message.find("rvenc_shaping"), std::string::npos) << ask.error().message;
  }
}

TEST(Shaping, LengthBucketsAreCoarse) {
  EXPECT_EQ(length_bucket(0), 16U);
  EXPECT_EQ(length_bucket(16), 16U);
  EXPECT_EQ(length_bucket(17), 32U);
  EXPECT_EQ(length_bucket(100), 128U);
  EXPECT_EQ(length_bucket(129), 256U);
  for (std::uint64_t n = 1; n < 5000; ++n) {
    const auto bucket = length_bucket(n);
    EXPECT_GE(bucket, n);
    EXPECT_EQ(length_bucket(bucket), bucket);
    EXPECT_LT(bucket, 2 * std::max<std::uint64_t>(n, 16));  // less than twice the length
  }
  EXPECT_EQ(length_bucket(UINT64_MAX), UINT64_MAX);
}

TEST(Shaping, RecordsAllHaveOneSizeAndReassembleSplitChunks) {
  constexpr std::size_t kRecord = 128;
  ShapedWriter writer(kRecord);
  // A chunk longer than a record, with multi-byte characters across the cuts, then a short one.
  std::string long_chunk = R"({"content":")";
  for (int i = 0; i < 60; ++i) long_chunk += "\xc3\xa9\xe2\x82\xac";  // é€
  long_chunk += R"("})";
  const std::string short_chunk = R"({"content":"x"})";
  writer.push(long_chunk);
  writer.push(short_chunk);
  ShapedReader reader(1 << 20);
  std::vector<std::string> out;
  std::vector<std::string> records;
  while (!writer.empty()) records.push_back(writer.next_record());
  records.push_back(writer.next_record());  // nothing pending: a filler
  ASSERT_GT(records.size(), 3U);
  for (const auto& record : records) {
    EXPECT_EQ(record.size(), kRecord - 1);
    // Sealed with the protocol's 64-byte padding, every record is exactly kRecord bytes.
    EXPECT_EQ(crypto::pad(bytes(record)).size(), kRecord);
    ASSERT_TRUE(reader.feed(bytes(record), out));
  }
  ASSERT_EQ(out.size(), 2U);
  EXPECT_EQ(out[0], long_chunk);
  EXPECT_EQ(out[1], short_chunk);
  EXPECT_EQ(reader.fillers(), 1U);
  EXPECT_TRUE(reader.finish());
}

// Found by fuzz_shaping: a run of UTF-8 continuation bytes longer than a record (not UTF-8 at all)
// made the writer back up to an empty record, which the reader refuses, and never end.
TEST(Shaping, BytesThatAreNotUtf8AreStillCutIntoRecordsThatReassemble) {
  constexpr std::size_t kRecord = 128;
  ShapedWriter writer(kRecord);
  const std::string chunk = "\xe6~" + std::string(300, '\x8e');
  writer.push(chunk);
  ShapedReader reader(1 << 20);
  std::vector<std::string> out;
  for (int i = 0; i < 10 && !writer.empty(); ++i) ASSERT_TRUE(reader.feed(bytes(writer.next_record()), out));
  EXPECT_TRUE(writer.empty());
  ASSERT_EQ(out.size(), 1U);
  EXPECT_EQ(out[0], chunk);
}

TEST(Shaping, FillersAreDroppedAndUnshapedChunksPassThrough) {
  ShapedReader reader(1 << 20);
  std::vector<std::string> out;
  ASSERT_TRUE(reader.feed(bytes(filler_record(384)), out));
  ASSERT_TRUE(reader.feed(bytes(std::string(kFillerJson)), out));
  EXPECT_TRUE(out.empty());
  ASSERT_TRUE(reader.feed(bytes(R"({"id":"c"})"), out));
  ASSERT_EQ(out.size(), 1U);
  EXPECT_EQ(out[0], R"({"id":"c"})");
  // Only the exact filler is one: a chunk that merely mentions it is shown.
  ASSERT_TRUE(reader.feed(bytes(R"({"rvenc_filler":true,"x":1})"), out));
  EXPECT_EQ(out.size(), 2U);
}

TEST(Shaping, MalformedRecordsAreTampering) {
  std::vector<std::string> out;
  {
    ShapedReader reader(1 << 20);
    std::string record(127, '\0');
    record[0] = kRecordMarker;
    record[1] = '\x01';  // 256 > what the record holds
    auto fed = reader.feed(bytes(record), out);
    ASSERT_FALSE(fed);
    EXPECT_EQ(fed.error().code, Errc::tampered_stream);
  }
  {
    ShapedReader reader(1 << 20);
    const std::string header_only = std::string(1, kRecordMarker) + "\x00";
    auto fed = reader.feed(bytes(header_only), out);
    ASSERT_FALSE(fed);
    EXPECT_EQ(fed.error().code, Errc::tampered_stream);
  }
  {
    // A stream that ends (authenticated done) inside a split chunk, and one that sends an
    // unshaped chunk inside it.
    ShapedWriter writer(128);
    writer.push(std::string(300, 'a'));
    ShapedReader reader(1 << 20);
    ASSERT_TRUE(reader.feed(bytes(writer.next_record()), out));
    auto finished = reader.finish();
    ASSERT_FALSE(finished);
    EXPECT_EQ(finished.error().code, Errc::tampered_stream);
    auto mixed = reader.feed(bytes(R"({"id":"c"})"), out);
    ASSERT_FALSE(mixed);
    EXPECT_EQ(mixed.error().code, Errc::tampered_stream);
  }
  {
    // A chunk larger than the reader's limit is refused, not buffered without bound.
    ShapedWriter writer(128);
    writer.push(std::string(1000, 'a'));
    ShapedReader reader(200);
    Status fed;
    while (fed && !writer.empty()) fed = reader.feed(bytes(writer.next_record()), out);
    ASSERT_FALSE(fed);
    EXPECT_EQ(fed.error().code, Errc::tampered_stream);
  }
}

TEST(Shaping, RawNewlinesInAChunkDoNotSplitIt) {
  ShapedWriter writer(128);
  writer.push("{\"a\":\n1}");
  ShapedReader reader(1 << 20);
  std::vector<std::string> out;
  ASSERT_TRUE(reader.feed(bytes(writer.next_record()), out));
  ASSERT_EQ(out.size(), 1U);
  EXPECT_EQ(json::parse(out[0]).as_object().at("a").as_int64(), 1);
}

}  // namespace
}  // namespace rvenc::protocol
