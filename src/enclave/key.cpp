#include "rvenc/enclave/key.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include <sodium.h>
#include <spdlog/spdlog.h>

namespace rvenc::enclave {

namespace {

std::string errno_text() { return std::strerror(errno); }

// Closes a file descriptor on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

Status read_exact(int fd, std::span<std::uint8_t> out) {
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(Errc::internal_error, "short read");
    done += static_cast<std::size_t>(n);
  }
  return {};
}

Status write_exact(int fd, std::span<const std::uint8_t> in) {
  std::size_t done = 0;
  while (done < in.size()) {
    const ssize_t n = ::write(fd, in.data() + done, in.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(Errc::internal_error, errno_text());
    done += static_cast<std::size_t>(n);
  }
  return {};
}

Result<SeedFile> create_seed_file(const std::filesystem::path& path, std::string_view what) {
  Fd file{::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)};
  if (file.fd < 0)
    return fail(Errc::internal_error, "cannot create the " + std::string(what) + " " + path.string() + ": " + errno_text());
  SeedFile result;
  result.created = true;
  crypto::random_bytes(result.seed.span());
  if (auto ok = write_exact(file.fd, result.seed.span()); !ok || ::fsync(file.fd) != 0) {
    ::unlink(path.c_str());
    return fail(Errc::internal_error, "cannot write the " + std::string(what) + " " + path.string());
  }
  return result;
}

}  // namespace

Result<SeedFile> load_or_create_seed_file(const std::filesystem::path& path, std::string_view what) {
  const std::string name = std::string(what) + " " + path.string();
  Fd file{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)};
  if (file.fd < 0) {
    if (errno == ENOENT) return create_seed_file(path, what);
    return fail(Errc::internal_error, "cannot open the " + name + ": " + errno_text());
  }
  struct stat st {};
  if (::fstat(file.fd, &st) != 0) return fail(Errc::internal_error, "cannot stat the " + name + ": " + errno_text());
  if (!S_ISREG(st.st_mode)) return fail(Errc::invalid_request, "the " + name + " is not a regular file");
  // A key others can read (or replace) is not a secret of this enclave any more.
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
    return fail(Errc::invalid_request,
                "the " + name + " is accessible to group or others; restrict it with chmod 600");
  if (st.st_size != static_cast<off_t>(kSeedFileBytes))
    return fail(Errc::invalid_request, "the " + name + " must hold exactly " + std::to_string(kSeedFileBytes) +
                                           " raw bytes, it holds " + std::to_string(st.st_size));
  SeedFile result;
  if (auto ok = read_exact(file.fd, result.seed.span()); !ok)
    return fail(Errc::internal_error, "cannot read the " + name);
  return result;
}

void lock_memory(void* data, std::size_t size) noexcept {
  static std::atomic<bool> warned{false};
  if (sodium_mlock(data, size) != 0 && !warned.exchange(true))
    spdlog::warn("cannot lock key memory (mlock: {}); secrets may be swapped out. Raise RLIMIT_MEMLOCK to avoid this",
                 std::strerror(errno));
}

void unlock_memory(void* data, std::size_t size) noexcept { sodium_munlock(data, size); }

// --- SharedSecretCache -----------------------------------------------------------------------

SharedSecretCache::SharedSecretCache(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

std::optional<crypto::SharedSecret> SharedSecretCache::find(const crypto::Sha256Digest& digest) {
  std::lock_guard lock(mutex_);
  const auto it = index_.find(digest);
  if (it == index_.end()) return std::nullopt;
  order_.splice(order_.begin(), order_, it->second);
  return it->second->second;
}

void SharedSecretCache::insert(const crypto::Sha256Digest& digest, const crypto::SharedSecret& secret) {
  std::lock_guard lock(mutex_);
  if (const auto it = index_.find(digest); it != index_.end()) {
    it->second->second = secret;
    order_.splice(order_.begin(), order_, it->second);
    return;
  }
  order_.emplace_front(digest, secret);
  index_.emplace(digest, order_.begin());
  if (order_.size() > capacity_) {
    index_.erase(order_.back().first);
    order_.pop_back();  // the Secret wipes itself
  }
}

std::size_t SharedSecretCache::size() const {
  std::lock_guard lock(mutex_);
  return order_.size();
}

// --- EnclaveKey --------------------------------------------------------------------------------

EnclaveKey::EnclaveKey(const crypto::XWingSeed& seed, std::int64_t not_after, std::size_t cache_entries)
    : pair_(crypto::xwing_keypair_from_seed(seed)), not_after_(not_after), cache_(cache_entries) {
  lock_memory(pair_.seed.data(), pair_.seed.size());
  key_id_ = crypto::key_id(pair_.public_key);
}

EnclaveKey::~EnclaveKey() { unlock_memory(pair_.seed.data(), pair_.seed.size()); }

Result<crypto::SharedSecret> EnclaveKey::decapsulate(const crypto::XWingCipherText& cipher_text) {
  const auto digest = crypto::sha256(cipher_text);
  if (auto cached = cache_.find(digest)) return std::move(*cached);
  auto secret = crypto::xwing_decapsulate(cipher_text, pair_.seed);
  if (!secret) return secret;
  cache_.insert(digest, *secret);
  return secret;
}

}  // namespace rvenc::enclave
