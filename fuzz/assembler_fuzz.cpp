// protocol::CompletionAssembler fed chunk JSON strings (one per input line, as the data lines of
// a stream carry them): never crashes, counts exactly the accepted chunks, and always assembles
// a chat.completion that serialises to JSON and parses back.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "fuzz_check.hpp"
#include "rvenc/protocol/chat.hpp"

namespace {
// Equal but for the last bits of doubles: Boost.JSON 1.81 does not round long decimals to the
// nearest double, so a passed-through number may not survive serialise/parse bit for bit.
bool same_json(const boost::json::value& a, const boost::json::value& b) {
  if (a.is_double() || b.is_double()) return a.is_number() && b.is_number();
  if (a.kind() != b.kind()) return false;
  if (a.is_object()) {
    const auto& x = a.get_object();
    const auto& y = b.get_object();
    if (x.size() != y.size()) return false;
    for (const auto& [key, value] : x) {
      const auto* other = y.if_contains(key);
      if (other == nullptr || !same_json(value, *other)) return false;
    }
    return true;
  }
  if (a.is_array()) {
    const auto& x = a.get_array();
    const auto& y = b.get_array();
    if (x.size() != y.size()) return false;
    for (std::size_t i = 0; i < x.size(); ++i)
      if (!same_json(x[i], y[i])) return false;
    return true;
  }
  return a == b;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  rvenc::protocol::CompletionAssembler assembler;
  std::size_t accepted = 0;
  while (!rest.empty()) {
    const auto end = rest.find('\n');
    const auto line = rest.substr(0, end);
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
    if (auto ok = assembler.add_chunk(line)) {
      ++accepted;
    } else {
      RVENC_FUZZ_CHECK(ok.error().code == rvenc::Errc::invalid_request);
    }
  }
  RVENC_FUZZ_CHECK(assembler.chunk_count() == accepted);

  const auto completion = assembler.completion();
  RVENC_FUZZ_CHECK(completion.at("object") == "chat.completion");
  RVENC_FUZZ_CHECK(completion.at("choices").is_array());
  if (const auto usage = assembler.usage()) {
    RVENC_FUZZ_CHECK(usage->prompt_tokens >= 0 && usage->completion_tokens >= 0);
    RVENC_FUZZ_CHECK(usage->total_tokens() >= usage->prompt_tokens);
    RVENC_FUZZ_CHECK(completion.at("usage").is_object());
  }
  boost::system::error_code ec;
  const auto reparsed = boost::json::parse(boost::json::serialize(completion), ec);
  RVENC_FUZZ_CHECK(!ec && same_json(reparsed, boost::json::value(completion)));
  return 0;
}
