// Client-side helpers for the enclave tests: seal a chat request like the SDK does, and open the
// sealed event stream the enclave answers with.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "rvenc/common/clock.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "rvenc/protocol/chat.hpp"
#include "rvenc/protocol/envelope.hpp"
#include "rvenc/protocol/sealing.hpp"
#include "rvenc/protocol/shaping.hpp"
#include "rvenc/protocol/sse.hpp"
#include "support/test_support.hpp"

namespace rvenc::enclave::test {

// Runs one coroutine on a fresh io_context to completion and returns its result.
template <class F>
auto run_coroutine(F&& make) {
  boost::asio::io_context context;
  auto future = boost::asio::co_spawn(context, std::forward<F>(make), boost::asio::use_future);
  context.run();
  return future.get();
}

using rvenc::unix_now;

inline std::string chat_json(const std::string& model, const std::string& user_message,
                             boost::json::object extra = {}) {
  boost::json::object body{{"model", model},
                           {"messages", boost::json::array{boost::json::object{{"role", "user"},
                                                                               {"content", user_message}}}}};
  for (const auto& [k, v] : extra) body[k] = v;
  return boost::json::serialize(body);
}

using rvenc::test::seal;
using rvenc::test::SealedRequest;

struct OpenedStream {
  std::vector<std::string> chunks;  // decrypted data events
  std::optional<boost::json::object> error;  // decrypted error event
  bool done = false;                          // authenticated done seen
  std::optional<boost::json::object> usage;   // the plain final usage event for the gateway
  std::optional<boost::json::object> provisional_usage;  // the one marked "final": false
  std::size_t events_before_provisional = 0;  // events before the provisional usage
  std::optional<Error> failure;               // tampered/garbled stream
  std::string content;                        // content deltas concatenated
  std::string reasoning;
  std::string finish_reason;
  std::optional<protocol::Usage> chunk_usage;  // usage of the last chunk
};

inline OpenedStream open_stream(const SealedRequest& request, std::string_view body) {
  OpenedStream out;
  protocol::SseParser parser;
  std::vector<protocol::SseEvent> events;
  if (auto ok = parser.feed(body, events); !ok) {
    out.failure = ok.error();
    return out;
  }
  protocol::ResponseOpener opener(request.version, request.shared_secret, request.nonce);
  for (const auto& event : events) {
    if (event.event == "usage") {
      auto usage = boost::json::parse(event.data).as_object();
      const auto* final = usage.if_contains("final");
      if (final && final->is_bool() && !final->get_bool()) {
        out.provisional_usage = std::move(usage);
        out.events_before_provisional = out.chunks.size() + (out.done ? 1 : 0);
      } else {
        out.usage = std::move(usage);
      }
      continue;
    }
    const auto kind = protocol::kind_from_name(event.event);
    if (!kind) continue;
    auto opened = opener.open(*kind, event.data);
    if (!opened) {
      out.failure = opened.error();
      return out;
    }
    if (*kind == protocol::EventKind::init) continue;
    const std::string text(opened->plaintext.view());
    if (*kind == protocol::EventKind::done) {
      out.done = true;
    } else if (*kind == protocol::EventKind::error) {
      out.error = boost::json::parse(text).as_object();
    } else {
      out.chunks.push_back(text);
      if (text.starts_with(protocol::kRecordMarker)) continue;  // a record of a large answer: joined by the test
      const auto chunk = boost::json::parse(text).as_object();
      // Chat chunks only (other endpoints' objects: docs/endpoints.md).
      const auto* choices_value = chunk.if_contains("choices");
      const auto* first = choices_value && choices_value->is_array() && !choices_value->as_array().empty()
                              ? &choices_value->as_array()[0]
                              : nullptr;
      if (first && first->as_object().contains("delta")) {
        const auto& choice = first->as_object();
        const auto& delta = choice.at("delta").as_object();
        if (const auto* c = delta.if_contains("content"); c && c->is_string()) out.content += c->as_string();
        if (const auto* r = delta.if_contains("reasoning_content"); r && r->is_string())
          out.reasoning += r->as_string();
        if (const auto* f = choice.if_contains("finish_reason"); f && f->is_string())
          out.finish_reason = std::string(f->as_string());
      }
      if (const auto* u = chunk.if_contains("usage")) {
        if (auto usage = protocol::parse_usage(*u)) out.chunk_usage = usage;
      }
    }
  }
  return out;
}

inline std::string error_code_of(std::string_view body) {
  boost::system::error_code ec;
  auto parsed = boost::json::parse(body, ec);
  if (ec || !parsed.is_object()) return {};
  const auto* error = parsed.as_object().if_contains("error");
  if (!error || !error->is_object()) return {};
  const auto* code = error->as_object().if_contains("code");
  return code && code->is_string() ? std::string(code->as_string()) : std::string();
}

}  // namespace rvenc::enclave::test
