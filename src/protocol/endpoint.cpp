#include "rvenc/protocol/endpoint.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <tuple>
#include <utility>


#include "json_strict.hpp"
#include "request_fields.hpp"

namespace rvenc::protocol {

namespace {

namespace json = boost::json;
using detail::as_integer;
using detail::as_number;
using detail::invalid;
using detail::optional_field;

constexpr std::array<std::pair<Endpoint, std::string_view>, 4> kEndpointNames{{
    {Endpoint::chat_completions, "chat.completions"},
    {Endpoint::completions, "completions"},
    {Endpoint::embeddings, "embeddings"},
    {Endpoint::responses, "responses"},
}};

// The members OpenAI accepts on each endpoint (it refuses others with 400).
constexpr std::array<std::string_view, 18> kCompletionsMembers{
    "model",    "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs", "max_tokens", "n",
    "presence_penalty", "seed", "stop", "stream", "stream_options", "suffix", "temperature", "top_p", "user"};
constexpr std::array<std::string_view, 5> kEmbeddingsMembers{"model", "input", "encoding_format", "dimensions",
                                                             "user"};
constexpr double kMaxPenalty = 2.0;

template <std::size_t N>
Status only_members(const json::object& body, const std::array<std::string_view, N>& allowed,
                    std::string_view endpoint) {
  for (const auto& member : body) {
    const std::string_view key(member.key().data(), member.key().size());
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
      return invalid("unknown member" + detail::quoted_field_name(key) + " in a " + std::string(endpoint) +
                     " request (OpenAI refuses it too)");
  }
  return {};
}

Status check_model(const json::object& body, ChatRequest& request) {
  const auto* model = body.if_contains("model");
  if (model == nullptr || !model->is_string() || model->get_string().empty())
    return invalid("model must be a non-empty string");
  request.model = std::string(model->get_string().data(), model->get_string().size());
  return {};
}

// A token array: 1..kMaxInputTokens non-negative integers.
Status check_tokens(const json::array& tokens, const std::string& where) {
  if (tokens.empty()) return invalid(where + " must not be an empty token array");
  if (tokens.size() > kMaxInputTokens)
    return invalid(where + " has more than " + std::to_string(kMaxInputTokens) + " tokens");
  for (const auto& token : tokens) {
    if (!token.is_int64() || token.get_int64() < 0)
      return invalid(where + " must hold non-negative integer token ids");
  }
  return {};
}

// OpenAI's input shapes: a string, an array of strings, a token array, an array of token arrays;
// at most `max_items` items (strings or token arrays), each bounded. `empty_string_ok`: completions
// accept "" as a prompt, embeddings do not.
Status check_inputs(const json::value& input, std::string_view name, std::size_t max_items, bool empty_string_ok) {
  const std::string field(name);
  auto check_string = [&](const json::string& text, const std::string& where) -> Status {
    if (text.empty() && !empty_string_ok) return invalid(where + " must not be an empty string");
    if (text.size() > kMaxEmbeddingInputBytes)
      return invalid(where + " is longer than " + std::to_string(kMaxEmbeddingInputBytes) + " bytes");
    return {};
  };
  const std::string shapes = field + " must be a string, an array of strings, an array of token ids or an array of "
                                     "token-id arrays";
  if (input.is_string()) return check_string(input.get_string(), field);
  if (!input.is_array()) return invalid(shapes);
  const auto& items = input.get_array();
  if (items.empty()) return invalid(field + " must not be an empty array");
  if (items.front().is_int64()) return check_tokens(items, field);
  if (items.size() > max_items)
    return invalid(field + " has more than " + std::to_string(max_items) + " inputs");
  const bool strings = items.front().is_string();
  for (std::size_t i = 0; i < items.size(); ++i) {
    const std::string where = field + "[" + std::to_string(i) + "]";
    if (strings && items[i].is_string()) {
      if (auto ok = check_string(items[i].get_string(), where); !ok) return ok;
    } else if (!strings && items[i].is_array()) {
      if (auto ok = check_tokens(items[i].get_array(), where); !ok) return ok;
    } else {
      return invalid(shapes + " (one kind per array)");
    }
  }
  return {};
}

Status check_bounded_number(const json::object& body, std::string_view name, double low, double high) {
  const auto* v = optional_field(body, name);
  if (v == nullptr) return {};
  const auto n = as_number(*v);
  if (!n || !(*n >= low && *n <= high))
    return invalid(std::string(name) + " must be a number from " + std::to_string(static_cast<int>(low)) + " to " +
                   std::to_string(static_cast<int>(high)));
  return {};
}

Status check_bounded_integer(const json::object& body, std::string_view name, std::int64_t low, std::int64_t high) {
  const auto* v = optional_field(body, name);
  if (v == nullptr) return {};
  const auto n = as_integer(*v);
  if (!n || *n < low || *n > high)
    return invalid(std::string(name) + " must be an integer from " + std::to_string(low) + " to " +
                   std::to_string(high));
  return {};
}

Status check_optional_type(const json::object& body, std::string_view name, json::kind kind, std::string_view what) {
  const auto* v = optional_field(body, name);
  if (v != nullptr && v->kind() != kind) return invalid(std::string(name) + " must be " + std::string(what));
  return {};
}

}  // namespace

std::string_view endpoint_name(Endpoint endpoint) noexcept {
  for (const auto& [value, name] : kEndpointNames)
    if (value == endpoint) return name;
  return "chat.completions";
}

std::optional<Endpoint> endpoint_from_name(std::string_view name) noexcept {
  for (const auto& [value, known] : kEndpointNames)
    if (known == name) return value;
  return std::nullopt;
}

Result<EndpointBody> parse_endpoint_request(std::string_view text) {
  auto parsed = detail::parse_json_object(text, detail::kMaxJsonDepth, "the request", Errc::invalid_inference);
  if (!parsed) return std::unexpected(parsed.error());
  EndpointBody out;
  out.body = std::move(*parsed);
  out.json_bytes = text.size();
  if (const auto it = out.body.find(kEndpointMember); it != out.body.end()) {
    const auto& value = it->value();
    const auto endpoint =
        value.is_string() ? endpoint_from_name(std::string_view(value.get_string().data(), value.get_string().size()))
                          : std::nullopt;
    if (!endpoint)
      return invalid(std::string(kEndpointMember) +
                     " must be one of \"chat.completions\", \"completions\", \"embeddings\", \"responses\"");
    out.endpoint = *endpoint;
    out.body.erase(it);
  }
  return out;
}

Result<ChatRequest> validate_completions_body(json::object object, std::size_t json_bytes) {
  ChatRequest request;
  request.endpoint = Endpoint::completions;
  request.body = std::move(object);
  request.json_bytes = json_bytes;
  const auto& body = request.body;
  if (auto ok = only_members(body, kCompletionsMembers, "completions"); !ok) return std::unexpected(ok.error());
  if (auto ok = check_model(body, request); !ok) return std::unexpected(ok.error());
  const auto* prompt = body.if_contains("prompt");
  if (prompt == nullptr || prompt->is_null()) return invalid("prompt is required");
  if (auto ok = check_inputs(*prompt, "prompt", kMaxCompletionPrompts, true); !ok) return std::unexpected(ok.error());
  if (auto ok = detail::check_sampling(body, request); !ok) return std::unexpected(ok.error());
  for (std::string_view name : {"frequency_penalty", "presence_penalty"})
    if (auto ok = check_bounded_number(body, name, -kMaxPenalty, kMaxPenalty); !ok) return std::unexpected(ok.error());
  if (auto ok = check_bounded_integer(body, "logprobs", 0, kMaxCompletionLogprobs); !ok)
    return std::unexpected(ok.error());
  if (auto ok = check_bounded_integer(body, "best_of", 1, kMaxBestOf); !ok) return std::unexpected(ok.error());
  if (auto ok = check_bounded_integer(body, "seed", std::numeric_limits<std::int64_t>::min(),
                                      std::numeric_limits<std::int64_t>::max());
      !ok)
    return std::unexpected(ok.error());
  for (const auto& [name, kind, what] : {std::tuple{"echo", json::kind::bool_, "a boolean"},
                                         std::tuple{"suffix", json::kind::string, "a string"},
                                         std::tuple{"user", json::kind::string, "a string"},
                                         std::tuple{"logit_bias", json::kind::object, "an object"},
                                         std::tuple{"stream_options", json::kind::object, "an object"}})
    if (auto ok = check_optional_type(body, name, kind, what); !ok) return std::unexpected(ok.error());
  return request;
}

Result<ChatRequest> validate_embeddings_body(json::object object, std::size_t json_bytes) {
  ChatRequest request;
  request.endpoint = Endpoint::embeddings;
  request.body = std::move(object);
  request.json_bytes = json_bytes;
  const auto& body = request.body;
  if (auto ok = only_members(body, kEmbeddingsMembers, "embeddings"); !ok) return std::unexpected(ok.error());
  if (auto ok = check_model(body, request); !ok) return std::unexpected(ok.error());
  const auto* input = body.if_contains("input");
  if (input == nullptr || input->is_null()) return invalid("input is required");
  if (auto ok = check_inputs(*input, "input", kMaxEmbeddingInputs, false); !ok) return std::unexpected(ok.error());
  if (const auto* format = optional_field(body, "encoding_format");
      format != nullptr && (!format->is_string() || (format->get_string() != "float" && format->get_string() != "base64")))
    return invalid("encoding_format must be \"float\" or \"base64\"");
  if (auto ok = check_bounded_integer(body, "dimensions", 1, kMaxEmbeddingDimensions); !ok)
    return std::unexpected(ok.error());
  if (auto ok = check_optional_type(body, "user", json::kind::string, "a string"); !ok)
    return std::unexpected(ok.error());
  return request;
}

std::size_t embedding_input_count(const json::value& input) noexcept {
  if (!input.is_array() || input.get_array().empty() || input.get_array().front().is_int64()) return 1;
  return input.get_array().size();
}

}  // namespace rvenc::protocol
