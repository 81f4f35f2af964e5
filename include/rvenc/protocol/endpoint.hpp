// Which OpenAI endpoint an encrypted request is for (docs/endpoints.md), and the strict validators
// of the endpoints besides chat: legacy completions and embeddings.
//
// Design: the gateway route stays POST /rvenc/chat/completions for every endpoint, so the gateway
// does not learn the endpoint from the path; the plaintext names it in one top-level member,
// "rvenc_endpoint" (absent: "chat.completions", what every older client sends). The enclave parses
// the plaintext once (parse_endpoint_request), takes the member out, and hands the body to the
// endpoint's validator; every validator yields the same ChatRequest value (model, stream, body,
// size), with ChatRequest::endpoint telling the engines what to answer. Validators refuse unknown
// members where OpenAI does (embeddings, completions), bound every size (inputs per batch, bytes
// or tokens per input, dimensions) and name the member that is wrong, never its content.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include <boost/json/object.hpp>

#include "rvenc/common/error.hpp"
#include "rvenc/protocol/chat.hpp"

namespace rvenc::protocol {

// The plaintext's top-level member naming the endpoint.
inline constexpr std::string_view kEndpointMember = "rvenc_endpoint";

// Embeddings: inputs per request (OpenAI's own limit), bytes of one string input, tokens of one
// token-array input, and the largest `dimensions`.
inline constexpr std::size_t kMaxEmbeddingInputs = 2048;
inline constexpr std::size_t kMaxEmbeddingInputBytes = 64 * 1024;
inline constexpr std::size_t kMaxInputTokens = 16 * 1024;
inline constexpr std::int64_t kMaxEmbeddingDimensions = 8192;
// Completions: prompts per request (each answered as one choice; the assemblers keep
// kMaxAssembledChoices), and OpenAI's bounds on logprobs and best_of.
inline constexpr std::size_t kMaxCompletionPrompts = static_cast<std::size_t>(kMaxAssembledChoices);
inline constexpr std::int64_t kMaxCompletionLogprobs = 5;
inline constexpr std::int64_t kMaxBestOf = 20;
// Largest one-object answer (embeddings) the enclave relays: under the 10 MiB a client takes in one
// chunk by default (max_buffer_size), also when an older enclave sealed it as one event (hex, 2x,
// under the gateway's 10 MiB event limit only with base64's smaller answers: docs/endpoints.md).
inline constexpr std::size_t kMaxJsonAnswerBytes = 7 * 1024 * 1024;

// The endpoint's name in "rvenc_endpoint" ("chat.completions", "completions", ...).
[[nodiscard]] std::string_view endpoint_name(Endpoint endpoint) noexcept;
// nullopt for a name that is not one of the four.
[[nodiscard]] std::optional<Endpoint> endpoint_from_name(std::string_view name) noexcept;

// The decrypted plaintext, parsed: the endpoint it names and the body without the member.
struct EndpointBody {
  Endpoint endpoint = Endpoint::chat_completions;
  boost::json::object body;
  std::size_t json_bytes = 0;  // the plaintext's size (the prompt estimate)
};
// invalid_inference when the plaintext is not a JSON object, or "rvenc_endpoint" is not a string
// naming one of the endpoints (the message lists them).
[[nodiscard]] Result<EndpointBody> parse_endpoint_request(std::string_view json);

// The validators (body without the member). invalid_inference naming the member that is wrong.
[[nodiscard]] Result<ChatRequest> validate_chat_body(boost::json::object body, std::size_t json_bytes);
[[nodiscard]] Result<ChatRequest> validate_completions_body(boost::json::object body, std::size_t json_bytes);
[[nodiscard]] Result<ChatRequest> validate_embeddings_body(boost::json::object body, std::size_t json_bytes);

// Number of inputs of a validated embeddings request (1 for a single string or token array).
[[nodiscard]] std::size_t embedding_input_count(const boost::json::value& input) noexcept;

}  // namespace rvenc::protocol
