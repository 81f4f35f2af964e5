#include "rvenc/enclave/endpoints.hpp"

#include <array>
#include <string>

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

const std::array<EndpointRoute, 3>& routes() {
  static const std::array<EndpointRoute, 3> table{{
      {Endpoint::chat_completions, &protocol::validate_chat_body, {"/chat/completions", true}, chat_handler},
      {Endpoint::completions, &protocol::validate_completions_body, {"/completions", true}, served_handler},
      {Endpoint::embeddings, &protocol::validate_embeddings_body, {"/embeddings", false}, served_handler},
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
