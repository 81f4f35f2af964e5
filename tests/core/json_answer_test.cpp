// protocol::JsonAnswerCheck (json_answer.hpp): an engine's one-object answer checked piece by piece
// must give what checking it whole gives, and read the usage with parse_usage's rules; and the
// shaping writer's unfilled records that carry a large answer.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include "rvenc/protocol/json_answer.hpp"
#include "rvenc/protocol/shaping.hpp"

namespace rvenc::protocol {
namespace {

namespace json = boost::json;

// The answer checked whole (json_answer_usage) and cut at every position into two and three pieces.
void expect_same_everywhere(const std::string& text, const Result<std::optional<Usage>>& whole) {
  const auto same = [&](const Result<std::optional<Usage>>& got, const std::string& where) {
    ASSERT_EQ(got.has_value(), whole.has_value()) << text << " " << where;
    if (!got) {
      EXPECT_EQ(got.error().code, Errc::upstream_error);
      return;
    }
    ASSERT_EQ(got->has_value(), whole->has_value()) << text << " " << where;
    if (*got) {
      EXPECT_EQ((*got)->prompt_tokens, (*whole)->prompt_tokens) << where;
      EXPECT_EQ((*got)->completion_tokens, (*whole)->completion_tokens) << where;
    }
  };
  for (std::size_t i = 0; i <= text.size(); ++i) {
    for (std::size_t j = i; j <= text.size(); j += std::max<std::size_t>(1, text.size() / 7)) {
      JsonAnswerCheck check;
      Result<std::optional<Usage>> got = std::optional<Usage>{};
      bool failed = false;
      for (auto piece : {text.substr(0, i), text.substr(i, j - i), text.substr(j)}) {
        if (auto fed = check.feed(piece); !fed) {
          got = std::unexpected(fed.error());
          failed = true;
          break;
        }
      }
      if (!failed) got = check.finish();
      same(got, "cut at " + std::to_string(i) + "," + std::to_string(j));
    }
  }
}

TEST(JsonAnswerCheck, ReadsTheTopLevelUsageAsParseUsageDoes) {
  const auto usage_of = [](const std::string& text) {
    auto got = json_answer_usage(text);
    EXPECT_TRUE(got) << text;
    return got ? *got : std::nullopt;
  };
  auto full = usage_of(R"({"object":"list","data":[{"index":0,"embedding":[0.5,-1e-3]}],"usage":{"prompt_tokens":7,"total_tokens":7}})");
  ASSERT_TRUE(full);
  EXPECT_EQ(full->prompt_tokens, 7);
  EXPECT_EQ(full->completion_tokens, 0);
  auto both = usage_of(R"({"usage":{"completion_tokens":3,"details":{"prompt_tokens":99},"prompt_tokens":2}})");
  ASSERT_TRUE(both);
  EXPECT_EQ(both->prompt_tokens, 2);  // the nested prompt_tokens is not the usage's own
  EXPECT_EQ(both->completion_tokens, 3);
  // What parse_usage refuses is no usage at all, as with the parsed object.
  for (const char* text : {R"({"data":[]})", R"({"usage":null})", R"({"usage":[1,2]})", R"({"usage":{}})",
                           R"({"usage":{"prompt_tokens":-1}})", R"({"usage":{"prompt_tokens":1.5}})",
                           R"({"usage":{"prompt_tokens":"7"}})", R"({"usage":{"prompt_tokens":18446744073709551615}})",
                           R"({"usage":{"prompt_tokens":{"n":1}}})", R"({"data":{"usage":{"prompt_tokens":5}}})"}) {
    EXPECT_FALSE(usage_of(text)) << text;
    const json::value parsed = json::parse(text);
    const auto* usage = parsed.as_object().if_contains("usage");
    EXPECT_FALSE(usage != nullptr && parse_usage(*usage)) << text;
  }
  // The last "usage" member counts, as in the parsed object.
  const std::string twice = R"({"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":4}})";
  auto last = usage_of(twice);
  ASSERT_TRUE(last);
  EXPECT_EQ(last->prompt_tokens, 4);
  auto parsed_last = parse_usage(json::parse(twice).as_object().at("usage"));
  ASSERT_TRUE(parsed_last);
  EXPECT_EQ(parsed_last->prompt_tokens, 4);
}

TEST(JsonAnswerCheck, OnlyOneJsonObjectPasses) {
  for (const char* text : {"", " ", "[]", "7", R"("text")", "null", R"({"a":1} {"b":2})", R"({"a":1}x)", R"({"a":)",
                           R"({"a":1)", R"({"a":[1,2})", "{\"a\":\"\x01\"}", R"({'a':1})", R"({"a":1}})"}) {
    auto got = json_answer_usage(text);
    ASSERT_FALSE(got) << text;
    EXPECT_EQ(got.error().code, Errc::upstream_error);
    EXPECT_EQ(got.error().message, "the model server's answer is not a JSON object");
  }
  EXPECT_TRUE(json_answer_usage(" \r\n{\"a\":1}\n "));  // whitespace around it
  std::string deep(40, '[');
  EXPECT_FALSE(json_answer_usage("{\"a\":" + deep + std::string(40, ']') + "}"));  // deeper than json::parse allows
}

TEST(JsonAnswerCheck, PiecesGiveWhatTheWholeGives) {
  for (const std::string text :
       {R"({"object":"list","data":[{"embedding":[0.25,1e2,-3]}],"usage":{"prompt_tokens":12,"completion_tokens":0}})",
        R"( {"usage" : {"prompt_tokens" : 5 , "prompt_tokens_details":{"cached_tokens":1}}} )",
        R"({"usage":{"prompt_tokens":1.0}})", R"({"a":"\u00e9\ud83d\ude00"} x)", R"({"a":[1,2)", "[1]"}) {
    expect_same_everywhere(text, json_answer_usage(text));
  }
}

TEST(JsonAnswerCheck, AFailedCheckStaysFailed) {
  JsonAnswerCheck check;
  EXPECT_FALSE(check.feed("[1"));
  EXPECT_FALSE(check.feed("]"));
  EXPECT_FALSE(check.finish());
}

std::size_t slice_length(const std::string& record) {
  return (static_cast<std::size_t>(static_cast<unsigned char>(record[1])) << 8U) |
         static_cast<unsigned char>(record[2]);
}

TEST(ShapedWriterParts, UnfilledRecordsCarryALongChunkInPartsAndReadBackWhole) {
  std::string answer = "{\"data\":\"";
  for (int i = 0; answer.size() < 1000; ++i) answer += "é" + std::to_string(i) + "\r\n";
  answer += "\"}";
  ShapedWriter writer(128);
  ShapedReader reader(4096);
  std::vector<std::string> out;
  std::size_t records = 0;
  const auto drain = [&](bool all) {
    while (all ? !writer.empty() : writer.record_full()) {
      const std::string record = writer.next_record(RecordFill::none);
      ASSERT_EQ(record.front(), '\x1e');
      EXPECT_EQ(record.size(), 3 + slice_length(record));  // no zero fill
      EXPECT_LE(record.size(), 127U);
      ++records;
      ASSERT_TRUE(reader.feed({reinterpret_cast<const std::uint8_t*>(record.data()), record.size()}, out));
    }
  };
  for (std::size_t at = 0; at < answer.size(); at += 37) {
    writer.push_part(std::string_view(answer).substr(at, 37));
    drain(false);
    EXPECT_LT(writer.pending_bytes(), 124U);
    EXPECT_TRUE(out.empty());  // the line ends only with end_chunk()
  }
  writer.end_chunk();
  drain(true);
  ASSERT_EQ(out.size(), 1U);
  std::string expected = answer;
  for (char& c : expected)
    if (c == '\r' || c == '\n') c = ' ';
  EXPECT_EQ(out[0], expected);
  EXPECT_GE(records, answer.size() / 124);
  EXPECT_TRUE(reader.finish());
}

}  // namespace
}  // namespace rvenc::protocol
