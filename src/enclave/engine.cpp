// Helpers shared by the engines, and the built-in demo engine.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <charconv>
#include <fstream>
#include <limits>
#include <optional>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "rvenc/common/clock.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "rvenc/enclave/engine.hpp"

namespace rvenc::enclave {

namespace json = boost::json;

namespace {

constexpr std::string_view kDemoFingerprint = "rvenc-demo-1";
constexpr std::size_t kCompletionIdBytes = 12;

bool is_space(char c) noexcept { return std::isspace(static_cast<unsigned char>(c)) != 0; }

// Splits text into tokens of (leading whitespace + one word); concatenated they give the text back.
std::vector<std::string> split_tokens(std::string_view text) {
  std::vector<std::string> tokens;
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t start = i;
    while (i < text.size() && is_space(text[i])) ++i;
    while (i < text.size() && !is_space(text[i])) ++i;
    const std::string_view token = text.substr(start, i - start);
    // Trailing whitespace is not a token of its own.
    if (!tokens.empty() && std::all_of(token.begin(), token.end(), is_space)) {
      tokens.back() += token;
    } else {
      tokens.emplace_back(token);
    }
  }
  return tokens;
}

std::string plural(std::size_t n, std::string_view one, std::string_view many) {
  return std::to_string(n) + " " + std::string(n == 1 ? one : many);
}


}  // namespace

TextSize measure_text(std::string_view text) noexcept {
  TextSize size;
  bool in_word = false;
  for (const char c : text) {
    // Count UTF-8 lead bytes only, so a multi-byte character counts once.
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++size.characters;
    if (is_space(c)) {
      in_word = false;
    } else if (!in_word) {
      in_word = true;
      ++size.words;
    }
  }
  return size;
}

std::string message_text(const json::value& content) {
  if (content.is_string()) return std::string(content.get_string());
  std::string text;
  if (!content.is_array()) return text;
  for (const auto& part : content.get_array()) {
    if (!part.is_object()) continue;
    const auto* value = part.get_object().if_contains("text");
    if (value == nullptr || !value->is_string()) continue;
    if (!text.empty()) text += '\n';
    text += std::string_view(value->get_string());
  }
  return text;
}

std::int64_t estimate_prompt_tokens(const protocol::ChatRequest& request) {
  return protocol::estimate_tokens(request.json_bytes);
}

std::string make_chunk(const ChunkFields& f) {
  auto optional_string = [](const std::optional<std::string_view>& s) -> json::value {
    return s ? json::value(json::string(*s)) : json::value(nullptr);
  };
  json::object delta;
  delta["role"] = "assistant";
  delta["content"] = optional_string(f.content);
  delta["reasoning_content"] = optional_string(f.reasoning_content);
  delta["tool_calls"] = nullptr;
  json::object choice;
  choice["index"] = 0;
  choice["delta"] = std::move(delta);
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = optional_string(f.finish_reason);
  choice["matched_stop"] = optional_string(f.matched_stop);
  json::object chunk;
  chunk["id"] = f.id;
  chunk["object"] = "chat.completion.chunk";
  chunk["created"] = f.created;
  chunk["model"] = f.model;
  chunk["system_fingerprint"] = f.system_fingerprint;
  chunk["choices"] = json::array{std::move(choice)};
  if (f.usage) {
    chunk["usage"] = json::object{{"prompt_tokens", f.usage->prompt_tokens},
                                  {"completion_tokens", f.usage->completion_tokens},
                                  {"total_tokens", f.usage->total_tokens()}};
  } else {
    chunk["usage"] = nullptr;
  }
  return json::serialize(chunk);
}

// --- demo engine -----------------------------------------------------------------------------

http::awaitable<bool> demo_token_pause(std::chrono::milliseconds delay) {
  if (delay.count() <= 0) co_return true;
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, delay);
  auto [ec] = co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
  co_return !ec;
}

http::awaitable<bool> demo_token_pause_until(std::chrono::steady_clock::time_point due) {
  if (due <= std::chrono::steady_clock::now()) co_return true;
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, due);
  auto [ec] = co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
  co_return !ec;
}

namespace {

// The text of the last user message, nullopt when there is none.
std::optional<std::string> last_user_text(const protocol::ChatRequest& request) {
  std::optional<std::string> last;
  if (const auto* messages = request.body.if_contains("messages"); messages != nullptr && messages->is_array()) {
    for (const auto& message : messages->get_array()) {
      if (!message.is_object()) continue;
      const auto& object = message.get_object();
      const auto* role = object.if_contains("role");
      const auto* content = object.if_contains("content");
      if (role == nullptr || !role->is_string() || role->get_string() != "user" || content == nullptr) continue;
      last = message_text(*content);
    }
  }
  return last;
}

Result<ReplayAnswer> parse_replay_line(std::string_view line) {
  boost::system::error_code ec;
  const json::value value = json::parse(json::string_view(line.data(), line.size()), ec);
  const auto* object = ec ? nullptr : value.if_object();
  const auto* tokens = object ? object->if_contains("tokens") : nullptr;
  const auto* delays = object ? object->if_contains("delaysMs") : nullptr;
  if (!tokens || !delays || !tokens->is_array() || !delays->is_array() ||
      tokens->get_array().size() != delays->get_array().size())
    return fail(Errc::invalid_request, "not an object with arrays tokens and delaysMs of one length");
  ReplayAnswer answer;
  for (const auto& token : tokens->get_array()) {
    if (!token.is_string()) return fail(Errc::invalid_request, "a token is not a string");
    answer.tokens.emplace_back(token.get_string());
  }
  for (const auto& delay : delays->get_array()) {
    if (!delay.is_int64() || delay.get_int64() < 0 || delay.get_int64() > kMaxReplayDelay.count())
      return fail(Errc::invalid_request, "a delay is not an integer from 0 to " + std::to_string(kMaxReplayDelay.count()));
    answer.delays.emplace_back(delay.get_int64());
  }
  return answer;
}

}  // namespace

Result<std::shared_ptr<const ReplayAnswers>> load_replay_answers(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return fail(Errc::invalid_request, "--demo-replay: cannot read " + path.string());
  auto answers = std::make_shared<ReplayAnswers>();
  std::string line;
  for (std::size_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto answer = parse_replay_line(line);
    if (!answer)
      return fail(Errc::invalid_request,
                  "--demo-replay " + path.string() + " line " + std::to_string(number) + ": " + answer.error().message);
    answers->push_back(std::move(*answer));
  }
  if (answers->empty()) return fail(Errc::invalid_request, "--demo-replay " + path.string() + " holds no answer");
  return std::shared_ptr<const ReplayAnswers>(std::move(answers));
}

const ReplayAnswer* find_replay_answer(const ReplayAnswers& answers, const protocol::ChatRequest& request) {
  const auto text = last_user_text(request);
  if (!text || !text->starts_with(kReplayPrefix)) return nullptr;
  const std::string_view digits = std::string_view(*text).substr(kReplayPrefix.size());
  std::size_t index = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
  if (ec != std::errc() || end != digits.data() + digits.size() || index >= answers.size()) return nullptr;
  return &answers[index];
}

DemoReply demo_reply(const protocol::ChatRequest& request) {
  const auto text = last_user_text(request);
  const bool found = text.has_value();
  const TextSize last = found ? measure_text(*text) : TextSize{};
  const std::string size = plural(last.characters, "character", "characters") + " in " +
                           plural(last.words, "word", "words");
  DemoReply reply;
  if (!found) {
    reply.reasoning = "There is no user message to answer, so I will explain what this demo engine does.";
    reply.content =
        "Hello from the rvenc demo engine. Send a user message and I will tell you how it travelled: "
        "end-to-end encrypted from your client, decrypted only inside the enclave, and answered with "
        "an encrypted stream.";
    return reply;
  }
  reply.reasoning = "The user's last message has " + size +
                    ". It was decrypted inside the enclave; as a demo engine I describe how it "
                    "travelled instead of answering it.";
  reply.content =
      "Hello from the rvenc demo engine. Your last message arrived end-to-end encrypted: " + size +
      ", decrypted only inside the enclave. This reply is encrypted back to you chunk by chunk, and the "
      "gateway in between sees neither. For real answers, start the enclave with --upstream MODEL=URL "
      "pointing at an OpenAI-compatible server such as vLLM, SGLang, llama.cpp or Ollama.";
  return reply;
}

namespace {

// What the demo engine streams for a request: its tokens, each with the pause before it, and the
// stop sequence that cut the canned answer (none for a replayed one).
struct DemoScript {
  struct Token {
    bool reasoning;
    std::string text;
    std::chrono::milliseconds delay;
  };
  std::vector<Token> tokens;
  std::optional<std::string> matched_stop;
};

DemoScript demo_script(const protocol::ChatRequest& request, const DemoEngineOptions& options) {
  DemoScript script;
  const DemoReply reply = demo_reply(request);
  std::string content = reply.content;
  std::size_t cut = std::string::npos;
  for (const auto& stop : request.stop) {
    if (stop.empty()) continue;
    if (const auto at = content.find(stop); at != std::string::npos && (cut == std::string::npos || at < cut)) {
      cut = at;
      script.matched_stop = stop;
    }
  }
  if (script.matched_stop) content.resize(cut);
  if (const auto* replay = options.replay ? find_replay_answer(*options.replay, request) : nullptr) {
    for (std::size_t i = 0; i < replay->tokens.size(); ++i)
      script.tokens.push_back({false, replay->tokens[i], replay->delays[i]});
    script.matched_stop.reset();
  } else {
    for (auto& t : split_tokens(reply.reasoning)) script.tokens.push_back({true, std::move(t), options.token_delay});
    for (auto& t : split_tokens(content)) script.tokens.push_back({false, std::move(t), options.token_delay});
  }
  return script;
}

}  // namespace

http::awaitable<EngineOutcome> DemoEngine::generate(const protocol::ChatRequest& request, ChunkSink sink) {
  const DemoScript script = demo_script(request, options_);
  const auto& tokens = script.tokens;
  const auto& matched_stop = script.matched_stop;

  const std::int64_t budget = request.max_tokens.value_or(std::numeric_limits<std::int64_t>::max());
  const std::string id = "chatcmpl-" + to_hex(crypto::random_array<kCompletionIdBytes>());
  ChunkFields fields{.id = id, .created = unix_now(), .model = request.model, .system_fingerprint = kDemoFingerprint};
  EngineOutcome outcome;
  outcome.usage.prompt_tokens = estimate_prompt_tokens(request);

  bool length = false;
  auto due = std::chrono::steady_clock::now();  // each token at start + the delays before it
  for (const auto& token : tokens) {
    if (outcome.usage.completion_tokens >= budget) {
      length = true;
      break;
    }
    due += token.delay;
    if (!co_await demo_token_pause_until(due)) {
      outcome.error = Error{Errc::internal_error, "the demo engine was interrupted"};
      co_return outcome;
    }
    ChunkFields step = fields;
    (token.reasoning ? step.reasoning_content : step.content) = token.text;
    if (!co_await sink(make_chunk(step))) {
      outcome.error = Error{Errc::transport_error, "the client disconnected"};
      co_return outcome;
    }
    ++outcome.usage.completion_tokens;
  }

  ChunkFields last = fields;
  last.content = "";
  last.finish_reason = length ? "length" : "stop";
  if (!length && matched_stop) last.matched_stop = *matched_stop;
  last.usage = outcome.usage;
  if (!co_await sink(make_chunk(last))) outcome.error = Error{Errc::transport_error, "the client disconnected"};
  co_return outcome;
}

}  // namespace rvenc::enclave
