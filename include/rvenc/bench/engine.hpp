// The benchmark's model engine: an OpenAI-style streaming server (POST /v1/chat/completions) that
// answers every request with `max_tokens` chat.completion.chunk events and usage in the last one
// (and POST /v1/embeddings with one pre-rendered list of kEngineEmbeddingBatch vectors, or of one),
// either as fast as the socket takes them or at a set token rate per stream. It runs in-process on
// its own io_context thread(s) (rvenc_http Server), so its pace can change between phases.
//
// Design: chunks are small pre-rendered strings (the engine must cost next to nothing: what is
// measured is the path in front of it). `hold` keeps every stream open after its first chunk until
// released, for the memory-per-open-stream measurement.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "rvenc/common/error.hpp"
#include "rvenc/http/server.hpp"

namespace rvenc::bench {

inline constexpr std::size_t kDefaultEngineChunks = 16;   // when the request names no max_tokens
inline constexpr std::size_t kMaxEngineChunks = 100'000;  // larger max_tokens are clamped
inline constexpr std::size_t kEngineMaxConnections = 8192;
// POST /v1/embeddings answers a batch of this many vectors of this length, whatever it is asked
// (rvenc bench's embeddings phase sends batches of that size), but for a request with
// "dimensions": 1, which gets one vector of one number (the phase's floor: the same calls with an
// answer too small to cost anything).
inline constexpr std::size_t kEngineEmbeddingBatch = 16;
inline constexpr std::size_t kEngineEmbeddingDimensions = 384;

struct EngineOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  unsigned threads = 1;
};

class FastEngine {
 public:
  [[nodiscard]] static Result<std::unique_ptr<FastEngine>> start(EngineOptions options = {});
  ~FastEngine();
  FastEngine(const FastEngine&) = delete;
  FastEngine& operator=(const FastEngine&) = delete;

  // "http://127.0.0.1:PORT" (the OpenAI base URL is url() + "/v1").
  [[nodiscard]] std::string url() const;
  // Tokens per second per stream; 0 = as fast as possible.
  void set_rate(unsigned tokens_per_second) noexcept { rate_.store(tokens_per_second); }
  // While true, streams stop after their first chunk and wait (checked every few ms).
  void set_hold(bool hold) noexcept { hold_.store(hold); }
  [[nodiscard]] std::uint64_t requests() const noexcept { return requests_.load(); }

  // The SSE line of chunk `index` of `total` ("data: {...}\n\n"); the last one carries
  // finish_reason "stop" and usage. Public for tests.
  [[nodiscard]] static std::string render_chunk(std::size_t index, std::size_t total);
  // The embeddings answer: an OpenAI `list` of kEngineEmbeddingBatch float vectors. Public for tests.
  [[nodiscard]] static const std::string& embeddings_answer();
  // The answer to a request with "dimensions": 1: one vector of one number. Public for tests.
  [[nodiscard]] static const std::string& tiny_embeddings_answer();

 private:
  FastEngine() = default;
  http::awaitable<void> serve(http::Request& request, http::ResponseWriter& writer);
  http::awaitable<void> serve_embeddings(http::Request& request, http::ResponseWriter& writer);

  std::unique_ptr<http::Server> server_;
  std::atomic<unsigned> rate_{0};
  std::atomic<bool> hold_{false};
  std::atomic<std::uint64_t> requests_{0};
};

}  // namespace rvenc::bench
