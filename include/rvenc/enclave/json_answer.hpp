// An engine's one-object JSON answer (embeddings) relayed to the client as it arrives: checked,
// cut into records, sealed record by record (docs/endpoints.md, "Large answers").
//
// Design: a large answer sealed as one event makes every hop wait for the one before it to finish
// the whole answer (the enclave reading and sealing it, the gateway relaying it, the client
// decrypting it). Cut into content records (the shaping wire format of docs/traffic-shaping.md,
// without the zero fill), the gateway and the client work on the first records while the enclave
// still reads and seals the rest. The answer is checked on the way (protocol::JsonAnswerCheck);
// the last record, the one that ends the client's line, leaves only once the check passed, so a
// client never completes an answer the enclave did not check: a failed check is followed by the
// error event, which clients report (the unfinished line goes with the stream). An answer that
// fits in one record's content leaves as one plain data event, byte for byte as the engine sent it.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "rvenc/common/error.hpp"
#include "rvenc/enclave/engine.hpp"
#include "rvenc/protocol/json_answer.hpp"
#include "rvenc/protocol/shaping.hpp"

namespace rvenc::enclave {

class JsonAnswerRelay {
 public:
  // `sink` outlives the relay.
  explicit JsonAnswerRelay(const ChunkSink& sink) : sink_(sink), records_(protocol::kAnswerRecordBytes) {}

  // The answer's next bytes: checked, and sent in every record they fill. upstream_error when
  // they cannot be part of one JSON object, transport_error when the client is gone.
  [[nodiscard]] http::awaitable<Status> add(std::string_view bytes);
  // The answer ended: the rest is sent once the whole answer checked out; then its usage
  // (nullopt when it reports none).
  [[nodiscard]] http::awaitable<Result<std::optional<protocol::Usage>>> finish();

  JsonAnswerRelay(const JsonAnswerRelay&) = delete;
  JsonAnswerRelay& operator=(const JsonAnswerRelay&) = delete;
  ~JsonAnswerRelay();

 private:
  [[nodiscard]] http::awaitable<Status> send(std::string plaintext);
  // Sends every full record (`all`: every pending byte, the last record short).
  [[nodiscard]] http::awaitable<Status> send_records(bool all);

  const ChunkSink& sink_;
  protocol::JsonAnswerCheck check_;
  protocol::ShapedWriter records_;
  std::string held_;       // the answer while it fits in one record's content
  bool in_records_ = false;
};

}  // namespace rvenc::enclave
