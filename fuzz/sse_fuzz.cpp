// protocol::SseParser on arbitrary bytes, fed at once, byte by byte and in pseudo-random slices
// (sizes derived from the input, so a crash reproduces): all three must give the same events,
// the same error and the same "partial event" answer; parsed events survive format_event.
#include <cstddef>
#include <cstdint>
#include <random>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "rvenc/protocol/sse.hpp"

namespace {

using rvenc::protocol::SseEvent;
using rvenc::protocol::SseParser;

// A small limit so the event_too_large path is reached by small inputs too.
constexpr std::size_t kSmallLimit = 256;

struct Outcome {
  std::vector<SseEvent> events;
  bool failed = false;
  bool partial = false;
};

bool same(const std::vector<SseEvent>& a, const std::vector<SseEvent>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].event != b[i].event || a[i].data != b[i].data || a[i].id != b[i].id) return false;
  }
  return true;
}

// step 0: pseudo-random slices of 1..64 bytes seeded by `seed`.
Outcome run(std::string_view text, std::size_t limit, std::size_t step, std::uint32_t seed) {
  SseParser parser(limit);
  Outcome result;
  std::minstd_rand rng(seed);
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t n = step != 0 ? step : 1 + rng() % 64;
    if (!parser.feed(text.substr(pos, n), result.events)) {
      result.failed = true;
      // The parser stays failed.
      std::vector<SseEvent> more;
      RVENC_FUZZ_CHECK(!parser.feed("data: x\n\n", more));
      RVENC_FUZZ_CHECK(more.empty());
      return result;
    }
    pos += n;
  }
  result.partial = parser.has_partial_event();
  return result;
}

void check_slicings(std::string_view text, std::size_t limit, std::uint32_t seed) {
  const Outcome whole = run(text, limit, text.size() + 1, seed);
  const Outcome bytewise = run(text, limit, 1, seed);
  const Outcome sliced = run(text, limit, 0, seed);
  for (const Outcome* other : {&bytewise, &sliced}) {
    RVENC_FUZZ_CHECK(same(whole.events, other->events));
    RVENC_FUZZ_CHECK(whole.failed == other->failed);
    RVENC_FUZZ_CHECK(whole.partial == other->partial);
  }
  for (const auto& event : whole.events) {
    RVENC_FUZZ_CHECK(!event.event.empty());
    RVENC_FUZZ_CHECK(event.event.find_first_of("\r\n") == std::string::npos);
    RVENC_FUZZ_CHECK(event.data.find('\r') == std::string::npos);
  }
}

// What a parsed event becomes when written again must parse back to the same event.
void check_round_trip(const SseEvent& event) {
  SseParser parser;
  std::vector<SseEvent> again;
  RVENC_FUZZ_CHECK(parser.feed(rvenc::protocol::format_event(event.event, event.data), again).has_value());
  RVENC_FUZZ_CHECK(again.size() == 1 && again[0].event == event.event && again[0].data == event.data);
  RVENC_FUZZ_CHECK(!parser.has_partial_event());

  SseParser data_only;
  again.clear();
  RVENC_FUZZ_CHECK(data_only.feed(rvenc::protocol::format_data_only(event.data), again).has_value());
  RVENC_FUZZ_CHECK(again.size() == 1 && again[0].event == "message" && again[0].data == event.data);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::uint32_t seed = 2166136261u;  // FNV-1a of the input: slice sizes follow the input
  for (std::size_t i = 0; i < size; ++i) seed = (seed ^ data[i]) * 16777619u;

  check_slicings(text, rvenc::protocol::kDefaultMaxEventBytes, seed);
  check_slicings(text, kSmallLimit, seed);

  SseParser parser;
  std::vector<SseEvent> events;
  if (parser.feed(text, events)) {
    for (const auto& event : events) check_round_trip(event);
  }
  return 0;
}
