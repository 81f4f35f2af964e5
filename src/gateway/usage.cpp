#include "rvenc/gateway/usage.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

namespace rvenc::gateway {

UsageRecorder::UsageRecorder(KeyStore store, std::chrono::milliseconds flush_interval)
    : store_(std::move(store)), flush_interval_(flush_interval), thread_([this] { run(); }) {}

UsageRecorder::~UsageRecorder() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void UsageRecorder::submit(UsageRow row) {
  bool full = false;
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(row));
    ++submitted_;
    full = queue_.size() >= kUsageBatchRows;
  }
  if (full) wake_.notify_all();
}

void UsageRecorder::flush() {
  std::unique_lock lock(mutex_);
  const std::uint64_t target = submitted_;
  ++flush_waiters_;
  wake_.notify_all();
  done_.wait(lock, [&] { return handled_ >= target; });
  --flush_waiters_;
}

std::uint64_t UsageRecorder::rows_written() const {
  std::lock_guard lock(mutex_);
  return written_;
}

void UsageRecorder::run() {
  // Accounting is batched and never waits on a stream, but its SQLite commits and checkpoints
  // come in bursts of milliseconds of CPU: at a lower priority they fill idle time instead of
  // delaying the streams' threads (raising one's own niceness needs no privilege).
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kUsageThreadNice) != 0)
    spdlog::debug("usage: cannot lower the writer thread's priority: {}", std::strerror(errno));
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait_for(lock, flush_interval_, [&] { return stopping_ || queue_.size() >= kUsageBatchRows || (flush_waiters_ > 0 && !queue_.empty()); });
    if (queue_.empty()) {
      if (stopping_) return;
      continue;
    }
    // Taken by a swap: the request threads must never wait on this thread while it holds the lock.
    std::vector<UsageRow> batch;
    batch.swap(queue_);
    lock.unlock();
    auto ok = store_.record_usage(batch);
    if (!ok) spdlog::error("usage: {} rows not recorded: {}", batch.size(), ok.error().to_string());
    lock.lock();
    handled_ += batch.size();
    if (ok) written_ += batch.size();
    done_.notify_all();
  }
}

UsageRecord::~UsageRecord() {
  if (!recorder_) return;
  row_.duration_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_).count();
  try {
    recorder_->submit(std::move(row_));
  } catch (const std::exception& e) {
    spdlog::error("usage: request {} not recorded: {}", row_.request_id, e.what());
  }
}

}  // namespace rvenc::gateway
