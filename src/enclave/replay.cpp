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

std::size_t default_tenant_share(std::size_t capacity) noexcept {
  return std::max({capacity / 8, std::min(kMinReplayTenantShare, capacity / 2), std::size_t{1}});
}

ReplayCache::ReplayCache(std::size_t max_entries, std::size_t tenant_share, std::int64_t window_seconds,
                         std::int64_t bucket_seconds)
    : max_entries_(max_entries),
      tenant_share_(tenant_share == 0 ? default_tenant_share(max_entries) : std::min(tenant_share, max_entries)),
      window_(window_seconds),
      bucket_(std::max<std::int64_t>(bucket_seconds, 1)) {}

// --- Reservation -------------------------------------------------------------------------------

ReplayCache::Reservation::Reservation(Reservation&& other) noexcept
    : cache_(std::exchange(other.cache_, nullptr)),
      entry_(other.entry_),
      tenant_(std::move(other.tenant_)),
      at_(other.at_) {}

ReplayCache::Reservation& ReplayCache::Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    release();
    cache_ = std::exchange(other.cache_, nullptr);
    entry_ = other.entry_;
    tenant_ = std::move(other.tenant_);
    at_ = other.at_;
  }
  return *this;
}

void ReplayCache::Reservation::commit() {
  if (cache_ == nullptr) return;
  cache_->commit(*this);  // may throw (memory): the reservation then stays, and is released
  cache_ = nullptr;
}

void ReplayCache::Reservation::release() noexcept {
  if (cache_ == nullptr) return;
  cache_->release(*this);
  cache_ = nullptr;
}

// --- ReplayCache ---------------------------------------------------------------------------------

void ReplayCache::give_back(const std::string& tenant, std::size_t count) noexcept {
  const auto it = held_.find(tenant);
  if (it == held_.end()) return;
  it->second -= std::min(it->second, count);
  if (it->second == 0) held_.erase(it);
}

void ReplayCache::expire(std::int64_t now) {
  // An entry recorded in a bucket must live until window_ after the bucket's end.
  while (!buckets_.empty() && buckets_.front().start + bucket_ + window_ <= now) {
    size_ -= buckets_.front().entries.size();
    for (const auto& [tenant, count] : buckets_.front().tenants) give_back(tenant, count);
    buckets_.pop_front();
  }
}

bool ReplayCache::seen(const crypto::Fingerprint& entry) const noexcept {
  if (std::find(reserved_.begin(), reserved_.end(), entry) != reserved_.end()) return true;
  return std::any_of(buckets_.begin(), buckets_.end(),
                     [&](const Bucket& bucket) { return bucket.entries.contains(entry); });
}

Result<ReplayCache::Reservation> ReplayCache::reserve(std::string tenant, const crypto::KeyId& key_id,
                                                      const crypto::Nonce& nonce, std::int64_t now) {
  std::array<std::uint8_t, crypto::kKeyIdBytes + crypto::kAeadNonceBytes> pair{};
  std::copy(key_id.begin(), key_id.end(), pair.begin());
  std::copy(nonce.begin(), nonce.end(), pair.begin() + crypto::kKeyIdBytes);
  const crypto::Fingerprint entry = crypto::keyed_fingerprint(pair);

  std::lock_guard lock(mutex_);
  expire(now);
  if (seen(entry)) return fail(Errc::replayed_request, "this request nonce was already used (replayed request)");
  // Full is full, whoever holds it (with a share below the capacity, never one tenant alone).
  if (size_ >= max_entries_) return fail(Errc::overloaded, "the enclave's replay cache is full; retry in a minute");
  auto held = held_.find(tenant);
  if (held != held_.end() && held->second >= tenant_share_)
    return fail(Errc::replay_quota_exceeded,
                "this API key holds its whole share of the enclave's replay cache (" + std::to_string(tenant_share_) +
                    " requests within " + std::to_string(window_) + " s); retry after Retry-After seconds");

  if (held == held_.end()) held = held_.emplace(tenant, 0).first;
  try {
    reserved_.push_back(entry);
  } catch (...) {
    if (held->second == 0) held_.erase(held);
    throw;
  }
  ++held->second;
  ++size_;
  return Reservation(*this, entry, std::move(tenant), now);
}

void ReplayCache::commit(const Reservation& reservation) {
  std::lock_guard lock(mutex_);
  const std::int64_t start = reservation.at_ - ((reservation.at_ % bucket_) + bucket_) % bucket_;
  // A clock that went backwards keeps filling the newest bucket, which then lives longer.
  if (buckets_.empty() || buckets_.back().start < start) buckets_.push_back(Bucket{start, {}, {}});
  Bucket& bucket = buckets_.back();
  std::size_t& count = bucket.tenants[reservation.tenant_];  // a new zero count is harmless
  bucket.entries.insert(reservation.entry_);
  ++count;
  forget_reserved(reservation.entry_);
}

bool ReplayCache::forget_reserved(const crypto::Fingerprint& entry) noexcept {
  const auto it = std::find(reserved_.begin(), reserved_.end(), entry);
  if (it == reserved_.end()) return false;
  *it = reserved_.back();
  reserved_.pop_back();
  return true;
}

void ReplayCache::release(const Reservation& reservation) noexcept {
  std::lock_guard lock(mutex_);
  if (!forget_reserved(reservation.entry_)) return;
  give_back(reservation.tenant_, 1);
  --size_;
}

std::int64_t ReplayCache::retry_after(const std::string& tenant, std::int64_t now) const {
  std::lock_guard lock(mutex_);
  for (const auto& bucket : buckets_) {
    const auto it = bucket.tenants.find(tenant);
    if (it != bucket.tenants.end() && it->second > 0)
      return std::max<std::int64_t>(1, bucket.start + bucket_ + window_ - now);
  }
  return 1;  // only reservations in flight: they end within moments
}

std::size_t ReplayCache::size() const {
  std::lock_guard lock(mutex_);
  return size_;
}

std::size_t ReplayCache::held(const std::string& tenant) const {
  std::lock_guard lock(mutex_);
  const auto it = held_.find(tenant);
  return it == held_.end() ? 0 : it->second;
}

}  // namespace rvenc::enclave
