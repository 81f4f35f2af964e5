// The demo engine's answers to the endpoints besides chat (docs/endpoints.md): embeddings (a
// deterministic unit vector per input) and legacy completions (text_completion chunks). Like the
// chat answer, nothing here repeats or logs what the prompt says (echo, asked for by the caller,
// aside).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include <boost/json/serialize.hpp>

#include "rvenc/common/clock.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "rvenc/enclave/engine.hpp"
#include "rvenc/enclave/json_answer.hpp"
#include "rvenc/protocol/attestation.hpp"
#include "rvenc/protocol/endpoint.hpp"

namespace rvenc::enclave {

namespace json = boost::json;

namespace {

constexpr std::string_view kDemoFingerprint = "rvenc-demo-1";
constexpr std::size_t kCompletionIdBytes = 12;
// OpenAI's default max_tokens for legacy completions.
constexpr std::int64_t kDefaultCompletionMaxTokens = 16;

// splitmix64: a small, fast generator; seeded from SHA-256 it makes the vector depend on all of the input.
std::uint64_t splitmix64(std::uint64_t& state) noexcept {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The inputs of an embeddings `input` or a completions `prompt` (validated): one entry per string
// or token array.
std::vector<const json::value*> input_items(const json::value& input) {
  std::vector<const json::value*> items;
  if (input.is_array() && !input.get_array().empty() && !input.get_array().front().is_int64()) {
    for (const auto& item : input.get_array()) items.push_back(&item);
  } else {
    items.push_back(&input);
  }
  return items;
}

json::value embedding_value(const std::vector<float>& vector, bool base64) {
  if (!base64) {
    json::array out;
    out.reserve(vector.size());
    for (const float x : vector) out.emplace_back(static_cast<double>(x));
    return out;
  }
  static_assert(std::endian::native == std::endian::little, "base64 embeddings are little-endian float32");
  std::vector<std::uint8_t> bytes(vector.size() * sizeof(float));
  std::memcpy(bytes.data(), vector.data(), bytes.size());
  return json::string(protocol::base64_encode(bytes));
}

// The canned completion of one prompt: its size only.
std::string demo_completion_text(const json::value& prompt) {
  std::string size;
  if (prompt.is_string()) {
    const TextSize measured = measure_text(std::string_view(prompt.get_string()));
    size = std::to_string(measured.characters) + " characters in " + std::to_string(measured.words) + " words";
  } else {
    size = std::to_string(prompt.get_array().size()) + " tokens";
  }
  return " This is the rvenc demo engine. Your prompt arrived end-to-end encrypted (" + size +
         ") and was decrypted only inside the enclave; the completion goes back encrypted.";
}

json::object completion_chunk(const std::string& id, std::int64_t created, const std::string& model) {
  return json::object{{"id", id},      {"object", "text_completion"}, {"created", created},
                      {"model", model}, {"system_fingerprint", kDemoFingerprint}, {"usage", nullptr}};
}

json::object completion_choice(std::size_t index, std::string_view text, const json::value& finish_reason) {
  return json::object{{"index", index}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", finish_reason}};
}

}  // namespace

std::vector<float> demo_embedding(std::string_view input_json, std::size_t dimensions) {
  const auto digest = crypto::sha256(crypto::as_bytes(input_json));
  std::uint64_t state = 0;
  for (std::size_t i = 0; i < digest.size(); ++i) state = (state << 8 | (state >> 56)) ^ digest[i];
  std::vector<float> vector(dimensions);
  double norm = 0.0;
  for (auto& x : vector) {
    // 53 random bits to [-1, 1).
    const double unit = static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;
    x = static_cast<float>(unit * 2.0 - 1.0);
    norm += static_cast<double>(x) * x;
  }
  const double scale = norm > 0.0 ? 1.0 / std::sqrt(norm) : 0.0;
  for (auto& x : vector) x = static_cast<float>(x * scale);
  return vector;
}

http::awaitable<EngineOutcome> DemoEngine::serve(const protocol::ChatRequest& request, UpstreamCall call,
                                                 ChunkSink sink) {
  switch (request.endpoint) {
    case protocol::Endpoint::embeddings:
      co_return co_await embed(request, std::move(sink));
    case protocol::Endpoint::completions:
      co_return co_await complete(request, std::move(sink));
    default:
      co_return co_await Engine::serve(request, call, std::move(sink));
  }
}

http::awaitable<EngineOutcome> DemoEngine::embed(const protocol::ChatRequest& request, ChunkSink sink) const {
  const auto* dimensions = request.body.if_contains("dimensions");
  const auto length = static_cast<std::size_t>(dimensions != nullptr && dimensions->is_int64()
                                                   ? dimensions->get_int64()
                                                   : options_.embedding_dimensions);
  const auto* format = request.body.if_contains("encoding_format");
  const bool base64 = format != nullptr && format->is_string() && format->get_string() == "base64";
  json::array data;
  std::size_t index = 0;
  for (const json::value* item : input_items(request.body.at("input"))) {
    data.push_back(json::object{{"object", "embedding"},
                                {"index", index++},
                                {"embedding", embedding_value(demo_embedding(json::serialize(*item), length), base64)}});
  }
  EngineOutcome outcome;
  outcome.usage.prompt_tokens = estimate_prompt_tokens(request);
  json::object list{{"object", "list"},
                    {"data", std::move(data)},
                    {"model", request.model},
                    {"usage", json::object{{"prompt_tokens", outcome.usage.prompt_tokens},
                                           {"total_tokens", outcome.usage.prompt_tokens}}}};
  std::string answer = json::serialize(list);
  if (answer.size() > protocol::kMaxJsonAnswerBytes) {
    outcome.error = Error{Errc::invalid_inference, "the embeddings answer would be larger than " +
                                                       std::to_string(protocol::kMaxJsonAnswerBytes >> 20) +
                                                       " MiB, the most a client takes in one answer; send fewer inputs, "
                                                       "fewer dimensions or encoding_format base64"};
    co_return outcome;
  }
  JsonAnswerRelay relay(sink);
  auto sent = co_await relay.add(answer);
  crypto::secure_wipe(answer.data(), answer.size());
  if (!sent) {
    outcome.error = sent.error();
    co_return outcome;
  }
  auto ended = co_await relay.finish();
  if (!ended) outcome.error = ended.error();
  co_return outcome;
}

http::awaitable<EngineOutcome> DemoEngine::complete(const protocol::ChatRequest& request, ChunkSink sink) const {
  const std::string id = "cmpl-" + to_hex(crypto::random_array<kCompletionIdBytes>());
  const std::int64_t created = unix_now();
  const auto* echo = request.body.if_contains("echo");
  const bool echoed = echo != nullptr && echo->is_bool() && echo->get_bool();
  const std::int64_t budget = request.max_tokens.value_or(kDefaultCompletionMaxTokens);
  EngineOutcome outcome;
  outcome.usage.prompt_tokens = estimate_prompt_tokens(request);
  // `finish` empty: finish_reason null.
  auto send = [&](std::size_t index, std::string_view text, std::string_view finish) -> http::awaitable<bool> {
    json::object chunk = completion_chunk(id, created, request.model);
    const json::value reason = finish.empty() ? json::value(nullptr) : json::value(json::string(finish));
    chunk["choices"] = json::array{completion_choice(index, text, reason)};
    co_return co_await sink(json::serialize(chunk));
  };
  const auto prompts = input_items(request.body.at("prompt"));
  for (std::size_t index = 0; index < prompts.size(); ++index) {
    std::string text = demo_completion_text(*prompts[index]);
    std::size_t cut = text.size();
    for (const auto& stop : request.stop)
      if (!stop.empty()) cut = std::min(cut, text.find(stop));
    text.resize(cut);
    if (echoed && prompts[index]->is_string() && !co_await send(index, prompts[index]->get_string(), {})) {
      outcome.error = Error{Errc::transport_error, "the client disconnected"};
      co_return outcome;
    }
    std::int64_t used = 0;
    bool length = false;
    for (std::size_t at = 0; at < text.size();) {
      if (used >= budget) {
        length = true;
        break;
      }
      std::size_t end = text.find(' ', at + 1);
      if (end == std::string::npos) end = text.size();
      if (!co_await demo_token_pause(options_.token_delay)) {
        outcome.error = Error{Errc::internal_error, "the demo engine was interrupted"};
        co_return outcome;
      }
      if (!co_await send(index, std::string_view(text).substr(at, end - at), {})) {
        outcome.error = Error{Errc::transport_error, "the client disconnected"};
        co_return outcome;
      }
      ++used;
      at = end;
    }
    outcome.usage.completion_tokens += used;
    if (!co_await send(index, "", length ? "length" : "stop")) {
      outcome.error = Error{Errc::transport_error, "the client disconnected"};
      co_return outcome;
    }
  }
  json::object last = completion_chunk(id, created, request.model);
  last["choices"] = json::array();
  last["usage"] = json::object{{"prompt_tokens", outcome.usage.prompt_tokens},
                               {"completion_tokens", outcome.usage.completion_tokens},
                               {"total_tokens", outcome.usage.total_tokens()}};
  if (!co_await sink(json::serialize(last))) outcome.error = Error{Errc::transport_error, "the client disconnected"};
  co_return outcome;
}

}  // namespace rvenc::enclave
