#include "rvenc/enclave/replay.hpp"

#include <algorithm>
#include <string>

namespace rvenc::enclave {

Status check_timestamp(std::int64_t timestamp, std::int64_t now) {
  const std::int64_t skew = timestamp > now ? timestamp - now : now - timestamp;
  if (skew > kMaxClockSkewSeconds)
    return fail(Errc::replayed_request, "request timestamp is more than " + std::to_string(kMaxClockSkewSeconds) +
                                            " s from the enclave clock (check the client's clock)");
  return {};
}

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
  Entry entry{};
  std::copy(key_id.begin(), key_id.end(), entry.begin());
  std::copy(nonce.begin(), nonce.end(), entry.begin() + crypto::kKeyIdBytes);

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
