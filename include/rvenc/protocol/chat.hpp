// OpenAI chat-completion JSON: validation of a (decrypted) chat request, and assembly of a
// non-streaming chat.completion from chat.completion.chunk objects (PROTOCOL.md section 3).
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "rvenc/common/error.hpp"

namespace rvenc::protocol {

inline constexpr std::size_t kMaxMessages = 4096;
inline constexpr std::size_t kMaxStopSequences = 16;
// The assembler ignores choice / tool-call indices outside [0, limit): an engine cannot make
// the client allocate without bound (OpenAI's own n limit is 128).
inline constexpr std::int64_t kMaxAssembledChoices = 128;
inline constexpr std::int64_t kMaxAssembledToolCalls = 128;

// The OpenAI endpoint a request is for (endpoint.hpp: how the encrypted plaintext names it).
enum class Endpoint : std::uint8_t { chat_completions, completions, embeddings, responses };

// A validated request of any endpoint (endpoint.hpp's validators; validate_chat_request for chat).
struct ChatRequest {
  Endpoint endpoint = Endpoint::chat_completions;
  std::string model;
  bool stream = false;
  std::optional<std::int64_t> max_tokens;  // max_tokens or max_completion_tokens
  std::vector<std::string> stop;
  boost::json::object body;  // the whole request, for engines that forward it
  std::size_t json_bytes = 0;  // UTF-8 bytes of the request JSON as received (the prompt estimate)
};

// Tokens estimated from a size in bytes: ceil(bytes / 4) (PROTOCOL.md section 4). The enclave's
// prompt count when its engine reports none (from the decrypted request JSON), and the gateway's
// token reservation (from the encrypted request's size). Never a count of words: a prompt without
// spaces, or in a script without them, must not be nearly free.
[[nodiscard]] constexpr std::int64_t estimate_tokens(std::uint64_t bytes) noexcept {
  return static_cast<std::int64_t>(bytes / 4 + (bytes % 4 != 0 ? 1 : 0));
}

// invalid_inference naming the field that is wrong; never echoes message content.
[[nodiscard]] Result<ChatRequest> validate_chat_request(std::string_view json);

struct Usage {
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  // Saturates: the counts come from the engine and can be anything up to INT64_MAX.
  [[nodiscard]] std::int64_t total_tokens() const noexcept {
    std::int64_t total = 0;
    if (__builtin_add_overflow(prompt_tokens, completion_tokens, &total)) {
      return prompt_tokens < 0 ? std::numeric_limits<std::int64_t>::min() : std::numeric_limits<std::int64_t>::max();
    }
    return total;
  }
};

// What chat and legacy completion chunks share besides their choices, merged the one way both
// assemblers need: the first id/model/created, the last system_fingerprint and the last usage.
// CompletionWalk::add also walks the chunk's choices, calling `visit(index, choice)` for each
// object whose index is in [0, kMaxAssembledChoices) (others are ignored: bounded memory).
class CompletionWalk {
 public:
  template <class Visit>
  void add(const boost::json::object& chunk, Visit&& visit) {
    add_header(chunk);
    const auto* choices = chunk.if_contains("choices");
    if (choices == nullptr || !choices->is_array()) return;
    for (const auto& c : choices->get_array()) {
      if (!c.is_object()) continue;
      const std::int64_t index = choice_index(c.get_object());
      if (index >= 0 && index < kMaxAssembledChoices) visit(index, c.get_object());
    }
  }
  // {"id", "object": `object`, "created", "model", "system_fingerprint"?}: the start of the result.
  [[nodiscard]] boost::json::object start(std::string_view object) const;
  // The last non-null usage object as the engine sent it, else null.
  [[nodiscard]] boost::json::value usage_json() const;
  [[nodiscard]] std::optional<Usage> usage() const { return usage_; }

 private:
  void add_header(const boost::json::object& chunk);
  [[nodiscard]] static std::int64_t choice_index(const boost::json::object& choice);

  std::string id_;
  std::string model_;
  std::string system_fingerprint_;
  std::int64_t created_ = 0;
  std::optional<Usage> usage_;
  boost::json::value usage_json_;
};

// Assembles chunks into one chat.completion: content and reasoning_content concatenated per
// choice, tool_calls merged by index (function.arguments appended), last finish_reason and usage kept.
class CompletionAssembler {
 public:
  // invalid_request when the chunk is not a JSON object of the chunk shape.
  [[nodiscard]] Status add_chunk(std::string_view chunk_json);
  void add_chunk(const boost::json::object& chunk);

  [[nodiscard]] boost::json::object completion() const;
  [[nodiscard]] std::optional<Usage> usage() const { return walk_.usage(); }
  [[nodiscard]] std::size_t chunk_count() const noexcept { return chunks_; }

 private:
  struct ToolCall {
    std::string id;
    std::string type = "function";
    bool type_seen = false;
    std::string name;
    std::string arguments;
  };
  struct Choice {
    std::string role = "assistant";
    std::string content;
    bool has_content = false;
    std::string reasoning;
    bool has_reasoning = false;
    std::map<std::int64_t, ToolCall> tool_calls;
    boost::json::value finish_reason;  // null until set
  };

  // Adds one choice object of a chunk (its delta) to choices_[index].
  void add_choice(std::int64_t index, const boost::json::object& obj);

  CompletionWalk walk_;
  std::map<std::int64_t, Choice> choices_;
  std::size_t chunks_ = 0;
};

// Reads {"prompt_tokens", "completion_tokens"} from a usage object; nullopt when absent/bad.
[[nodiscard]] std::optional<Usage> parse_usage(const boost::json::value& value);
// An engine's one JSON answer (embeddings) whole: upstream_error unless `text` is one JSON object; then its
// top-level "usage" as parse_usage reads it, if any (JsonAnswerCheck, json_answer.hpp, in one feed).
[[nodiscard]] Result<std::optional<Usage>> json_answer_usage(std::string_view text);

}  // namespace rvenc::protocol
