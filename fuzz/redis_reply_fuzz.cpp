// Redis replies (gateway/redis_protocol.hpp, hiredis's redisReader with rvenc's bounds) from
// arbitrary bytes, as a hostile or broken Redis sends them: no crash, no leak, the buffered bytes
// never pass the bound, and the same replies (and the same failure) come out whether the bytes
// arrive at once or in slices; once failed, the reader stays failed.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "rvenc/gateway/redis_protocol.hpp"

namespace {

using rvenc::gateway::RedisValue;

bool same(const RedisValue& a, const RedisValue& b) {
  if (a.type != b.type || a.text != b.text || a.integer != b.integer || a.elements.size() != b.elements.size())
    return false;
  for (std::size_t i = 0; i < a.elements.size(); ++i)
    if (!same(a.elements[i], b.elements[i])) return false;
  return true;
}

struct Outcome {
  std::vector<RedisValue> replies;
  bool failed = false;
};

Outcome read_replies(std::string_view bytes, std::size_t step) {
  rvenc::gateway::RedisReplyReader reader;
  Outcome out;
  for (std::size_t pos = 0; pos < bytes.size() && !out.failed; pos += step) {
    if (!reader.feed(bytes.substr(pos, step))) {
      out.failed = true;
      break;
    }
    RVENC_FUZZ_CHECK(reader.buffered() <= rvenc::gateway::kMaxRedisReplyBytes);
    for (;;) {
      auto reply = reader.next();
      if (!reply) {
        out.failed = true;
        RVENC_FUZZ_CHECK(!reader.next());
        RVENC_FUZZ_CHECK(!reader.feed("+OK\r\n"));
        break;
      }
      if (!*reply) break;
      out.replies.push_back(std::move(**reply));
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const Outcome whole = read_replies(bytes, size == 0 ? 1 : size);
  for (const std::size_t step : {std::size_t{1}, std::size_t{5}}) {
    const Outcome sliced = read_replies(bytes, step);
    RVENC_FUZZ_CHECK(sliced.failed == whole.failed);
    // A failure can come after different numbers of replies only if it is not sliced the same way;
    // the replies before it are the same.
    const std::size_t n = std::min(sliced.replies.size(), whole.replies.size());
    if (!whole.failed) RVENC_FUZZ_CHECK(sliced.replies.size() == whole.replies.size());
    for (std::size_t i = 0; i < n; ++i) RVENC_FUZZ_CHECK(same(sliced.replies[i], whole.replies[i]));
  }
  return 0;
}
