// Engine::respond: the Responses API through an engine's chat completions (engine.hpp,
// docs/responses.md). Every event is one encrypted data event; nothing is stored.
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "rvenc/common/clock.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "rvenc/enclave/engine.hpp"

namespace rvenc::enclave {

namespace json = boost::json;

namespace {

constexpr std::size_t kResponseIdBytes = 16;

std::string new_response_id() { return "resp_" + to_hex(crypto::random_array<kResponseIdBytes>()); }

}  // namespace

http::awaitable<EngineOutcome> Engine::respond(const protocol::ResponsesRequest& request,
                                               const protocol::ChatRequest& chat, ChunkSink sink) {
  protocol::ResponsesEventWriter writer(request, new_response_id(), unix_now());
  bool receiving = true;
  auto send = [&](std::vector<json::object> events) -> http::awaitable<bool> {
    for (auto& event : events) {
      if (!receiving) break;
      receiving = co_await sink(json::serialize(event));
    }
    co_return receiving;
  };
  if (!co_await send(writer.start()))
    co_return EngineOutcome{.usage = {.prompt_tokens = estimate_prompt_tokens(chat)},
                            .error = Error{Errc::transport_error, "the client disconnected"}};
  auto outcome = co_await generate(chat, [&](std::string chunk) -> http::awaitable<bool> {
    boost::system::error_code ec;
    auto parsed = json::parse(json::string_view(chunk.data(), chunk.size()), ec);
    crypto::secure_wipe(chunk.data(), chunk.size());
    if (ec || !parsed.is_object()) co_return receiving;  // engines only hand out chunk objects
    co_return co_await send(writer.add_chunk(parsed.get_object()));
  });
  if (receiving) (void)co_await send(writer.finish(outcome.error, outcome.usage));
  co_return outcome;
}

}  // namespace rvenc::enclave
