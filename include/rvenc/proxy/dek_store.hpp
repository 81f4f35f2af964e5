// Data-encryption keys (the SDK's EncryptionKeys) per API key, their rotation policy, and the
// optional file that keeps them across proxy restarts (`rvenc proxy --dek-store FILE`).
//
// Design: the store is indexed by the SHA-256 of the API key, never the key itself, with the model
// and the enclave keyId (several enclaves, PROTOCOL.md section 7: one entry per replica a model's
// requests are spread over): "<digest>:<keyId>:<model>". Entries of older releases, indexed by the
// digest alone, still load: they hold keys for any model. Each entry
// records the enclave key's notAfter (inside its keys) and a digest of the trust settings its
// attestation was verified under; at start the proxy drops the entries whose settings differ from
// its own, whose notAfter is near, or that lack either (stores of older releases), so stored keys
// are never used past their enclave key's life or under trust settings they were not checked
// against (they are made anew from a fresh attestation). The file holds
// shared secrets, so it is created with mode 0600 and a file that group or others can read or
// write is refused (as ssh does with private keys); it is replaced atomically (write a 0600
// temporary file, fsync, rename) so a crash never leaves half a store.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rvenc/client/client.hpp"
#include "rvenc/common/error.hpp"
#include "rvenc/protocol/attestation.hpp"

namespace rvenc::proxy {

// One API key's encryption keys and how much they have been used.
struct Dek {
  client::EncryptionKeys keys;  // keys.not_after: the enclave key's notAfter
  std::int64_t created_at = 0;  // seconds since the epoch
  std::uint64_t requests = 0;   // requests sent with these keys
  std::string trust;            // trust_digest() the keys were verified under; empty: unknown
};

// Lowercase hex SHA-256 of the settings that decide which enclaves are trusted (allowed
// providers, expected measurement, simulated platform key, hardware policy and roots): keys verified under other settings
// are not reused. Every field of AttestationPolicy that decides trust belongs in it.
[[nodiscard]] std::string trust_digest(const protocol::AttestationPolicy& policy);

// When keys are replaced by fresh ones (a new X-Wing encapsulation). 0 disables a limit.
struct DekPolicy {
  static constexpr std::uint64_t kDefaultMaxRequests = 1000;
  static constexpr std::chrono::seconds kDefaultMaxAge{3600};

  std::uint64_t max_requests = kDefaultMaxRequests;
  std::chrono::seconds max_age = kDefaultMaxAge;

  // True once `dek` has served max_requests requests or is max_age old at `now` (epoch seconds),
  // or its enclave key's notAfter is near (client::EncryptionKeys::usable_at).
  [[nodiscard]] bool needs_rotation(const Dek& dek, std::int64_t now) const noexcept;
};

// Lowercase hex SHA-256 of the API key: the only form in which keys are stored or indexed.
[[nodiscard]] std::string api_key_digest(std::string_view api_key);

class DekStore {
 public:
  // Most keys kept; the least recently created are dropped beyond it.
  static constexpr std::size_t kMaxEntries = 4096;
  // Largest store file read (4096 entries take about 13 MB).
  static constexpr std::uintmax_t kMaxFileBytes = 32u * 1024 * 1024;

  // Opens `path`, creating an empty store (mode 0600) when it does not exist. invalid_request when
  // the file is not a regular file, belongs to another user, is readable or writable by group or
  // others, is too large or is not a store; internal_error when it cannot be read or created.
  [[nodiscard]] static Result<std::unique_ptr<DekStore>> open(std::filesystem::path path);

  // The index of one replica's keys of an API key for a model.
  [[nodiscard]] static std::string entry_key(std::string_view digest, std::string_view model, const crypto::KeyId& key_id);

  // The entry at `key` (an entry_key(), or a digest alone for entries of older releases).
  [[nodiscard]] std::optional<Dek> find(std::string_view key) const;
  // Every entry of the API key `digest`, with its model ("" for entries of older releases).
  [[nodiscard]] std::vector<std::pair<std::string, Dek>> find_all(std::string_view digest) const;
  // Replaces the keys of (`digest`, `model`) by `deks` and rewrites the file.
  [[nodiscard]] Status put_set(std::string_view digest, std::string_view model, const std::vector<Dek>& deks);
  // Drops the keys of (`digest`, `model`) and rewrites the file (they must not be used again).
  [[nodiscard]] Status erase_set(std::string_view digest, std::string_view model);
  // Sets the entry at `key` and rewrites the file.
  [[nodiscard]] Status put(std::string_view key, const Dek& dek);
  // Updates the request count of the entry at `key` in memory only (written by the next write).
  void note_requests(std::string_view key, std::uint64_t requests);
  // Rewrites the file when counts changed since the last write.
  [[nodiscard]] Status flush();
  // Drops the entry at `key` and rewrites the file (its keys must not be used again).
  [[nodiscard]] Status erase(std::string_view key);
  // Drops the entries not verified under `trust` or not usable at `now` (no notAfter, or near
  // it), rewriting the file when any went; returns how many.
  [[nodiscard]] Result<std::size_t> drop_unverified(std::string_view trust, std::int64_t now);

  [[nodiscard]] std::size_t size() const;
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

 private:
  explicit DekStore(std::filesystem::path path) : path_(std::move(path)) {}
  [[nodiscard]] Status write_locked();
  void bound_locked();
  // Drops the entries of (`digest`, `model`), the digest-only entry of older releases with model "".
  void erase_set_locked(std::string_view digest, std::string_view model);

  std::filesystem::path path_;
  mutable std::mutex mutex_;
  std::map<std::string, Dek, std::less<>> entries_;
  bool dirty_ = false;
};

}  // namespace rvenc::proxy
