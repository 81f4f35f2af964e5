// A real redis-server on a free 127.0.0.1 port for the Redis tests, which can be killed and
// restarted on the same port mid-test.
#pragma once

#include <chrono>
#include <csignal>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <gtest/gtest.h>

#include "rvenc/gateway/redis_client.hpp"
#include "support/test_support.hpp"

namespace rvenc::gateway::test {

class RedisServer {
 public:
  RedisServer() : port_(rvenc::test::free_port()) { start(); }

  // Starts it (again) and waits until it accepts connections.
  void start() {
    process_ = std::make_unique<rvenc::test::ChildProcess>(std::vector<std::string>{
        "redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"});
    ready_ = process_->wait_for_line("Ready to accept connections").has_value();
    EXPECT_TRUE(ready_) << process_->output();
  }
  // Kills it (no clean shutdown: like a crash).
  void kill() {
    if (process_) process_->stop(SIGKILL);
    process_.reset();
  }

  [[nodiscard]] bool ready() const { return ready_; }
  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] std::string url(int db = 0) const {
    return "redis://127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(db);
  }
  [[nodiscard]] RedisOptions options(int db = 0) const {
    RedisOptions options;
    options.url = RedisUrl{"127.0.0.1", static_cast<std::uint16_t>(port_), db};
    return options;
  }

 private:
  int port_;
  bool ready_ = false;
  std::unique_ptr<rvenc::test::ChildProcess> process_;
};

// Runs one coroutine to completion on a fresh io_context.
template <class T>
T run_sync(boost::asio::awaitable<T> task) {
  boost::asio::io_context context;
  auto future = boost::asio::co_spawn(context, std::move(task), boost::asio::use_future);
  context.run();
  return future.get();
}

// Polls `condition` until it holds or a generous deadline passes (never a timing assertion).
template <class F>
bool eventually(F condition, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return condition();
}

}  // namespace rvenc::gateway::test
