// protocol::validate_chat_request on arbitrary (decrypted) bytes: never crashes, every error is
// invalid_inference, and an accepted request's body, serialised again, validates to the same
// model, stream flag, max_tokens and stop sequences. (The bodies themselves are not compared:
// Boost.JSON 1.81 does not parse every long decimal to the nearest double, so a number such as
// 7777...7.5 with 60 digits may change in its last bit on the way through serialize + parse.)
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/json/serialize.hpp>

#include "fuzz_check.hpp"
#include "request_checks.hpp"
#include "rvenc/protocol/chat.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto request = rvenc::protocol::validate_chat_request(text);
  if (!request) {
    rvenc::fuzz::check_request_refusal(request.error());
    return 0;
  }
  rvenc::fuzz::check_accepted_request(*request);

  if (!rvenc::fuzz::all_finite(request->body)) return 0;
  auto again = rvenc::protocol::validate_chat_request(boost::json::serialize(request->body));
  RVENC_FUZZ_CHECK(again.has_value());
  RVENC_FUZZ_CHECK(again->model == request->model && again->stream == request->stream);
  RVENC_FUZZ_CHECK(again->max_tokens == request->max_tokens && again->stop == request->stop);
  RVENC_FUZZ_CHECK(again->body.size() == request->body.size());
  return 0;
}
