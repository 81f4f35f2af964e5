// Shared by the request-validator fuzz targets (chat_request, endpoint_request): what every refusal
// and every accepted chat-shaped request must satisfy, whatever the endpoint.
//
// Design: the invariants live here once so that the two targets cannot drift apart; each target
// keeps only what is particular to it (the endpoint marker, the embeddings bounds, the round trip).
#pragma once

#include "fuzz_check.hpp"
#include "rvenc/common/error.hpp"
#include "rvenc/protocol/chat.hpp"

namespace rvenc::fuzz {

// A validator's refusal of decrypted bytes: always invalid_inference, always with a message.
inline void check_request_refusal(const Error& error) {
  RVENC_FUZZ_CHECK(error.code == Errc::invalid_inference);
  RVENC_FUZZ_CHECK(!error.message.empty());
}

// An accepted request: a model, a positive max_tokens when given, and no more stop sequences than allowed.
inline void check_accepted_request(const protocol::ChatRequest& request) {
  RVENC_FUZZ_CHECK(!request.model.empty());
  RVENC_FUZZ_CHECK(!request.max_tokens || *request.max_tokens > 0);
  RVENC_FUZZ_CHECK(request.stop.size() <= protocol::kMaxStopSequences);
}

}  // namespace rvenc::fuzz
