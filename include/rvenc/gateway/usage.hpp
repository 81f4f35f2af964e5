// Usage accounting: every authenticated request leaves exactly one usage row.
//
// Design: a UsageRecord is created when a request is authenticated and submits its row when it
// is destroyed (normal end, refusal, client gone mid-stream, exception), so no path can skip or
// repeat it. The UsageRecorder writes rows on its own thread in batches, so SQLite (fsyncs, lock
// waits) never blocks the event loop.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "rvenc/gateway/key_store.hpp"

namespace rvenc::gateway {

inline constexpr std::chrono::milliseconds kUsageFlushInterval{200};
// A batch is written early when this many rows wait: large enough that at ~10k requests/s the
// flush interval, not the row count, paces the commits (each rewrites the index's last pages).
inline constexpr std::size_t kUsageBatchRows = 4096;
// Niceness of the writer thread: still a fair share (~10 % of a busy core's weight) when the
// machine is saturated, far more than the writer needs (a few µs per row).
inline constexpr int kUsageThreadNice = 10;

class UsageRecorder {
 public:
  explicit UsageRecorder(KeyStore store, std::chrono::milliseconds flush_interval = kUsageFlushInterval);
  ~UsageRecorder();  // writes what is queued, then stops the thread
  UsageRecorder(const UsageRecorder&) = delete;
  UsageRecorder& operator=(const UsageRecorder&) = delete;

  void submit(UsageRow row);
  // Blocks until every row submitted before the call is written (or failed and was logged).
  void flush();
  [[nodiscard]] std::uint64_t rows_written() const;

 private:
  void run();

  KeyStore store_;
  std::chrono::milliseconds flush_interval_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<UsageRow> queue_;
  std::uint64_t submitted_ = 0;
  std::uint64_t handled_ = 0;
  std::uint64_t written_ = 0;
  std::size_t flush_waiters_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

// One request's row, submitted exactly once when the record is destroyed.
class UsageRecord {
 public:
  UsageRecord(UsageRecorder& recorder, UsageRow row) : recorder_(&recorder), row_(std::move(row)) {}
  UsageRecord(UsageRecord&& other) noexcept : recorder_(std::exchange(other.recorder_, nullptr)), row_(std::move(other.row_)) {}
  UsageRecord& operator=(UsageRecord&&) = delete;
  UsageRecord(const UsageRecord&) = delete;
  UsageRecord& operator=(const UsageRecord&) = delete;
  ~UsageRecord();

  [[nodiscard]] UsageRow& row() noexcept { return row_; }

 private:
  UsageRecorder* recorder_;
  UsageRow row_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace rvenc::gateway
