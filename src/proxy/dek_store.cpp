#include "rvenc/proxy/dek_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <vector>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "rvenc/common/hex.hpp"
#include "rvenc/crypto/crypto.hpp"

namespace rvenc::proxy {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

constexpr int kStoreFormatVersion = 1;
constexpr mode_t kStoreMode = 0600;
constexpr std::size_t kDigestHexChars = 64;

// Wipes a string that held secrets before it is freed.
struct WipeOnExit {
  std::string& text;
  ~WipeOnExit() { crypto::secure_wipe(text.data(), text.size()); }
};

std::string describe_errno(int err) { return std::strerror(err); }

constexpr std::size_t kKeyIdHexChars = 2 * crypto::kKeyIdBytes;

bool is_lower_hex(std::string_view s, std::size_t size) {
  return s.size() == size &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}
bool is_digest(std::string_view s) { return is_lower_hex(s, kDigestHexChars); }

// An entry's index: "<digest>" (older releases) or "<digest>:<keyId>:<model>".
bool is_entry_key(std::string_view key) {
  if (key.size() == kDigestHexChars) return is_digest(key);
  return key.size() > kDigestHexChars + kKeyIdHexChars + 2 && is_digest(key.substr(0, kDigestHexChars)) &&
         key[kDigestHexChars] == ':' && is_lower_hex(key.substr(kDigestHexChars + 1, kKeyIdHexChars), kKeyIdHexChars) &&
         key[kDigestHexChars + 1 + kKeyIdHexChars] == ':';
}

// The model of an entry's index ("" for the digest-only index of older releases).
std::string_view model_of(std::string_view key) {
  return key.size() == kDigestHexChars ? std::string_view{} : key.substr(kDigestHexChars + kKeyIdHexChars + 2);
}

Status write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(Errc::internal_error, describe_errno(errno));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

// A store file must stay private: it holds the shared secrets of every API key's requests.
Status check_private(const fs::path& path, const struct stat& st) {
  if (!S_ISREG(st.st_mode))
    return fail(Errc::invalid_request, "DEK store " + path.string() + " is not a regular file");
  if (st.st_uid != ::geteuid())
    return fail(Errc::invalid_request, "DEK store " + path.string() + " belongs to another user");
  if ((st.st_mode & 077) != 0) {
    std::ostringstream mode;
    mode << std::oct << (st.st_mode & 0777);
    return fail(Errc::invalid_request, "refusing DEK store " + path.string() + ": group or others may access it (mode 0" +
                                           mode.str() + "); run `chmod 600 " + path.string() + "`");
  }
  return {};
}

Result<std::map<std::string, Dek, std::less<>>> parse_store(std::string_view text, const fs::path& path) {
  const auto bad = [&](std::string_view what) {
    return fail(Errc::invalid_request, "DEK store " + path.string() + " is not a valid store: " + std::string(what));
  };
  std::map<std::string, Dek, std::less<>> entries;
  if (text.empty()) return entries;  // created but never written (e.g. a crash right after creation)
  json::error_code ec;
  json::value doc = json::parse(text, ec);
  if (ec || !doc.is_object()) return bad("not a JSON object");
  const auto& obj = doc.get_object();
  const auto* version = obj.if_contains("version");
  if (version == nullptr || !version->is_int64() || version->get_int64() != kStoreFormatVersion)
    return bad("unknown version");
  const auto* keys = obj.if_contains("keys");
  if (keys == nullptr || !keys->is_object()) return bad("missing `keys`");
  for (const auto& [digest, value] : keys->get_object()) {
    if (!is_entry_key(digest) || !value.is_object()) return bad("malformed entry");
    const auto& entry = value.get_object();
    const auto* keys_value = entry.if_contains("keys");
    if (keys_value == nullptr || !keys_value->is_object()) return bad("malformed entry");
    std::string keys_json = json::serialize(*keys_value);
    WipeOnExit wipe{keys_json};
    auto parsed = client::EncryptionKeys::from_json(keys_json);
    if (!parsed) return bad(parsed.error().message);
    const auto* created = entry.if_contains("createdAt");
    const auto* requests = entry.if_contains("requests");
    if (created == nullptr || !created->is_int64() || requests == nullptr || !requests->is_int64() ||
        requests->get_int64() < 0)
      return bad("malformed entry");
    // Stores of older releases have no "trust": such keys count as unverified (dropped at start).
    const auto* trust = entry.if_contains("trust");
    if (trust != nullptr && (!trust->is_string() || !is_digest(trust->get_string()))) return bad("malformed entry");
    entries.emplace(std::string(digest), Dek{std::move(*parsed), created->get_int64(),
                                             static_cast<std::uint64_t>(requests->get_int64()),
                                             trust != nullptr ? std::string(trust->get_string()) : std::string()});
  }
  return entries;
}

}  // namespace

std::string trust_digest(const protocol::AttestationPolicy& policy) {
  std::vector<std::string> providers = policy.allowed_providers;
  std::sort(providers.begin(), providers.end());
  std::string text = "rvenc-trust-v1\nproviders";
  for (const auto& provider : providers) text += " " + provider;
  text += "\nmeasurement " + (policy.expected_measurement ? to_hex(*policy.expected_measurement) : std::string("-"));
  text += "\nplatform " + (policy.simulated_platform_key ? to_hex(*policy.simulated_platform_key) : std::string("-"));
  if (!policy.hardware_trust.empty()) text += "\nhardware " + policy.hardware_trust;
  // Keys of older releases were verified under binding 1 (notAfter not attested): not reused.
  text += "\nminBinding " + std::to_string(static_cast<int>(policy.min_binding));
  return to_hex(crypto::sha256(crypto::as_bytes(text)));
}

bool DekPolicy::needs_rotation(const Dek& dek, std::int64_t now) const noexcept {
  if (!dek.keys.usable_at(now)) return true;
  if (max_requests != 0 && dek.requests >= max_requests) return true;
  return max_age.count() != 0 && now - dek.created_at >= max_age.count();
}

std::string api_key_digest(std::string_view api_key) { return to_hex(crypto::sha256(crypto::as_bytes(api_key))); }

Result<std::unique_ptr<DekStore>> DekStore::open(fs::path path) {
  std::unique_ptr<DekStore> store(new DekStore(path));
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno != ENOENT)
      return fail(Errc::internal_error, "cannot open DEK store " + path.string() + ": " + describe_errno(errno));
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, kStoreMode);
    if (fd < 0)
      return fail(Errc::internal_error, "cannot create DEK store " + path.string() + ": " + describe_errno(errno));
    ::close(fd);
    std::lock_guard lock(store->mutex_);
    if (auto ok = store->write_locked(); !ok) return std::unexpected(ok.error());
    return store;
  }
  if (auto ok = check_private(path, st); !ok) return std::unexpected(ok.error());
  if (static_cast<std::uintmax_t>(st.st_size) > kMaxFileBytes)
    return fail(Errc::invalid_request, "DEK store " + path.string() + " is larger than a store can be");
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(Errc::internal_error, "cannot read DEK store " + path.string());
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  WipeOnExit wipe{text};
  auto entries = parse_store(text, path);
  if (!entries) return std::unexpected(entries.error());
  store->entries_ = std::move(*entries);
  return store;
}

std::string DekStore::entry_key(std::string_view digest, std::string_view model, const crypto::KeyId& key_id) {
  return std::string(digest) + ":" + to_hex(key_id) + ":" + std::string(model);
}

std::optional<Dek> DekStore::find(std::string_view key) const {
  std::lock_guard lock(mutex_);
  const auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::pair<std::string, Dek>> DekStore::find_all(std::string_view digest) const {
  std::lock_guard lock(mutex_);
  std::vector<std::pair<std::string, Dek>> found;
  for (auto it = entries_.lower_bound(digest); it != entries_.end() && it->first.starts_with(digest); ++it)
    if (it->first.size() == digest.size() || it->first[digest.size()] == ':')
      found.emplace_back(std::string(model_of(it->first)), it->second);
  return found;
}

void DekStore::erase_set_locked(std::string_view digest, std::string_view model) {
  std::erase_if(entries_, [&](const auto& item) {
    const std::string& key = item.first;
    if (!key.starts_with(digest)) return false;
    if (key.size() == digest.size()) return model.empty();
    return key[digest.size()] == ':' && model_of(key) == model;
  });
}

Status DekStore::put_set(std::string_view digest, std::string_view model, const std::vector<Dek>& deks) {
  std::lock_guard lock(mutex_);
  erase_set_locked(digest, model);
  for (const Dek& dek : deks) entries_.insert_or_assign(entry_key(digest, model, dek.keys.key_id), dek);
  bound_locked();
  return write_locked();
}

Status DekStore::erase_set(std::string_view digest, std::string_view model) {
  std::lock_guard lock(mutex_);
  const std::size_t before = entries_.size();
  erase_set_locked(digest, model);
  if (entries_.size() == before) return {};
  return write_locked();
}

Status DekStore::put(std::string_view digest, const Dek& dek) {
  std::lock_guard lock(mutex_);
  entries_.insert_or_assign(std::string(digest), dek);
  bound_locked();
  return write_locked();
}

void DekStore::bound_locked() {
  while (entries_.size() > kMaxEntries) {
    const auto oldest = std::min_element(entries_.begin(), entries_.end(), [](const auto& a, const auto& b) {
      return a.second.created_at < b.second.created_at;
    });
    entries_.erase(oldest);
  }
}

void DekStore::note_requests(std::string_view digest, std::uint64_t requests) {
  std::lock_guard lock(mutex_);
  if (auto it = entries_.find(digest); it != entries_.end() && it->second.requests != requests) {
    it->second.requests = requests;
    dirty_ = true;
  }
}

Status DekStore::flush() {
  std::lock_guard lock(mutex_);
  if (!dirty_) return {};
  return write_locked();
}

Status DekStore::erase(std::string_view digest) {
  std::lock_guard lock(mutex_);
  const auto it = entries_.find(digest);
  if (it == entries_.end()) return {};
  entries_.erase(it);
  return write_locked();
}

Result<std::size_t> DekStore::drop_unverified(std::string_view trust, std::int64_t now) {
  std::lock_guard lock(mutex_);
  const std::size_t dropped = std::erase_if(entries_, [&](const auto& item) {
    const Dek& dek = item.second;
    return dek.trust.empty() || dek.trust != trust || !dek.keys.not_after || !dek.keys.usable_at(now);
  });
  if (dropped == 0) return dropped;
  if (auto ok = write_locked(); !ok) return std::unexpected(ok.error());
  return dropped;
}

std::size_t DekStore::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

Status DekStore::write_locked() {
  json::object keys;
  for (const auto& [digest, dek] : entries_) {
    std::string keys_json = dek.keys.to_json();
    WipeOnExit wipe{keys_json};
    json::object entry;
    entry["keys"] = json::parse(keys_json);
    entry["createdAt"] = dek.created_at;
    entry["requests"] = static_cast<std::int64_t>(dek.requests);
    if (!dek.trust.empty()) entry["trust"] = dek.trust;
    keys[digest] = std::move(entry);
  }
  json::object doc{{"version", kStoreFormatVersion}};
  doc["keys"] = std::move(keys);
  std::string text = json::serialize(doc);
  text += '\n';
  WipeOnExit wipe{text};

  const fs::path tmp = path_.string() + ".tmp";
  ::unlink(tmp.c_str());  // a leftover of a crash; O_EXCL below refuses anything put there since
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, kStoreMode);
  if (fd < 0) return fail(Errc::internal_error, "cannot write DEK store " + tmp.string() + ": " + describe_errno(errno));
  Status ok = write_all(fd, text);
  if (ok && ::fchmod(fd, kStoreMode) != 0) ok = fail(Errc::internal_error, describe_errno(errno));
  if (ok && ::fsync(fd) != 0) ok = fail(Errc::internal_error, describe_errno(errno));
  ::close(fd);
  if (ok && ::rename(tmp.c_str(), path_.c_str()) != 0) ok = fail(Errc::internal_error, describe_errno(errno));
  if (!ok) {
    ::unlink(tmp.c_str());
    return fail(Errc::internal_error, "cannot write DEK store " + path_.string() + ": " + ok.error().message);
  }
  dirty_ = false;
  return {};
}

}  // namespace rvenc::proxy
