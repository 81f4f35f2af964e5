// An engine's one-object answer checked as it arrives (protocol/json_answer.hpp) on arbitrary
// input, against what a parsed document says: the same verdict and the same usage whole and cut
// into pieces at every 0xFF byte's position (the byte itself kept); and the answer cut into
// unfilled records (ShapedWriter parts, RecordFill::none) comes back whole through a ShapedReader.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/parse.hpp>

#include "fuzz_check.hpp"
#include "rvenc/protocol/chat.hpp"
#include "rvenc/protocol/json_answer.hpp"
#include "rvenc/protocol/shaping.hpp"

namespace {

using rvenc::protocol::Usage;

// What the DOM says: nullopt when not one object, else the usage parse_usage reads.
std::optional<std::optional<Usage>> parsed_usage(std::string_view text) {
  boost::system::error_code ec;
  const auto value = boost::json::parse(boost::json::string_view(text.data(), text.size()), ec);
  if (ec || !value.is_object()) return std::nullopt;
  const auto* usage = value.get_object().if_contains("usage");
  return usage == nullptr ? std::optional<Usage>{} : rvenc::protocol::parse_usage(*usage);
}

void same(const rvenc::Result<std::optional<Usage>>& got, const std::optional<std::optional<Usage>>& expected) {
  RVENC_FUZZ_CHECK(got.has_value() == expected.has_value());
  if (!got) {
    RVENC_FUZZ_CHECK(got.error().code == rvenc::Errc::upstream_error);
    return;
  }
  RVENC_FUZZ_CHECK(got->has_value() == expected->has_value());
  if (*got) {
    RVENC_FUZZ_CHECK((*got)->prompt_tokens == (**expected).prompt_tokens);
    RVENC_FUZZ_CHECK((*got)->completion_tokens == (**expected).completion_tokens);
  }
}

void check_in_pieces(std::string_view text, const std::optional<std::optional<Usage>>& expected) {
  rvenc::protocol::JsonAnswerCheck check;
  std::size_t start = 0;
  while (start < text.size()) {
    const auto cut = text.find('\xff', start + 1);
    const auto end = cut == std::string_view::npos ? text.size() : cut;
    if (auto fed = check.feed(text.substr(start, end - start)); !fed) {
      RVENC_FUZZ_CHECK(!expected.has_value());
      return;
    }
    start = end;
  }
  same(check.finish(), expected);
}

void records_round_trip(std::string_view text) {
  if (text.empty()) return;
  const std::size_t record = rvenc::protocol::kMinRecordBytes + 64 * (static_cast<unsigned char>(text[0]) % 4);
  rvenc::protocol::ShapedWriter writer(record);
  rvenc::protocol::ShapedReader reader(1 << 20);
  std::vector<std::string> out;
  const auto drain = [&](bool all) {
    while (all ? !writer.empty() : writer.record_full()) {
      const auto next = writer.next_record(rvenc::protocol::RecordFill::none);
      RVENC_FUZZ_CHECK(next.size() <= record - 1);
      const auto fed = reader.feed({reinterpret_cast<const std::uint8_t*>(next.data()), next.size()}, out);
      RVENC_FUZZ_CHECK(fed.has_value());
    }
  };
  for (std::size_t at = 1; at < text.size(); at += 97) {
    writer.push_part(text.substr(at, 97));
    drain(false);
  }
  writer.end_chunk();
  drain(true);
  RVENC_FUZZ_CHECK(reader.finish().has_value());
  std::string chunk(text.substr(1));
  for (auto& c : chunk)
    if (c == '\n' || c == '\r') c = ' ';
  RVENC_FUZZ_CHECK(out.size() == 1 && out[0] == chunk);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto expected = parsed_usage(text);
  same(rvenc::protocol::json_answer_usage(text), expected);
  check_in_pieces(text, expected);
  records_round_trip(text);
  return 0;
}
