#include "rvenc/enclave/replay.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

namespace rvenc::enclave {

Status check_timestamp(std::int64_t timestamp, std::int64_t now) {
  const std::int64_t skew = timestamp > now ? timestamp - now : now - timestamp;
  if (skew > kMaxClockSkewSeconds)
    return fail(Errc::replayed_request, "request timestamp is more than " + std::to_string(kMaxClockSkewSeconds) +
                                            " s from the enclave clock (check the client's clock)");
  return {};
}

namespace detail {
namespace {
// Growth keeps the table at most 3/4 full, where linear probing stays short, and by half its
// size at a time, so it is never less than half full after growing.
constexpr std::size_t kMaxLoadNumerator = 3;
constexpr std::size_t kMaxLoadDenominator = 4;
constexpr std::size_t kInitialSlots = 64;
// Set in every stored fingerprint, so none is the all-zero free slot.
constexpr std::uint8_t kOccupiedBit = 0x80;

crypto::Fingerprint stored(crypto::Fingerprint fingerprint) {
  fingerprint.back() |= kOccupiedBit;
  return fingerprint;
}
bool is_free(const crypto::Fingerprint& slot) { return slot.back() == 0; }
}  // namespace

std::size_t FingerprintSet::slot_of(const crypto::Fingerprint& fingerprint) const noexcept {
  // The fingerprint is a keyed hash already: its first 8 bytes are a uniform index.
  std::uint64_t hash = 0;
  std::memcpy(&hash, fingerprint.data(), sizeof hash);
  return static_cast<std::size_t>(hash % slots_.size());
}

std::size_t FingerprintSet::next(std::size_t slot) const noexcept { return slot + 1 == slots_.size() ? 0 : slot + 1; }

bool FingerprintSet::contains(const crypto::Fingerprint& fingerprint) const noexcept {
  if (slots_.empty()) return false;
  const crypto::Fingerprint wanted = stored(fingerprint);
  for (std::size_t i = slot_of(wanted);; i = next(i)) {
    if (slots_[i] == wanted) return true;
    if (is_free(slots_[i])) return false;
  }
}

void FingerprintSet::place(const crypto::Fingerprint& value) noexcept {
  std::size_t i = slot_of(value);
  while (!is_free(slots_[i])) i = next(i);
  slots_[i] = value;
}

void FingerprintSet::insert(const crypto::Fingerprint& fingerprint) {
  if ((size_ + 1) * kMaxLoadDenominator > slots_.size() * kMaxLoadNumerator) grow();
  place(stored(fingerprint));
  ++size_;
}

void FingerprintSet::grow() {
  std::vector<crypto::Fingerprint> old = std::exchange(slots_, {});
  slots_.assign(old.empty() ? kInitialSlots : old.size() + old.size() / 2, crypto::Fingerprint{});
  for (const auto& slot : old)
    if (!is_free(slot)) place(slot);
}
}  // namespace detail

ReplayCache::ReplayCache(std::size_t max_entries, std::int64_t window_seconds, std::int64_t bucket_seconds)
    : max_entries_(max_entries), window_(window_seconds), bucket_(std::max<std::int64_t>(bucket_seconds, 1)) {}

void ReplayCache::expire(std::int64_t now) {
  // An entry recorded in a bucket must live until window_ after the bucket's end.
  while (!buckets_.empty() && buckets_.front().start + bucket_ + window_ <= now) {
    size_ -= buckets_.front().entries.size();
    buckets_.pop_front();
  }
}

Status ReplayCache::check_and_insert(const crypto::KeyId& key_id, const crypto::Nonce& nonce, std::int64_t now) {
  std::array<std::uint8_t, crypto::kKeyIdBytes + crypto::kAeadNonceBytes> pair{};
  std::copy(key_id.begin(), key_id.end(), pair.begin());
  std::copy(nonce.begin(), nonce.end(), pair.begin() + crypto::kKeyIdBytes);
  const crypto::Fingerprint entry = crypto::keyed_fingerprint(pair);

  std::lock_guard lock(mutex_);
  expire(now);
  for (const auto& bucket : buckets_)
    if (bucket.entries.contains(entry))
      return fail(Errc::replayed_request, "this request nonce was already used (replayed request)");
  if (size_ >= max_entries_)
    return fail(Errc::overloaded, "the enclave's replay cache is full; retry in a minute");

  const std::int64_t start = now - ((now % bucket_) + bucket_) % bucket_;
  // A clock that went backwards keeps filling the newest bucket, which then lives longer.
  if (buckets_.empty() || buckets_.back().start < start) buckets_.push_back(Bucket{start, {}});
  buckets_.back().entries.insert(entry);
  ++size_;
  return {};
}

std::size_t ReplayCache::size() const {
  std::lock_guard lock(mutex_);
  return size_;
}

}  // namespace rvenc::enclave
