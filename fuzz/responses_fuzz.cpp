// The Responses translator (protocol/responses.hpp) on arbitrary bytes. The first line is a
// Responses request: never a crash, every refusal invalid_inference with a message, and an
// accepted request's chat translation is a chat request the enclave can validate (or is refused
// by it, again as invalid_inference: value ranges are the chat validator's to check). The other
// lines are chat chunks fed to a ResponsesEventWriter: sequence numbers count up from 0 without
// a gap, output indices point at opened items, and exactly one terminal event ends the stream.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "fuzz_check.hpp"
#include "rvenc/protocol/responses.hpp"

namespace {

namespace json = boost::json;
using namespace rvenc::protocol;

void check_events(const std::vector<json::object>& events, std::int64_t& next, std::int64_t& items,
                  int& terminals) {
  for (const auto& e : events) {
    RVENC_FUZZ_CHECK(e.at("sequence_number").as_int64() == next);
    ++next;
    const std::string_view type = e.at("type").as_string();
    if (type == "response.output_item.added") ++items;
    if (const auto* index = e.if_contains("output_index")) RVENC_FUZZ_CHECK(index->to_number<std::int64_t>() < items);
    if (terminal_response(e)) ++terminals;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto newline = text.find('\n');
  auto request = translate_responses_request(text.substr(0, newline));
  if (!request) {
    RVENC_FUZZ_CHECK(request.error().code == rvenc::Errc::invalid_inference);
    RVENC_FUZZ_CHECK(!request.error().message.empty());
    request = translate_responses_request(std::string_view(R"({"model":"m","input":"hi"})"));
  } else {
    RVENC_FUZZ_CHECK(!request->model.empty());
    auto chat = validate_chat_request(json::serialize(request->chat));
    RVENC_FUZZ_CHECK(chat.has_value() || chat.error().code == rvenc::Errc::invalid_inference);
  }
  ResponsesEventWriter writer(*request, "resp_fuzz", 1);
  std::int64_t next = 0;
  std::int64_t items = 0;
  int terminals = 0;
  check_events(writer.start(), next, items, terminals);
  std::string_view rest = newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1);
  while (!rest.empty()) {
    const auto end = rest.find('\n');
    const auto line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    boost::system::error_code ec;
    auto chunk = json::parse(json::string_view(line.data(), line.size()), ec);
    if (!ec && chunk.is_object()) check_events(writer.add_chunk(chunk.get_object()), next, items, terminals);
  }
  const bool failed = size % 2 == 1;
  check_events(writer.finish(failed ? std::optional<rvenc::Error>(rvenc::Error{rvenc::Errc::upstream_error, "x"})
                                    : std::nullopt),
               next, items, terminals);
  RVENC_FUZZ_CHECK(terminals == 1);
  RVENC_FUZZ_CHECK(writer.finish().empty());
  return 0;
}
