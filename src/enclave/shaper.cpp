#include "rvenc/enclave/shaper.hpp"

#include <algorithm>
#include <chrono>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "rvenc/crypto/secret.hpp"

namespace rvenc::enclave {

namespace asio = boost::asio;
using protocol::ShapingMode;

namespace {

bool allowed(const ShapingPolicy& policy, ShapingMode mode) {
  return std::find(policy.allowed.begin(), policy.allowed.end(), mode) != policy.allowed.end();
}

std::string allowed_names(const ShapingPolicy& policy) {
  std::string names;
  for (const auto mode : policy.allowed) names += (names.empty() ? "" : ", ") + std::string(shaping_mode_name(mode));
  return names;
}

// pad: every chunk leaves at once, cut into fixed-size records.
http::awaitable<EngineOutcome> generate_padded(Engine& engine, const protocol::ChatRequest& request,
                                               const protocol::Shaping& shaping, const RecordSink& send) {
  protocol::ShapedWriter writer(shaping.record_bytes);
  co_return co_await engine.generate(request, [&](std::string chunk) -> http::awaitable<bool> {
    writer.push(chunk);
    crypto::secure_wipe(chunk.data(), chunk.size());
    while (!writer.empty())
      if (!co_await send(writer.next_record())) co_return false;
    co_return true;
  });
}

bool is_null_or_absent(const boost::json::object& object, std::string_view key) {
  const auto* value = object.if_contains(key);
  return value == nullptr || value->is_null();
}

// The only choice of a chunk that has one choice and no usage, else null.
boost::json::object* only_choice(boost::json::object& chunk) {
  auto* choices = chunk.if_contains("choices");
  if (!is_null_or_absent(chunk, "usage") || choices == nullptr || !choices->is_array() ||
      choices->get_array().size() != 1 || !choices->get_array()[0].is_object())
    return nullptr;
  return &choices->get_array()[0].get_object();
}

// Appends `next`'s content to `into` when both are plain content chunks of one completion (one
// choice, no finish, no usage, no logprobs, the same delta apart from the content): what
// accumulated between two cadence records leaves as one chunk, as an engine batching tokens would
// send it. False (nothing changed) otherwise.
bool merge_content(boost::json::object& into, boost::json::object& next) {
  auto* a = only_choice(into);
  auto* b = only_choice(next);
  if (!a || !b || into.if_contains("id") == nullptr || next.if_contains("id") == nullptr || into.at("id") != next.at("id"))
    return false;
  for (const auto* choice : {a, b})
    for (const auto* key : {"finish_reason", "logprobs"})
      if (!is_null_or_absent(*choice, key)) return false;
  auto* delta_a = a->if_contains("delta");
  auto* delta_b = b->if_contains("delta");
  if (!delta_a || !delta_b || !delta_a->is_object() || !delta_b->is_object() ||
      delta_a->get_object().size() != delta_b->get_object().size() || a->if_contains("index") == nullptr ||
      b->if_contains("index") == nullptr || a->at("index") != b->at("index"))
    return false;
  auto& da = delta_a->get_object();
  auto& db = delta_b->get_object();
  auto* content_a = da.if_contains("content");
  auto* content_b = db.if_contains("content");
  if (!content_a || !content_b || !content_a->is_string() || !content_b->is_string()) return false;
  for (const auto& [key, value] : db)
    if (key != "content" && (da.if_contains(key) == nullptr || da.at(key) != value)) return false;
  content_a->get_string().append(content_b->get_string());
  return true;
}

// What a cadence stream has received but not yet cut into records: the chunk still open to
// merging, and the writer. Chunks that are not JSON objects are passed on as they are.
class CadenceBuffer {
 public:
  explicit CadenceBuffer(std::size_t record_bytes) : writer_(record_bytes) {}
  ~CadenceBuffer() { wipe_open(); }
  CadenceBuffer(const CadenceBuffer&) = delete;
  CadenceBuffer& operator=(const CadenceBuffer&) = delete;

  void push(std::string& chunk) {
    boost::system::error_code ec;
    auto parsed = boost::json::parse(chunk, ec);
    crypto::secure_wipe(chunk.data(), chunk.size());
    if (!ec && parsed.is_object()) {
      if (open_ && merge_content(*open_, parsed.get_object())) return;
      flush();
      open_ = std::move(parsed.get_object());
      return;
    }
    flush();
    writer_.push(chunk);
  }
  // The next record: everything received so far joins the byte stream first.
  [[nodiscard]] std::string next_record() {
    flush();
    return writer_.next_record();
  }
  [[nodiscard]] bool empty() const noexcept { return !open_ && writer_.empty(); }

 private:
  void flush() {
    if (!open_) return;
    std::string text = boost::json::serialize(*open_);
    writer_.push(text);
    crypto::secure_wipe(text.data(), text.size());
    wipe_open();
  }
  void wipe_open() {
    // Boost.JSON storage cannot be wiped in place; the serialized copies are (see docs/threat-model.md).
    open_.reset();
  }

  protocol::ShapedWriter writer_;
  std::optional<boost::json::object> open_;
};

// cadence: one record every interval from the start, content or filler, until the engine is done,
// nothing is pending and the record count is a length bucket (after an engine error: once the
// pending content is out, as the error event shows itself anyway).
http::awaitable<EngineOutcome> generate_cadenced(Engine& engine, const protocol::ChatRequest& request,
                                                 const protocol::Shaping& shaping, const RecordSink& send) {
  using asio::experimental::awaitable_operators::operator&&;
  CadenceBuffer writer(shaping.record_bytes);
  EngineOutcome outcome;
  bool generating = true;
  bool gone = false;
  auto produce = [&]() -> http::awaitable<void> {
    outcome = co_await engine.generate(request, [&](std::string chunk) -> http::awaitable<bool> {
      writer.push(chunk);
      co_return !gone;
    });
    generating = false;
  };
  auto tick = [&]() -> http::awaitable<void> {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    auto next = std::chrono::steady_clock::now();
    for (std::uint64_t sent = 1;; ++sent) {
      if (!co_await send(writer.next_record())) {
        gone = true;
        co_return;
      }
      if (!generating && writer.empty() && (outcome.error || sent == protocol::length_bucket(sent))) co_return;
      next += shaping.interval;
      timer.expires_at(next);
      co_await timer.async_wait(asio::use_awaitable);
    }
  };
  co_await (produce() && tick());
  auto& tokens = outcome.usage.completion_tokens;
  if (tokens > 0) tokens = static_cast<std::int64_t>(protocol::length_bucket(static_cast<std::uint64_t>(tokens)));
  co_return outcome;
}

}  // namespace

Status check_shaping_policy(const ShapingPolicy& policy) {
  const auto& shaping = policy.defaults;
  if (shaping.record_bytes % 64 != 0 || shaping.record_bytes < protocol::kMinRecordBytes ||
      shaping.record_bytes > protocol::kMaxRecordBytes)
    return fail(Errc::invalid_request, "--shaping-record-bytes must be a multiple of 64 from " +
                                           std::to_string(protocol::kMinRecordBytes) + " to " +
                                           std::to_string(protocol::kMaxRecordBytes));
  if (shaping.interval < protocol::kMinShapingInterval || shaping.interval > protocol::kMaxShapingInterval)
    return fail(Errc::invalid_request, "--shaping-interval-ms must be from " +
                                           std::to_string(protocol::kMinShapingInterval.count()) + " to " +
                                           std::to_string(protocol::kMaxShapingInterval.count()));
  if (!allowed(policy, shaping.mode))
    return fail(Errc::invalid_request, "--shaping " + std::string(shaping_mode_name(shaping.mode)) +
                                           " is not among --shaping-allow (" + allowed_names(policy) + ")");
  return {};
}

Result<protocol::Shaping> choose_shaping(protocol::EndpointBody& request, protocol::Version version,
                                         const ShapingPolicy& policy) {
  auto ask = protocol::take_shaping_member(request.body);
  if (!ask) return std::unexpected(ask.error());
  protocol::Shaping shaping = policy.defaults;
  // Only chat completions stream tokens; the other endpoints answer unshaped (docs/traffic-shaping.md).
  if (request.endpoint != protocol::Endpoint::chat_completions) {
    if (*ask && (*ask)->mode != ShapingMode::off)
      return fail(Errc::invalid_inference, "rvenc_shaping: stream shaping applies to chat completions only, not to " +
                                               std::string(protocol::endpoint_name(request.endpoint)));
    shaping.mode = ShapingMode::off;
    return shaping;
  }
  if (*ask) {
    if (!allowed(policy, (*ask)->mode))
      return fail(Errc::invalid_inference, "rvenc_shaping.mode: \"" + std::string(shaping_mode_name((*ask)->mode)) +
                                               "\" is not offered by this enclave (offered: " + allowed_names(policy) +
                                               ")");
    shaping.mode = (*ask)->mode;
    if ((*ask)->interval_ms) shaping.interval = std::chrono::milliseconds(*(*ask)->interval_ms);
  }
  // Version 1 has no padding to hide a record's size: its clients get the stream unshaped.
  if (!*ask && version == protocol::Version::v1) shaping.mode = ShapingMode::off;
  if (shaping.mode != ShapingMode::off && version == protocol::Version::v1)
    return fail(Errc::invalid_inference, "rvenc_shaping: stream shaping needs protocol version 2 or 3");
  return shaping;
}

http::awaitable<EngineOutcome> generate_shaped(Engine& engine, const protocol::ChatRequest& request,
                                               const protocol::Shaping& shaping, RecordSink send) {
  switch (shaping.mode) {
    case ShapingMode::off: break;
    case ShapingMode::pad: co_return co_await generate_padded(engine, request, shaping, send);
    case ShapingMode::cadence: co_return co_await generate_cadenced(engine, request, shaping, send);
  }
  co_return co_await engine.generate(request, [&send](std::string chunk) { return send(std::move(chunk)); });
}

}  // namespace rvenc::enclave
