#include "rvenc/enclave/key.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>

#include <sodium.h>
#include <spdlog/spdlog.h>

#include "rvenc/common/hex.hpp"

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

// The size of the open file `fd`, which must be a regular file only its owner may access.
Result<std::size_t> private_file_size(int fd, const std::string& name) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail(Errc::internal_error, "cannot stat the " + name + ": " + errno_text());
  if (!S_ISREG(st.st_mode)) return fail(Errc::invalid_request, "the " + name + " is not a regular file");
  // A key others can read (or replace) is not a secret of this enclave any more.
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
    return fail(Errc::invalid_request,
                "the " + name + " is accessible to group or others; restrict it with chmod 600");
  return static_cast<std::size_t>(st.st_size);
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
  auto size = private_file_size(file.fd, name);
  if (!size) return std::unexpected(size.error());
  if (*size != kSeedFileBytes)
    return fail(Errc::invalid_request, "the " + name + " must hold exactly " + std::to_string(kSeedFileBytes) +
                                           " raw bytes, it holds " + std::to_string(*size));
  SeedFile result;
  if (auto ok = read_exact(file.fd, result.seed.span()); !ok)
    return fail(Errc::internal_error, "cannot read the " + name);
  return result;
}

Result<std::optional<KeyFile>> read_key_file(const std::filesystem::path& path) {
  const std::string name = "key file " + path.string();
  Fd file{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)};
  if (file.fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    return fail(Errc::internal_error, "cannot open the " + name + ": " + errno_text());
  }
  auto size = private_file_size(file.fd, name);
  if (!size) return std::unexpected(size.error());
  KeyFile key;
  if (*size == kSeedFileBytes) {  // legacy: the seed alone
    if (auto ok = read_exact(file.fd, key.seed.span()); !ok) return fail(Errc::internal_error, "cannot read the " + name);
    return key;
  }
  if (*size != kKeyFileBytes)
    return fail(Errc::invalid_request, "the " + name + " is not an enclave key file (" + std::to_string(kKeyFileBytes) +
                                           " bytes, or a 32-byte seed); it holds " + std::to_string(*size) + " bytes");
  crypto::Secret<kKeyFileBytes> bytes;
  if (auto ok = read_exact(file.fd, bytes.span()); !ok) return fail(Errc::internal_error, "cannot read the " + name);
  const auto all = bytes.span();
  if (!std::equal(kKeyFileMagic.begin(), kKeyFileMagic.end(), all.begin()))
    return fail(Errc::invalid_request, "the " + name + " is not an enclave key file (unknown format)");
  std::copy_n(all.begin() + kKeyFileMagic.size(), kSeedFileBytes, key.seed.span().begin());
  std::uint64_t not_after = 0;
  for (const std::uint8_t byte : all.subspan(kKeyFileMagic.size() + kSeedFileBytes)) not_after = not_after << 8 | byte;
  if (not_after > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    return fail(Errc::invalid_request, "the " + name + " has an impossible notAfter");
  key.not_after = static_cast<std::int64_t>(not_after);
  return key;
}

Status write_key_file(const std::filesystem::path& path, const crypto::Secret<kSeedFileBytes>& seed,
                      std::int64_t not_after) {
  crypto::Secret<kKeyFileBytes> bytes;
  auto out = bytes.span();
  std::copy(kKeyFileMagic.begin(), kKeyFileMagic.end(), out.begin());
  std::copy(seed.span().begin(), seed.span().end(), out.begin() + kKeyFileMagic.size());
  auto value = static_cast<std::uint64_t>(not_after);
  for (std::size_t i = kKeyFileBytes; i-- > kKeyFileMagic.size() + kSeedFileBytes; value >>= 8)
    out[i] = static_cast<std::uint8_t>(value & 0xff);

  const std::filesystem::path tmp = path.string() + ".tmp";
  ::unlink(tmp.c_str());  // a leftover of a crash; O_EXCL refuses anything put there since
  Status ok;
  {
    Fd file{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)};
    if (file.fd < 0) ok = fail(Errc::internal_error, errno_text());
    if (ok) ok = write_exact(file.fd, bytes.span());
    if (ok && ::fsync(file.fd) != 0) ok = fail(Errc::internal_error, errno_text());
  }
  if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) ok = fail(Errc::internal_error, errno_text());
  if (!ok) {
    ::unlink(tmp.c_str());
    return fail(Errc::internal_error, "cannot write the key file " + path.string() + ": " + ok.error().message);
  }
  return {};
}

Result<StartKey> load_enclave_key(const std::optional<std::filesystem::path>& file, std::chrono::seconds lifetime,
                                  std::int64_t now) {
  std::optional<KeyFile> stored;
  if (file) {
    auto read = read_key_file(*file);
    if (!read) return std::unexpected(read.error());
    stored = std::move(*read);
  }
  // A legacy file records no notAfter: it counts as created now (and is rewritten with one).
  const bool legacy = stored && !stored->not_after;
  if (legacy) stored->not_after = now + lifetime.count();
  if (stored && *stored->not_after - now >= kKeyRenewBefore.count()) {
    auto key = std::make_shared<EnclaveKey>(stored->seed, *stored->not_after);
    if (legacy) {
      if (auto ok = write_key_file(*file, stored->seed, *stored->not_after); !ok) return std::unexpected(ok.error());
      spdlog::info("enclave key file {} upgraded to the format with notAfter", file->string());
    }
    return StartKey{std::move(key), false};
  }
  KeyFile fresh;
  crypto::random_bytes(fresh.seed.span());
  auto key = std::make_shared<EnclaveKey>(fresh.seed, now + lifetime.count());
  if (!file) return StartKey{std::move(key), true};
  if (auto ok = write_key_file(*file, fresh.seed, key->not_after()); !ok) return std::unexpected(ok.error());
  if (stored) {
    const auto old_key_id = crypto::key_id(crypto::xwing_keypair_from_seed(stored->seed).public_key);
    spdlog::warn("the enclave key in {} (keyId {}) {} at {}: made a new key, keyId {}", file->string(),
                 to_hex(old_key_id), *stored->not_after <= now ? "expired" : "expires within an hour",
                 *stored->not_after, to_hex(key->key_id()));
  } else {
    spdlog::info("created a new enclave key in {}", file->string());
  }
  return StartKey{std::move(key), true};
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

std::optional<crypto::SharedSecret> SharedSecretCache::find(const crypto::Blake2b256Digest& digest) {
  std::lock_guard lock(mutex_);
  const auto it = index_.find(digest);
  if (it == index_.end()) return std::nullopt;
  order_.splice(order_.begin(), order_, it->second);
  return it->second->second;
}

void SharedSecretCache::insert(const crypto::Blake2b256Digest& digest, const crypto::SharedSecret& secret) {
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
  const auto digest = crypto::blake2b_256(cipher_text);
  if (auto cached = cache_.find(digest)) return std::move(*cached);
  auto secret = crypto::xwing_decapsulate(cipher_text, pair_.seed);
  if (!secret) return secret;
  cache_.insert(digest, *secret);
  return secret;
}

}  // namespace rvenc::enclave
