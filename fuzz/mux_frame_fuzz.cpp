// rvenc-mux/1 frames (http/mux_frame.hpp) from arbitrary bytes, as a reader meets them: every frame
// found lies within the input, encodes back to the bytes it came from, and the same frames come out
// when the input arrives in slices; an error stops the reading for good, as it closes a connection.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "rvenc/http/mux_frame.hpp"

namespace {

namespace mux = rvenc::http::mux;

// Small, so the too-large path is reached by small inputs too.
constexpr std::size_t kSmallMaxPayload = 64;

struct Seen {
  mux::FrameType type;
  std::uint32_t stream;
  std::string payload;
  bool operator==(const Seen&) const = default;
};

// The frames of `bytes` read as they arrive in slices of `step` bytes; `failed` after an error.
std::vector<Seen> read_frames(std::string_view bytes, std::size_t step, bool& failed) {
  std::vector<Seen> seen;
  std::string pending;
  failed = false;
  for (std::size_t pos = 0; pos < bytes.size() && !failed; pos += step) {
    pending.append(bytes.substr(pos, step));
    for (;;) {
      auto next = mux::next_frame(pending, kSmallMaxPayload);
      if (!next) {
        failed = true;
        break;
      }
      if (!*next) break;
      const mux::Frame frame = **next;
      RVENC_FUZZ_CHECK(frame.size() <= pending.size());
      RVENC_FUZZ_CHECK(frame.payload.size() <= kSmallMaxPayload);
      RVENC_FUZZ_CHECK(frame.stream != 0);
      std::string again;
      mux::append_frame(again, frame.type, frame.stream, frame.payload);
      RVENC_FUZZ_CHECK(again == pending.substr(0, frame.size()));
      if (frame.type == mux::FrameType::window) {
        if (const auto increment = mux::window_increment(frame.payload)) {
          std::string window;
          mux::append_window(window, frame.stream, *increment);
          RVENC_FUZZ_CHECK(window == again);
        }
      }
      seen.push_back({frame.type, frame.stream, std::string(frame.payload)});
      pending.erase(0, frame.size());
    }
  }
  return seen;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  bool whole_failed = false;
  const auto whole = read_frames(bytes, size == 0 ? 1 : size, whole_failed);
  for (const std::size_t step : {std::size_t{1}, std::size_t{7}}) {
    bool failed = false;
    RVENC_FUZZ_CHECK(read_frames(bytes, step, failed) == whole);
    RVENC_FUZZ_CHECK(failed == whole_failed);
  }
  return 0;
}
