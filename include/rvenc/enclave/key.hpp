// The enclave's long-lived secrets: 32-byte seed files (the simulated platform key), the enclave
// key file (X-Wing seed + notAfter), the X-Wing key pair locked in memory, and the bounded cache
// of decapsulated shared secrets that lets reused "encryption keys" skip the KEM.
//
// Design: the key file records the key's notAfter, so a restart never extends an old key's life:
// a key that has expired, or expires within kKeyRenewBefore, is replaced by a new one at start.
// Files are private (mode 0600, refused when group or others may access them) and replaced
// atomically; seeds live in crypto::Secret (wiped when dropped) and are locked in memory once
// they belong to an EnclaveKey.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <unordered_map>

#include "rvenc/common/error.hpp"
#include "rvenc/crypto/crypto.hpp"

namespace rvenc::enclave {

inline constexpr std::size_t kSeedFileBytes = 32;
inline constexpr std::size_t kDefaultSharedSecretCacheEntries = 4096;

// Reads the 32-byte raw seed at `path`, or creates it (random, mode 0600) when missing.
// invalid_request when the file has another size, is not a regular file, or is accessible to
// group or others; internal_error on I/O failure. `what` names the file in messages.
struct SeedFile {
  crypto::Secret<kSeedFileBytes> seed;
  bool created = false;
};
[[nodiscard]] Result<SeedFile> load_or_create_seed_file(const std::filesystem::path& path, std::string_view what);

// The enclave key file: magic "rvenc-k1", the 32-byte X-Wing seed, notAfter (8 bytes, big-endian
// seconds since the epoch). A file of exactly 32 bytes is the legacy format: a seed without notAfter.
inline constexpr std::string_view kKeyFileMagic = "rvenc-k1";
inline constexpr std::size_t kKeyFileBytes = 8 + kSeedFileBytes + 8;
// At start, a key that expires within this is replaced by a new one.
inline constexpr std::chrono::seconds kKeyRenewBefore{3600};

struct KeyFile {
  crypto::Secret<kSeedFileBytes> seed;
  std::optional<std::int64_t> not_after;  // nullopt: a legacy 32-byte file
};
// Reads the key file at `path`: nullopt when it does not exist. invalid_request when it is not a
// private regular file or holds neither format; internal_error on I/O failure.
[[nodiscard]] Result<std::optional<KeyFile>> read_key_file(const std::filesystem::path& path);
// Replaces `path` atomically (a mode-0600 temporary file beside it, fsync, rename).
[[nodiscard]] Status write_key_file(const std::filesystem::path& path, const crypto::Secret<kSeedFileBytes>& seed,
                                    std::int64_t not_after);

class EnclaveKey;
// The key an enclave starts with, and whether it was made at this start (no earlier process can
// have served requests with it: version 2's restart window does not apply).
struct StartKey {
  std::shared_ptr<EnclaveKey> key;
  bool made_now = false;
  EnclaveKey* operator->() const noexcept { return key.get(); }
};
// The enclave's key at start (`now`, epoch seconds). With `file`: its key, or a new one written
// to it when the file is missing, or its key has expired or expires within kKeyRenewBefore (the
// old and new keyId are logged); a legacy 32-byte file counts as created now (notAfter = now +
// lifetime) and is rewritten in the current format. Without `file`: a new key in memory only.
// New keys live `lifetime`. Errors as read_key_file/write_key_file.
[[nodiscard]] Result<StartKey> load_enclave_key(const std::optional<std::filesystem::path>& file,
                                                std::chrono::seconds lifetime, std::int64_t now);

// Keeps `size` bytes at `data` out of swap and core dumps where the system allows it; logs one
// warning per process when it does not (RLIMIT_MEMLOCK, containers). unlock_memory wipes them.
void lock_memory(void* data, std::size_t size) noexcept;
void unlock_memory(void* data, std::size_t size) noexcept;

// LRU map BLAKE2b-256(cipherText) -> shared secret, at most `capacity` entries; evicted entries are
// wiped (crypto::Secret). Thread-safe.
class SharedSecretCache {
 public:
  explicit SharedSecretCache(std::size_t capacity = kDefaultSharedSecretCacheEntries);

  // The secret for `digest` (marked most recently used), or nullopt.
  [[nodiscard]] std::optional<crypto::SharedSecret> find(const crypto::Blake2b256Digest& digest);
  // Inserts or refreshes; evicts the least recently used entry beyond capacity.
  void insert(const crypto::Blake2b256Digest& digest, const crypto::SharedSecret& secret);

  [[nodiscard]] std::size_t size() const;
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }

 private:
  using Entry = std::pair<crypto::Blake2b256Digest, crypto::SharedSecret>;
  std::size_t capacity_;
  mutable std::mutex mutex_;
  std::list<Entry> order_;  // front: most recently used
  std::unordered_map<crypto::Blake2b256Digest, std::list<Entry>::iterator, crypto::KeyedBytesHash> index_;
};

// The enclave's X-Wing key pair: the seed is locked in memory for the object's lifetime (so the
// object is neither copyable nor movable: create it with std::make_unique/make_shared).
class EnclaveKey {
 public:
  EnclaveKey(const crypto::XWingSeed& seed, std::int64_t not_after,
             std::size_t cache_entries = kDefaultSharedSecretCacheEntries);
  ~EnclaveKey();
  EnclaveKey(const EnclaveKey&) = delete;
  EnclaveKey& operator=(const EnclaveKey&) = delete;

  [[nodiscard]] const crypto::XWingPublicKey& public_key() const noexcept { return pair_.public_key; }
  [[nodiscard]] const crypto::KeyId& key_id() const noexcept { return key_id_; }
  [[nodiscard]] std::int64_t not_after() const noexcept { return not_after_; }
  // True from notAfter on (`now` in epoch seconds): the key must no longer be offered or used.
  [[nodiscard]] bool expired(std::int64_t now) const noexcept { return now >= not_after_; }

  // The shared secret for `cipher_text`, from the cache when this ciphertext was seen before.
  // (X-Wing rejects implicitly: a forged ciphertext gives an unrelated secret, which the AEAD
  // then refuses.)
  [[nodiscard]] Result<crypto::SharedSecret> decapsulate(const crypto::XWingCipherText& cipher_text);
  [[nodiscard]] const SharedSecretCache& cache() const noexcept { return cache_; }

 private:
  crypto::XWingKeyPair pair_;
  crypto::KeyId key_id_{};
  std::int64_t not_after_;
  SharedSecretCache cache_;
};

}  // namespace rvenc::enclave
