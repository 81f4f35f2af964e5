// The Redis wire format (RESP2) for the gateway's Redis client, on hiredis: commands are formatted
// by redisFormatCommandArgv and replies parsed by hiredis's redisReader.
//
// Design: hiredis stays behind this header (its objects are owned by RAII types in the .cpp), so
// the client and its tests see only RedisValue. hiredis 0.14 (Debian 12) has no maxbulk /
// maxelements settings, so the reader bounds a hostile server itself: the bytes it buffers for one
// unfinished reply (kMaxRedisReplyBytes, checked before they are handed to hiredis) and the element
// count of every array (kMaxRedisArrayElements, checked before hiredis allocates the array).
// hiredis limits nesting (7 levels below the top reply). Any violation is an upstream_error and
// leaves the reader failed: the caller drops the connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rvenc/common/error.hpp"

struct redisReader;  // hiredis

namespace rvenc::gateway {

// Largest reply (all its bytes, framing included) accepted from the server (ours are tiny).
inline constexpr std::size_t kMaxRedisReplyBytes = 16u * 1024 * 1024;
inline constexpr std::size_t kMaxRedisArrayElements = 1u << 20;
// Largest command we send (Redis itself refuses arguments over 512 MiB).
inline constexpr std::size_t kMaxRedisCommandBytes = 64u * 1024 * 1024;

// One RESP2 value.
struct RedisValue {
  enum class Type { simple, error, integer, bulk, nil, array };
  Type type = Type::nil;
  std::string text;  // simple, error, bulk
  std::int64_t integer = 0;
  std::vector<RedisValue> elements;  // array

  [[nodiscard]] bool is_error() const noexcept { return type == Type::error; }
  [[nodiscard]] bool is_nil() const noexcept { return type == Type::nil; }
  // An error reply whose first word is `prefix` ("NOSCRIPT", "ERR").
  [[nodiscard]] bool is_error(std::string_view prefix) const noexcept;
};

// The RESP2 encoding of a command (an array of bulk strings). invalid_request when the command is
// larger than kMaxRedisCommandBytes, internal_error when hiredis cannot allocate it.
[[nodiscard]] Result<std::string> encode_redis_command(const std::vector<std::string>& args);

// Incremental reply parser over one connection's byte stream.
class RedisReplyReader {
 public:
  RedisReplyReader();  // throws std::bad_alloc when hiredis cannot allocate its reader
  ~RedisReplyReader();
  RedisReplyReader(const RedisReplyReader&) = delete;
  RedisReplyReader& operator=(const RedisReplyReader&) = delete;

  // Appends received bytes. upstream_error when the unfinished reply would exceed
  // kMaxRedisReplyBytes (the bytes are not kept) or the reader has failed before.
  [[nodiscard]] Status feed(std::string_view bytes);
  // The next whole reply; nullopt when more bytes are needed; upstream_error (naming the problem)
  // when the input is not RESP2 or exceeds the limits.
  [[nodiscard]] Result<std::optional<RedisValue>> next();
  // Bytes received and not yet consumed by next().
  [[nodiscard]] std::size_t buffered() const noexcept;

 private:
  struct Free {
    void operator()(redisReader* reader) const noexcept;
  };
  // The element count of an array refused by the bound (0: none); hiredis's privdata points here.
  std::unique_ptr<std::size_t> refused_elements_;
  std::unique_ptr<redisReader, Free> reader_;
  std::optional<Error> failed_;
};

}  // namespace rvenc::gateway
