// An engine's one-object JSON answer (embeddings) checked as it arrives: that the bytes form one
// JSON object, and the top-level "usage" it reports, without building the document.
//
// Design: the enclave relays a large answer piece by piece (docs/endpoints.md) so the gateway and
// the client work on the first records while the enclave still reads and seals the rest; it must
// therefore check the answer incrementally, and it only needs two facts from it. A SAX pass
// (boost::json::basic_parser with a handler that keeps a depth and the current key) validates the
// JSON exactly as a DOM parse would (same depth limit) and reads usage.prompt_tokens and
// usage.completion_tokens with parse_usage's rules, allocating nothing per value. The last
// "usage" member wins, as the last duplicate key does in a parsed object.
#pragma once

#include <memory>
#include <optional>
#include <string_view>

#include "rvenc/common/error.hpp"
#include "rvenc/protocol/chat.hpp"

namespace rvenc::protocol {

class JsonAnswerCheck {
 public:
  JsonAnswerCheck();
  ~JsonAnswerCheck();
  JsonAnswerCheck(const JsonAnswerCheck&) = delete;
  JsonAnswerCheck& operator=(const JsonAnswerCheck&) = delete;

  // The next bytes of the answer. upstream_error as soon as they cannot be part of one JSON
  // object (after which the check stays failed).
  [[nodiscard]] Status feed(std::string_view bytes);
  // The answer ended: upstream_error unless it was exactly one JSON object (whitespace around it
  // allowed); else its top-level usage as parse_usage reads it (nullopt when absent or malformed).
  [[nodiscard]] Result<std::optional<Usage>> finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rvenc::protocol
