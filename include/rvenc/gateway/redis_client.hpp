// A small asynchronous Redis client (RESP2 over TCP) for the state several gateways share: rate
// limit buckets (RedisClient) and key revocations (RedisSubscriber, pub/sub).
//
// Design: each client owns one TCP connection served by its own io_context thread, so its
// lifetime does not depend on the caller's event loop. command() may be awaited from any
// executor; commands from concurrent callers are pipelined on the connection and their replies
// matched in order. Every call is bounded: connecting by connect_timeout, every command by
// command_timeout (a command without a reply in time closes the connection, which fails the
// others waiting on it). A lost connection is reopened by the next command; failed connection
// attempts back off exponentially (between attempts commands fail at once, so an unreachable
// Redis never makes callers wait). Redis error replies ("-ERR ...") are values, not failures;
// failures are rvenc errors: upstream_error (unreachable, broken, protocol) or upstream_timeout.
// The sockets and coroutines are Asio's; hiredis only formats commands and parses replies
// (redis_protocol.hpp), so no second event loop and no blocking call enters the gateway.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "rvenc/common/error.hpp"
#include "rvenc/gateway/redis_protocol.hpp"

namespace rvenc::gateway {

inline constexpr std::uint16_t kDefaultRedisPort = 6379;
inline constexpr std::chrono::milliseconds kRedisConnectTimeout{1'000};
inline constexpr std::chrono::milliseconds kRedisCommandTimeout{1'000};
inline constexpr std::chrono::milliseconds kRedisBackoffMin{100};
inline constexpr std::chrono::milliseconds kRedisBackoffMax{2'000};
inline constexpr int kMaxRedisDb = 1'000'000;

// redis://HOST[:PORT][/DB]
struct RedisUrl {
  std::string host;
  std::uint16_t port = kDefaultRedisPort;
  int db = 0;
  // "redis://host:port/db" (brackets around IPv6 literals).
  [[nodiscard]] std::string to_string() const;
};

// Errors (invalid_request, naming the problem): another scheme, user info (passwords are not
// supported), missing host, bad port, a path that is not a database number.
[[nodiscard]] Result<RedisUrl> parse_redis_url(std::string_view text);

struct RedisOptions {
  RedisUrl url;
  std::chrono::milliseconds connect_timeout = kRedisConnectTimeout;
  std::chrono::milliseconds command_timeout = kRedisCommandTimeout;
  std::chrono::milliseconds backoff_min = kRedisBackoffMin;
  std::chrono::milliseconds backoff_max = kRedisBackoffMax;
};

class RedisClient {
 public:
  // Starts the client's thread; connects lazily (on the first command).
  explicit RedisClient(RedisOptions options);
  ~RedisClient();  // closes the connection and joins the thread (pending callers are abandoned)
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Sends one command and waits for its reply. Safe to await from any executor and thread.
  boost::asio::awaitable<Result<RedisValue>> command(std::vector<std::string> args);
  // Same, blocking the calling thread (never call it from the client's own thread).
  [[nodiscard]] Result<RedisValue> command_sync(std::vector<std::string> args);

  [[nodiscard]] const RedisOptions& options() const noexcept;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// A SUBSCRIBE connection on one channel, kept open: reconnects with backoff after any failure
// and pings the server to notice a silently dead connection. Callbacks run on its own thread.
class RedisSubscriber {
 public:
  struct Callbacks {
    // Each message published on the channel.
    std::function<void(const std::string& payload)> on_message;
    // After every (re)subscription: messages published while disconnected were missed.
    std::function<void()> on_subscribed;
  };

  RedisSubscriber(RedisOptions options, std::string channel, Callbacks callbacks);
  ~RedisSubscriber();  // stops and joins
  RedisSubscriber(const RedisSubscriber&) = delete;
  RedisSubscriber& operator=(const RedisSubscriber&) = delete;

  [[nodiscard]] bool subscribed() const noexcept;
  // Blocks until subscribed or `timeout` passes; returns subscribed().
  bool wait_subscribed(std::chrono::milliseconds timeout);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace rvenc::gateway
