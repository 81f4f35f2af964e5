// The enclave's per-endpoint dispatch (docs/endpoints.md): for each OpenAI endpoint an encrypted
// request may name ("rvenc_endpoint"), the validator of its decrypted body, how an upstream
// server is called for it, and the handler that answers it with an engine.
//
// Design: one small constant table, looked up once per request after decryption; everything
// around it (sealing, replay window, capacity, usage events, logging) is the chat path's and does
// not depend on the endpoint. A new endpoint is one row: a validator from protocol/ (pure, fuzzed),
// the upstream call, and a handler that turns the engine's output into the endpoint's data-event
// plaintexts (each one JSON object of that endpoint). An endpoint without a row is refused with
// invalid_inference naming rvenc_endpoint.
#pragma once

#include <cstddef>
#include <functional>

#include <boost/json/object.hpp>

#include "rvenc/common/error.hpp"
#include "rvenc/enclave/engine.hpp"
#include "rvenc/protocol/chat.hpp"
#include "rvenc/protocol/endpoint.hpp"

namespace rvenc::enclave {

// Validates a decrypted body ("rvenc_endpoint" already removed); json_bytes is the plaintext size.
using EndpointValidator = Result<protocol::ChatRequest> (*)(boost::json::object body, std::size_t json_bytes);
// Answers a validated request with `engine`, each data-event plaintext into `sink`; `route` is the
// row the request came through (its upstream call).
struct EndpointRoute;
using EndpointHandler =
    std::function<http::awaitable<EngineOutcome>(Engine& engine, const protocol::ChatRequest& request,
                                                 const EndpointRoute& route, ChunkSink sink)>;

struct EndpointRoute {
  protocol::Endpoint endpoint = protocol::Endpoint::chat_completions;
  EndpointValidator validate = nullptr;
  UpstreamCall upstream;
  EndpointHandler handle;
};

// The row of `endpoint`; nullptr when this enclave does not serve it.
[[nodiscard]] const EndpointRoute* find_route(protocol::Endpoint endpoint);

// Parses a decrypted plaintext and validates it with its endpoint's validator: the request (its
// endpoint set) and its route. invalid_inference naming what is wrong.
struct RoutedRequest {
  protocol::ChatRequest request;
  const EndpointRoute* route = nullptr;
};
[[nodiscard]] Result<RoutedRequest> route_request(std::string_view plaintext);

}  // namespace rvenc::enclave
