#include "rvenc/gateway/usage.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <utility>

#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include "rvenc/common/hex.hpp"
#include "rvenc/crypto/crypto.hpp"

namespace rvenc::gateway {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace detail {
namespace {
constexpr std::string_view kJournalInfix = ".usage-";
constexpr std::string_view kJournalSuffix = ".journal";
constexpr std::size_t kJournalNameRandomBytes = 8;
// Creating a journal is retried under a fresh name when another gateway's replay took the new
// file before this one locked it (or, all but never, when the random name exists).
constexpr int kJournalCreateAttempts = 8;
// A journal holds about one flush interval of rows: far below this, unless it is not ours.
constexpr std::size_t kMaxJournalBytes = 256 * 1024 * 1024;

std::string errno_text() { return std::strerror(errno); }

std::string journal_line(const UsageRow& row) {
  std::string line = json::serialize(to_json(row));
  line += '\n';
  return line;
}

std::optional<UsageRow> parse_journal_line(std::string_view line) {
  boost::system::error_code ec;
  const json::value value = json::parse(line, ec);
  if (ec) return std::nullopt;
  return usage_row_from_json(value);
}

fs::path directory_of(const fs::path& database) {
  return database.has_parent_path() ? database.parent_path() : fs::path(".");
}

bool is_journal_of(const fs::path& database, const fs::path& candidate) {
  const std::string name = candidate.filename().string();
  const std::string prefix = database.filename().string() + std::string(kJournalInfix);
  return name.size() > prefix.size() + kJournalSuffix.size() && name.starts_with(prefix) &&
         name.ends_with(kJournalSuffix);
}

// The whole file, or nullopt when it cannot be read or is larger than a journal can be.
std::optional<std::string> read_whole(int fd) {
  std::string content;
  char buffer[64 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) return content;
    content.append(buffer, static_cast<std::size_t>(n));
    if (content.size() > kMaxJournalBytes) return std::nullopt;
  }
}
}  // namespace

Result<UsageJournal> UsageJournal::create(const fs::path& database) {
  for (int attempt = 0; attempt < kJournalCreateAttempts; ++attempt) {
    fs::path path = directory_of(database) /
                    (database.filename().string() + std::string(kJournalInfix) +
                     to_hex(crypto::random_array<kJournalNameRandomBytes>()) + std::string(kJournalSuffix));
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) continue;
    if (fd < 0) return fail(Errc::internal_error, "cannot create the usage journal " + path.string() + ": " + errno_text());
    // Another gateway's replay may have found the new file before this lock: it then removes it.
    struct stat status {};
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0 || ::fstat(fd, &status) != 0 || status.st_nlink == 0) {
      ::close(fd);
      continue;
    }
    UsageJournal journal(fd, std::move(path));
    if (auto ok = journal.reserve(0); !ok) {
      journal.remove();
      return std::unexpected(ok.error());
    }
    return journal;
  }
  return fail(Errc::internal_error, "cannot create a usage journal beside " + database.string());
}

UsageJournal::UsageJournal(UsageJournal&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      path_(std::move(other.path_)),
      mapped_(std::exchange(other.mapped_, nullptr)),
      capacity_(std::exchange(other.capacity_, 0)),
      used_(std::exchange(other.used_, 0)) {}

UsageJournal& UsageJournal::operator=(UsageJournal&& other) noexcept {
  if (this != &other) {
    unmap();
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
    mapped_ = std::exchange(other.mapped_, nullptr);
    capacity_ = std::exchange(other.capacity_, 0);
    used_ = std::exchange(other.used_, 0);
  }
  return *this;
}

UsageJournal::~UsageJournal() {
  unmap();
  if (fd_ >= 0) ::close(fd_);
}

void UsageJournal::unmap() noexcept {
  if (mapped_) ::munmap(mapped_, capacity_);
  mapped_ = nullptr;
  capacity_ = 0;
}

Status UsageJournal::reserve(std::size_t bytes) {
  if (mapped_ && used_ + bytes <= capacity_) return {};
  std::size_t capacity = std::max(capacity_, kJournalInitialBytes);
  while (capacity < used_ + bytes) capacity *= 2;
  if (capacity > kMaxJournalBytes)
    return fail(Errc::internal_error, "the usage journal " + path_.string() + " is full");
  // posix_fallocate returns the error instead of setting errno.
  if (const int rc = ::posix_fallocate(fd_, 0, static_cast<off_t>(capacity)); rc != 0)
    return fail(Errc::internal_error,
                "cannot allocate the usage journal " + path_.string() + ": " + std::strerror(rc));
  void* mapped = mapped_ ? ::mremap(mapped_, capacity_, capacity, MREMAP_MAYMOVE)
                         : ::mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (mapped == MAP_FAILED)
    return fail(Errc::internal_error, "cannot map the usage journal " + path_.string() + ": " + errno_text());
  mapped_ = static_cast<char*>(mapped);
  capacity_ = capacity;
  return {};
}

Status UsageJournal::append(const UsageRow& row) {
  const std::string line = journal_line(row);
  if (auto ok = reserve(line.size()); !ok) return ok;
  char* at = mapped_ + used_;
  std::memcpy(at, line.data(), line.size() - 1);
  // The newline last, so a process killed mid-copy leaves a line without one (skipped by the
  // replay), never a whole-looking line with missing bytes.
  std::atomic_signal_fence(std::memory_order_release);
  at[line.size() - 1] = '\n';
  used_ += line.size();
  return {};
}

void UsageJournal::remove() {
  if (fd_ < 0) return;
  if (::unlink(path_.c_str()) != 0) spdlog::warn("usage: cannot remove the journal {}: {}", path_.string(), errno_text());
  unmap();
  ::close(std::exchange(fd_, -1));
}

Result<std::size_t> replay_usage_journals(KeyStore& store, const fs::path& database) {
  std::error_code ec;
  std::vector<fs::path> found;
  for (const auto& entry : fs::directory_iterator(directory_of(database), ec))
    if (is_journal_of(database, entry.path())) found.push_back(entry.path());
  if (ec) return fail(Errc::internal_error, "cannot list " + directory_of(database).string() + ": " + ec.message());

  std::size_t replayed = 0;
  for (const auto& path : found) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;  // removed meanwhile by another gateway's replay
    // Locked: a live gateway's.
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);
      continue;
    }
    const auto content = read_whole(fd);
    if (!content) {
      ::close(fd);
      spdlog::error("usage: cannot read the journal {}; it is left in place", path.string());
      continue;
    }
    std::vector<UsageRow> rows;
    std::size_t unreadable = 0;
    // Past the last row: the file's unused zeros, after a cut line if the gateway died mid-copy.
    std::string_view rows_text = *content;
    const auto tail = rows_text.find_last_not_of('\0');
    rows_text = rows_text.substr(0, tail == std::string_view::npos ? 0 : tail + 1);
    for (std::string_view rest = rows_text; !rest.empty();) {
      const auto end = rest.find('\n');
      const std::string_view line = rest.substr(0, end);
      rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
      if (line.empty()) continue;
      if (auto row = parse_journal_line(line)) rows.push_back(std::move(*row));
      else ++unreadable;
    }
    if (unreadable > 0) spdlog::warn("usage: {} unreadable lines in the journal {} skipped", unreadable, path.string());
    if (!rows.empty()) {
      if (auto ok = store.record_usage(rows); !ok) {
        ::close(fd);
        return fail(Errc::internal_error,
                    "cannot write the rows of the journal " + path.string() + ": " + ok.error().message);
      }
    }
    ::unlink(path.c_str());
    ::close(fd);
    replayed += rows.size();
  }
  return replayed;
}
}  // namespace detail

UsageRecorder::UsageRecorder(KeyStore store, std::chrono::milliseconds flush_interval)
    : store_(std::move(store)), database_(store_.journal_base()), flush_interval_(flush_interval) {
  if (!database_.empty()) {
    if (auto replayed = detail::replay_usage_journals(store_, database_); !replayed) {
      spdlog::error("usage: {}", replayed.error().to_string());
    } else if (*replayed > 0) {
      spdlog::warn("usage: {} rows recovered from the journals of a gateway that stopped before writing them",
                   *replayed);
    }
    journal_ = new_journal();
  }
  thread_ = std::thread([this] { run(); });
}

std::optional<detail::UsageJournal> UsageRecorder::new_journal() const {
  if (database_.empty()) return std::nullopt;
  auto journal = detail::UsageJournal::create(database_);
  if (!journal) {
    spdlog::error("usage: {}; rows wait in memory only until written", journal.error().to_string());
    return std::nullopt;
  }
  return std::move(*journal);
}

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
    if (journal_) {
      if (auto ok = journal_->append(row); !ok) {
        spdlog::error("usage: {}; rows wait in memory only until written", ok.error().to_string());
        journal_.reset();
      }
    }
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
    if (queue_.empty() && !retry_rows_.empty() && !stopping_) {
      // Only refused rows wait: try them again, without a new journal.
      lock.unlock();
      const std::size_t written = write_batch({}, std::nullopt);
      lock.lock();
      written_ += written;
      continue;
    }
    if (queue_.empty()) {
      if (!stopping_) continue;
      // Nothing waits, so the current journal holds nothing unwritten (the rows the store
      // refused stay in their journals, for the next gateway's replay).
      if (journal_) journal_->remove();
      return;
    }
    // The rows that come after this batch go to a journal of their own, made without the lock.
    lock.unlock();
    std::optional<detail::UsageJournal> next_journal = new_journal();
    lock.lock();
    // Taken by a swap: the request threads must never wait on this thread while it holds the lock.
    std::vector<UsageRow> batch;
    batch.swap(queue_);
    std::optional<detail::UsageJournal> batch_journal = std::exchange(journal_, std::move(next_journal));
    lock.unlock();
    const std::size_t fresh = batch.size();
    const std::size_t written = write_batch(std::move(batch), std::move(batch_journal));
    lock.lock();
    handled_ += fresh;
    written_ += written;
    done_.notify_all();
  }
}

std::size_t UsageRecorder::write_batch(std::vector<UsageRow> batch, std::optional<detail::UsageJournal> journal) {
  // Rows of batches the store refused (PostgreSQL down) go first, with their journals.
  std::vector<UsageRow> rows = std::exchange(retry_rows_, {});
  rows.insert(rows.end(), std::make_move_iterator(batch.begin()), std::make_move_iterator(batch.end()));
  if (journal) retry_journals_.push_back(std::move(*journal));
  if (rows.empty()) return 0;
  if (auto ok = store_.record_usage(rows); ok) {
    for (auto& written : retry_journals_) written.remove();
    retry_journals_.clear();
    if (std::exchange(refused_, false)) spdlog::warn("usage: the store took the {} rows it had refused", rows.size());
    return rows.size();
  } else if (!std::exchange(refused_, true)) {
    // Once per outage: the retries every flush interval are not worth a line each.
    spdlog::error("usage: {} rows not recorded yet (kept and retried): {}", rows.size(), ok.error().to_string());
  }
  if (rows.size() <= kUsageRetryRows) {
    retry_rows_ = std::move(rows);  // tried again at the next flush interval
    if (retry_journals_.size() > kUsageHeldJournals) merge_retry_journals();
  } else {
    // Too many to hold: the journals keep them (closed, so the next gateway on the store replays them).
    spdlog::error("usage: {} unwritten rows left to their journals for the next gateway's replay", rows.size());
    retry_journals_.clear();
  }
  return 0;
}

void UsageRecorder::merge_retry_journals() {
  auto merged = new_journal();
  if (!merged) return;  // logged; the journals stay as they are
  for (const auto& row : retry_rows_) {
    if (auto ok = merged->append(row); !ok) {
      spdlog::error("usage: {}", ok.error().to_string());
      merged->remove();
      return;
    }
  }
  for (auto& old : retry_journals_) old.remove();
  retry_journals_.clear();
  retry_journals_.push_back(std::move(*merged));
}

UsageRecord::~UsageRecord() { submit(); }

void UsageRecord::submit_provisional() {
  if (!recorder_) return;
  UsageRow provisional = row_;
  provisional.final = false;
  send(*recorder_, std::move(provisional));
}

void UsageRecord::submit() {
  if (auto* recorder = std::exchange(recorder_, nullptr)) send(*recorder, std::move(row_));
}

void UsageRecord::send(UsageRecorder& recorder, UsageRow row) const {
  row.duration_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_).count();
  const std::string request_id = row.request_id;
  try {
    recorder.submit(std::move(row));
  } catch (const std::exception& e) {
    spdlog::error("usage: request {} not recorded: {}", request_id, e.what());
  }
}

}  // namespace rvenc::gateway
