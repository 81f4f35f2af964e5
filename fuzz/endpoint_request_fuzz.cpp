// protocol::parse_endpoint_request and the completions / embeddings / responses / chat validators on arbitrary
// (decrypted) bytes (docs/endpoints.md): never crashes, every error is invalid_inference with a
// message, the marker never survives into an accepted body, and what is accepted respects the
// bounds (inputs per batch, max_tokens, stop sequences) and validates again after a round trip.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <boost/json/serialize.hpp>

#include "fuzz_check.hpp"
#include "request_checks.hpp"
#include "rvenc/protocol/endpoint.hpp"
#include "rvenc/protocol/responses.hpp"

namespace {

using rvenc::protocol::Endpoint;

rvenc::Result<rvenc::protocol::ChatRequest> validate(Endpoint endpoint, boost::json::object body, std::size_t bytes) {
  switch (endpoint) {
    case Endpoint::completions:
      return rvenc::protocol::validate_completions_body(std::move(body), bytes);
    case Endpoint::embeddings:
      return rvenc::protocol::validate_embeddings_body(std::move(body), bytes);
    case Endpoint::responses:
      return rvenc::protocol::validate_responses_body(std::move(body), bytes);
    default:
      return rvenc::protocol::validate_chat_body(std::move(body), bytes);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = rvenc::protocol::parse_endpoint_request(text);
  if (!parsed) {
    rvenc::fuzz::check_request_refusal(parsed.error());
    return 0;
  }
  RVENC_FUZZ_CHECK(!parsed->body.contains(rvenc::protocol::kEndpointMember));
  const Endpoint endpoint = parsed->endpoint;
  auto request = validate(endpoint, parsed->body, parsed->json_bytes);
  if (!request) {
    rvenc::fuzz::check_request_refusal(request.error());
    return 0;
  }
  rvenc::fuzz::check_accepted_request(*request);
  if (endpoint == Endpoint::embeddings) {
    RVENC_FUZZ_CHECK(!request->stream);
    RVENC_FUZZ_CHECK(rvenc::protocol::embedding_input_count(request->body.at("input")) <=
                     rvenc::protocol::kMaxEmbeddingInputs);
  }
  if (!rvenc::fuzz::all_finite(request->body)) return 0;
  auto again = validate(endpoint, request->body, parsed->json_bytes);
  RVENC_FUZZ_CHECK(again.has_value());
  RVENC_FUZZ_CHECK(again->model == request->model && again->stream == request->stream);
  return 0;
}
