// Assembly of a non-streaming legacy completion (`text_completion`) from the text_completion chunk
// objects the enclave streams for "rvenc_endpoint": "completions" (docs/endpoints.md), as
// CompletionAssembler does for chat.
//
// Design: pure Boost.JSON, shared by the C++ SDK and the proxy; an engine cannot make it allocate
// without bound (choice indices outside [0, kMaxAssembledChoices) are ignored, as for chat).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "rvenc/protocol/chat.hpp"

namespace rvenc::protocol {

// Concatenates `text` per choice index (and the arrays of streamed `logprobs`); keeps the last
// non-null finish_reason per choice, the first id/model/created, and the last usage.
class TextCompletionAssembler {
 public:
  void add_chunk(const boost::json::object& chunk);
  // {"id","object":"text_completion","created","model","system_fingerprint"?,"choices":[{"index",
  //  "text","logprobs","finish_reason"}],"usage": object or null}
  [[nodiscard]] boost::json::object completion() const;
  [[nodiscard]] std::optional<Usage> usage() const { return walk_.usage(); }

 private:
  struct Choice {
    std::string text;
    boost::json::value logprobs;       // null until given
    boost::json::value finish_reason;  // null until set
  };
  CompletionWalk walk_;  // id, model, created, usage and the choice indices, as for chat
  std::map<std::int64_t, Choice> choices_;
};

}  // namespace rvenc::protocol
