#include "rvenc/enclave/endpoints.hpp"

#include <array>
#include <string>

#include "rvenc/protocol/responses.hpp"

namespace rvenc::enclave {

namespace {

using protocol::Endpoint;

http::awaitable<EngineOutcome> chat_handler(Engine& engine, const protocol::ChatRequest& request,
                                            const EndpointRoute&, ChunkSink sink) {
  co_return co_await engine.generate(request, std::move(sink));
}

// The engine answers the endpoint itself (upstream: POST to the route's path).
http::awaitable<EngineOutcome> served_handler(Engine& engine, const protocol::ChatRequest& request,
                                              const EndpointRoute& route, ChunkSink sink) {
  co_return co_await engine.serve(request, route.upstream, std::move(sink));
}

// The Responses API (docs/responses.md): request.body is the Responses request, validated by
// validate_responses_body; translated again here (pure, so it cannot fail now) for Engine::respond,
// which translates to chat or forwards to an engine serving /v1/responses itself.
http::awaitable<EngineOutcome> responses_handler(Engine& engine, const protocol::ChatRequest& request,
                                                 const EndpointRoute&, ChunkSink sink) {
  auto translated = protocol::translate_and_validate_responses(request.body);
  if (!translated) {
    EngineOutcome outcome;
    outcome.usage.prompt_tokens = estimate_prompt_tokens(request);
    outcome.error = translated.error();
    co_return outcome;
  }
  co_return co_await engine.respond(translated->responses, translated->chat, std::move(sink));
}

const std::array<EndpointRoute, 4>& routes() {
  static const std::array<EndpointRoute, 4> table{{
      {Endpoint::chat_completions, &protocol::validate_chat_body, {"/chat/completions", true}, chat_handler},
      {Endpoint::completions, &protocol::validate_completions_body, {"/completions", true}, served_handler},
      {Endpoint::embeddings, &protocol::validate_embeddings_body, {"/embeddings", false}, served_handler},
      {Endpoint::responses, &protocol::validate_responses_body, {"/responses", true}, responses_handler},
  }};
  return table;
}

}  // namespace

const EndpointRoute* find_route(Endpoint endpoint) {
  for (const auto& route : routes())
    if (route.endpoint == endpoint) return &route;
  return nullptr;
}

Result<RoutedRequest> route_request(protocol::EndpointBody parsed) {
  const EndpointRoute* route = find_route(parsed.endpoint);
  if (route == nullptr)
    return fail(Errc::invalid_inference, std::string(protocol::kEndpointMember) + ": this enclave does not serve the " +
                                             std::string(protocol::endpoint_name(parsed.endpoint)) + " endpoint");
  auto request = route->validate(std::move(parsed.body), parsed.json_bytes);
  if (!request) return std::unexpected(request.error());
  request->endpoint = route->endpoint;
  return RoutedRequest{std::move(*request), route};
}

}  // namespace rvenc::enclave
