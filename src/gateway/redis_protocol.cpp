#include "rvenc/gateway/redis_protocol.hpp"

#include <hiredis/hiredis.h>

#include <new>

namespace rvenc::gateway {
namespace {

struct FreeReply {
  void operator()(redisReply* reply) const noexcept { freeReplyObject(reply); }
};
using ReplyPtr = std::unique_ptr<redisReply, FreeReply>;

struct FreeCommand {
  void operator()(char* command) const noexcept { redisFreeCommand(command); }
};

std::string mib_text(std::size_t bytes) { return std::to_string(bytes / (1024 * 1024)) + " MiB"; }

RedisValue convert(const redisReply& reply) {
  RedisValue value;
  switch (reply.type) {
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
    case REDIS_REPLY_STRING:
      value.type = reply.type == REDIS_REPLY_STATUS  ? RedisValue::Type::simple
                   : reply.type == REDIS_REPLY_ERROR ? RedisValue::Type::error
                                                     : RedisValue::Type::bulk;
      value.text.assign(reply.str, reply.len);
      break;
    case REDIS_REPLY_INTEGER:
      value.type = RedisValue::Type::integer;
      value.integer = reply.integer;
      break;
    case REDIS_REPLY_ARRAY:
      value.type = RedisValue::Type::array;
      value.elements.reserve(reply.elements);
      for (std::size_t i = 0; i < reply.elements; ++i) value.elements.push_back(convert(*reply.element[i]));
      break;
    default:  // REDIS_REPLY_NIL (RESP2 has no other type)
      value.type = RedisValue::Type::nil;
      break;
  }
  return value;
}

}  // namespace

bool RedisValue::is_error(std::string_view prefix) const noexcept {
  if (type != Type::error || !text.starts_with(prefix)) return false;
  return text.size() == prefix.size() || text[prefix.size()] == ' ';
}

Result<std::string> encode_redis_command(const std::vector<std::string>& args) {
  std::size_t total = 0;
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
  argv.reserve(args.size());
  lengths.reserve(args.size());
  for (const auto& arg : args) {
    total += arg.size() + 32;  // + framing
    argv.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  if (total > kMaxRedisCommandBytes)
    return fail(Errc::invalid_request, "redis command larger than " + mib_text(kMaxRedisCommandBytes));
  char* raw = nullptr;
  const int size = redisFormatCommandArgv(&raw, static_cast<int>(args.size()), argv.data(), lengths.data());
  const std::unique_ptr<char, FreeCommand> command(raw);
  if (size < 0 || !command) return fail(Errc::internal_error, "cannot format a redis command (out of memory)");
  return std::string(command.get(), static_cast<std::size_t>(size));
}

// ---- RedisReplyReader -------------------------------------------------------------------------

namespace {

// hiredis's own reply functions, with the array allocation bounded (0.14 allocates whatever
// count the server announces).
const redisReplyObjectFunctions* bounded_functions() {
  static const redisReplyObjectFunctions functions = [] {
    redisReader* probe = redisReaderCreate();
    if (probe == nullptr) throw std::bad_alloc();
    redisReplyObjectFunctions copy = *probe->fn;
    redisReaderFree(probe);
    return copy;
  }();
  static const auto create_array = functions.createArray;
  static const redisReplyObjectFunctions bounded = [] {
    redisReplyObjectFunctions copy = functions;
    copy.createArray = [](const redisReadTask* task, int elements) -> void* {
      if (elements > 0 && static_cast<std::size_t>(elements) > kMaxRedisArrayElements) {
        *static_cast<std::size_t*>(task->privdata) = static_cast<std::size_t>(elements);
        return nullptr;  // hiredis then fails the reader
      }
      return create_array(task, elements);
    };
    return copy;
  }();
  return &bounded;
}

}  // namespace

void RedisReplyReader::Free::operator()(redisReader* reader) const noexcept { redisReaderFree(reader); }

RedisReplyReader::RedisReplyReader()
    : refused_elements_(std::make_unique<std::size_t>(0)),
      reader_(redisReaderCreateWithFunctions(const_cast<redisReplyObjectFunctions*>(bounded_functions()))) {
  if (!reader_) throw std::bad_alloc();
  reader_->privdata = refused_elements_.get();
}

RedisReplyReader::~RedisReplyReader() = default;

std::size_t RedisReplyReader::buffered() const noexcept { return reader_->len - reader_->pos; }

Status RedisReplyReader::feed(std::string_view bytes) {
  if (failed_) return std::unexpected(*failed_);
  if (bytes.size() > kMaxRedisReplyBytes || buffered() > kMaxRedisReplyBytes - bytes.size()) {
    failed_ = Error{Errc::upstream_error, "redis reply larger than " + mib_text(kMaxRedisReplyBytes)};
    return std::unexpected(*failed_);
  }
  if (redisReaderFeed(reader_.get(), bytes.data(), bytes.size()) != REDIS_OK) {
    failed_ = Error{Errc::upstream_error, "cannot buffer a redis reply (out of memory)"};
    return std::unexpected(*failed_);
  }
  return {};
}

Result<std::optional<RedisValue>> RedisReplyReader::next() {
  if (failed_) return std::unexpected(*failed_);
  void* raw = nullptr;
  const int status = redisReaderGetReply(reader_.get(), &raw);
  const ReplyPtr reply(static_cast<redisReply*>(raw));
  if (status != REDIS_OK) {
    std::string reason = *refused_elements_ != 0
                             ? "array of " + std::to_string(*refused_elements_) + " elements (limit " +
                                   std::to_string(kMaxRedisArrayElements) + ")"
                             : std::string(reader_->errstr);
    failed_ = Error{Errc::upstream_error, "invalid redis reply: " + reason};
    return std::unexpected(*failed_);
  }
  if (!reply) return std::optional<RedisValue>();
  return std::optional<RedisValue>(convert(*reply));
}

}  // namespace rvenc::gateway
