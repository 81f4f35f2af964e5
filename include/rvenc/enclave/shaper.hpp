// Stream shaping in the enclave (docs/traffic-shaping.md): which mode a request gets, and the
// loop that turns an engine's chunks into the records of that mode.
//
// Design: the enclave is the only party that sees the plaintext, so it alone can shape. The
// shaper sits between the engine and the sealer: it takes the engine's chunks and hands the
// service record plaintexts, which the service seals as ordinary data events (one counter, so
// fillers are covered by truncation and reordering detection). `off` passes chunks through, `pad`
// cuts each chunk into fixed-size records at once, `cadence` runs a timer next to the engine and
// sends one record every interval (content if any accumulated, else a filler) until the engine is
// done and the record count reaches a length bucket. The timer loop lives in the request's
// coroutine (awaitable operator &&): when the client goes away the loop ends at its next write
// and the engine at its next chunk, so nothing outlives the request.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "rvenc/common/error.hpp"
#include "rvenc/enclave/engine.hpp"
#include "rvenc/protocol/endpoint.hpp"
#include "rvenc/protocol/envelope.hpp"
#include "rvenc/protocol/shaping.hpp"

namespace rvenc::enclave {

// The operator's choice (rvenc enclave --shaping, --shaping-interval-ms, --shaping-record-bytes,
// --shaping-allow): the default for requests that ask for nothing and the modes a request may ask for.
struct ShapingPolicy {
  protocol::Shaping defaults;
  std::vector<protocol::ShapingMode> allowed = {protocol::ShapingMode::off, protocol::ShapingMode::pad,
                                                protocol::ShapingMode::cadence};
};

// invalid_request naming the flag when the policy cannot work (record size, interval, a default
// that is not allowed).
[[nodiscard]] Status check_shaping_policy(const ShapingPolicy& policy);

// Removes the request's rvenc_shaping member and decides the stream's shaping: the policy's
// default when it asks for nothing, else what it asks for. invalid_inference when the member is
// malformed, the mode is not allowed here, or the protocol version cannot carry it (version 1).
// Endpoints other than chat completions are never shaped (asking for pad or cadence there is
// invalid_inference).
[[nodiscard]] Result<protocol::Shaping> choose_shaping(protocol::EndpointBody& request, protocol::Version version,
                                                       const ShapingPolicy& policy);

// Sends one data event plaintext; false once the client is gone.
using RecordSink = std::function<http::awaitable<bool>(std::string plaintext)>;

// Runs `engine` on `request`, sending what it produces through `send` shaped by `shaping`. With
// `cadence` the usage's completion_tokens is rounded up to its length bucket (PROTOCOL.md §4).
[[nodiscard]] http::awaitable<EngineOutcome> generate_shaped(Engine& engine, const protocol::ChatRequest& request,
                                                             const protocol::Shaping& shaping, RecordSink send);

}  // namespace rvenc::enclave
