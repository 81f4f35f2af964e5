// Shaped-stream parsing (protocol/shaping.hpp) on arbitrary input: the input is split into data
// plaintexts at 0xFF bytes and fed to a ShapedReader (bounded line), and its first bytes as a
// request's rvenc_shaping member. Invariants: errors are tampered_stream / invalid_inference; a
// failed reader's output is what came before; every chunk the writer cuts from the input comes
// back whole through the reader, whatever the record size.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/parse.hpp>

#include "fuzz_check.hpp"
#include "rvenc/protocol/shaping.hpp"

namespace {

std::span<const std::uint8_t> bytes(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

void read_records(std::string_view text) {
  rvenc::protocol::ShapedReader reader(512);
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto end = std::min(text.find('\xff', start), text.size());
    const auto fed = reader.feed(bytes(text.substr(start, end - start)), out);
    if (!fed) {
      RVENC_FUZZ_CHECK(fed.error().code == rvenc::Errc::tampered_stream);
      return;
    }
    for (const auto& line : out) RVENC_FUZZ_CHECK(line.size() <= 512 || line.find('\n') == std::string::npos);
    start = end + 1;
  }
  const auto finished = reader.finish();
  if (!finished) RVENC_FUZZ_CHECK(finished.error().code == rvenc::Errc::tampered_stream);
}

void round_trip(std::string_view text) {
  if (text.empty()) return;
  const std::size_t record = rvenc::protocol::kMinRecordBytes + 64 * (static_cast<unsigned char>(text[0]) % 4);
  std::string chunk(text.substr(1));
  for (auto& c : chunk)
    if (c == '\n' || c == '\r') c = ' ';  // what the writer does to a chunk
  rvenc::protocol::ShapedWriter writer(record);
  writer.push(chunk);
  rvenc::protocol::ShapedReader reader(1 << 20);
  std::vector<std::string> out;
  while (!writer.empty()) {
    const auto next = writer.next_record();
    RVENC_FUZZ_CHECK(next.size() == record - 1);
    RVENC_FUZZ_CHECK(reader.feed(bytes(next), out).has_value());
  }
  RVENC_FUZZ_CHECK(reader.finish().has_value());
  RVENC_FUZZ_CHECK(out.size() == 1 && out[0] == chunk);
}

void shaping_member(std::string_view text) {
  boost::system::error_code ec;
  auto value = boost::json::parse(std::string(R"({"rvenc_shaping":)") + std::string(text) + "}", ec);
  if (ec || !value.is_object()) return;
  auto ask = rvenc::protocol::take_shaping_member(value.as_object());
  RVENC_FUZZ_CHECK(!value.as_object().contains(rvenc::protocol::kShapingMember));
  if (!ask) RVENC_FUZZ_CHECK(ask.error().code == rvenc::Errc::invalid_inference);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  read_records(text);
  round_trip(text);
  shaping_member(text);
  return 0;
}
