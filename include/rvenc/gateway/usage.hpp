// Usage accounting: every authenticated request leaves exactly one usage row.
//
// Design: a UsageRecord is created when a request is authenticated and submits its row when it
// is destroyed (normal end, refusal, client gone mid-stream, exception), so no path can skip or
// repeat it. The UsageRecorder writes rows on its own thread in batches, so SQLite (fsyncs, lock
// waits) never blocks the event loop.
//
// A row waits up to a flush interval for its batch. So that a gateway killed meanwhile (crash,
// kill -9) loses none, each row is first appended to a journal file beside the database, mapped
// into memory (MAP_SHARED): a copy into the kernel's page cache, which outlives the process, with
// no system call per request. A batch's journal is removed once SQLite has its rows; the next
// gateway on the database replays the journals left behind (rows are keyed by request id, so a
// row already written is not written twice). Each journal is locked (flock) by its gateway, so
// gateways sharing a database replay only dead ones.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
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
// Rows a store refused (PostgreSQL down) are held and tried again each flush interval, up to this
// many; beyond, they are left to their journals, which the next gateway on the store replays.
inline constexpr std::size_t kUsageRetryRows = 1'000'000;
// Journals of refused batches held open (one per flush interval of an outage) beyond which their
// rows are copied into one journal and the others removed: an outage cannot exhaust descriptors.
inline constexpr std::size_t kUsageHeldJournals = 64;

namespace detail {
// Initial size of a journal file; it doubles when full (a batch is ~200 ms of rows, ~250 bytes each).
inline constexpr std::size_t kJournalInitialBytes = 256 * 1024;

// One journal file, created and locked (flock) for this process, removed when dropped. Its blocks
// are allocated up front (fallocate), so a full disk fails an append instead of faulting (SIGBUS);
// the file's unused tail is zeros.
class UsageJournal {
 public:
  // A new journal beside `database` ("<database>.usage-<random>.journal").
  [[nodiscard]] static Result<UsageJournal> create(const std::filesystem::path& database);
  UsageJournal(UsageJournal&& other) noexcept;
  UsageJournal& operator=(UsageJournal&& other) noexcept;
  ~UsageJournal();  // closes the file (and its lock), keeping it on disk
  UsageJournal(const UsageJournal&) = delete;
  UsageJournal& operator=(const UsageJournal&) = delete;

  [[nodiscard]] Status append(const UsageRow& row);
  // Deletes the file: its rows are in the database.
  void remove();

 private:
  UsageJournal(int fd, std::filesystem::path path) noexcept : fd_(fd), path_(std::move(path)) {}
  // Makes room for `bytes` more: allocates and maps a larger file.
  [[nodiscard]] Status reserve(std::size_t bytes);
  void unmap() noexcept;

  int fd_ = -1;
  std::filesystem::path path_;
  char* mapped_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t used_ = 0;
};

// The rows of the journals beside `database` that no live process holds, written to `store`;
// the journals are deleted once their rows are in. Returns how many rows were replayed.
[[nodiscard]] Result<std::size_t> replay_usage_journals(KeyStore& store, const std::filesystem::path& database);
}  // namespace detail

class UsageRecorder {
 public:
  // Replays the journals of gateways that died on this store first (journals live at the store's
  // journal_base(); a SQLite database without a file, ":memory:" in tests, gets none).
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
  // A journal for the rows to come, made at start and for each batch (nullopt, logged, when it
  // cannot be made; nullopt for a database without a file).
  [[nodiscard]] std::optional<detail::UsageJournal> new_journal() const;
  // Writes the rows held from refused batches and `batch`; their journals are removed once the
  // store has them. How many rows were written (the writer thread only).
  [[nodiscard]] std::size_t write_batch(std::vector<UsageRow> batch, std::optional<detail::UsageJournal> journal);
  // Copies the refused rows into one new journal and removes the journals that held them.
  void merge_retry_journals();

  KeyStore store_;
  std::filesystem::path database_;
  std::optional<detail::UsageJournal> journal_;  // guarded by mutex_
  std::chrono::milliseconds flush_interval_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<UsageRow> queue_;
  // The writer thread's own: rows the store refused, and the journals that hold them.
  std::vector<UsageRow> retry_rows_;
  std::vector<detail::UsageJournal> retry_journals_;
  bool refused_ = false;  // the last write failed (logged once per outage)
  std::uint64_t submitted_ = 0;
  std::uint64_t handled_ = 0;
  std::uint64_t written_ = 0;
  std::size_t flush_waiters_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

// One request's row, submitted exactly once when the record is destroyed (after, for a stream, a
// provisional row the final one replaces in the database).
class UsageRecord {
 public:
  UsageRecord(UsageRecorder& recorder, UsageRow row) : recorder_(&recorder), row_(std::move(row)) {}
  UsageRecord(UsageRecord&& other) noexcept : recorder_(std::exchange(other.recorder_, nullptr)), row_(std::move(other.row_)) {}
  UsageRecord& operator=(UsageRecord&&) = delete;
  UsageRecord(const UsageRecord&) = delete;
  UsageRecord& operator=(const UsageRecord&) = delete;
  ~UsageRecord();  // submits the row, unless submit() did

  [[nodiscard]] UsageRow& row() noexcept { return row_; }
  // Submits the row now (journaled before this returns); later changes to row() are not recorded.
  void submit();
  // Submits a copy of the row now, marked provisional (journaled before this returns): what the
  // request is charged if the gateway dies before the final row, which replaces it.
  void submit_provisional();

 private:
  // Submits `row` with the time since the record was made (errors are logged).
  void send(UsageRecorder& recorder, UsageRow row) const;

  UsageRecorder* recorder_;
  UsageRow row_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace rvenc::gateway
