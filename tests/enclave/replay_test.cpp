#include <gtest/gtest.h>

#include "rvenc/enclave/replay.hpp"

#include <vector>

namespace rvenc::enclave {
namespace {

crypto::Nonce nonce_of(int i) {
  crypto::Nonce n{};
  n[0] = static_cast<std::uint8_t>(i);
  n[1] = static_cast<std::uint8_t>(i >> 8);
  return n;
}

const crypto::KeyId kKey{1, 2, 3, 4, 5, 6, 7, 8};
constexpr std::int64_t kNow = 1'764'004'858;

TEST(Timestamp, AcceptsWithinSkewRefusesBeyond) {
  EXPECT_TRUE(check_timestamp(kNow, kNow));
  EXPECT_TRUE(check_timestamp(kNow - 300, kNow));
  EXPECT_TRUE(check_timestamp(kNow + 300, kNow));
  auto stale = check_timestamp(kNow - 301, kNow);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, Errc::replayed_request);
  EXPECT_FALSE(check_timestamp(kNow + 301, kNow));
}

TEST(ReplayCache, RefusesTheSameNonceTwice) {
  ReplayCache cache(100);
  EXPECT_TRUE(cache.check_and_insert(kKey, nonce_of(1), kNow));
  auto again = cache.check_and_insert(kKey, nonce_of(1), kNow + 10);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::replayed_request);
  EXPECT_TRUE(cache.check_and_insert(kKey, nonce_of(2), kNow + 10));
  crypto::KeyId other = kKey;
  other[0] = 9;
  EXPECT_TRUE(cache.check_and_insert(other, nonce_of(1), kNow + 10));
}

TEST(ReplayCache, RemembersForTheWholeWindowThenForgets) {
  ReplayCache cache(100);
  ASSERT_TRUE(cache.check_and_insert(kKey, nonce_of(1), kNow));
  EXPECT_FALSE(cache.check_and_insert(kKey, nonce_of(1), kNow + kReplayWindowSeconds - 1));
  EXPECT_EQ(cache.size(), 1u);
  // Well after the window (plus a bucket), the entry's bucket has expired.
  EXPECT_TRUE(cache.check_and_insert(kKey, nonce_of(2), kNow + kReplayWindowSeconds + kReplayBucketSeconds + 1));
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_TRUE(cache.check_and_insert(kKey, nonce_of(1), kNow + kReplayWindowSeconds + kReplayBucketSeconds + 2));
}

TEST(ReplayCache, FullCacheRefusesWithOverloadedAndForgetsNothing) {
  ReplayCache cache(3);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(cache.check_and_insert(kKey, nonce_of(i), kNow + i));
  auto full = cache.check_and_insert(kKey, nonce_of(10), kNow + 5);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, Errc::overloaded);
  // Still a replay, not "overloaded", for what it remembers.
  auto replay = cache.check_and_insert(kKey, nonce_of(0), kNow + 5);
  ASSERT_FALSE(replay);
  EXPECT_EQ(replay.error().code, Errc::replayed_request);
  // Once the window has passed, room again.
  EXPECT_TRUE(cache.check_and_insert(kKey, nonce_of(10), kNow + 2 * kReplayWindowSeconds));
}

TEST(ReplayCache, ClockGoingBackwardsKeepsEntries) {
  ReplayCache cache(100);
  ASSERT_TRUE(cache.check_and_insert(kKey, nonce_of(1), kNow));
  ASSERT_TRUE(cache.check_and_insert(kKey, nonce_of(2), kNow - 200));
  EXPECT_FALSE(cache.check_and_insert(kKey, nonce_of(2), kNow));
  EXPECT_FALSE(cache.check_and_insert(kKey, nonce_of(1), kNow - 100));
}

TEST(ReplayCache, RemembersEveryOneOfManyRequests) {
  // Enough to make each bucket's table grow many times over.
  constexpr int kRequests = 50'000;
  ReplayCache cache(kRequests);
  for (int i = 0; i < kRequests; ++i) ASSERT_TRUE(cache.check_and_insert(kKey, nonce_of(i), kNow + i / 1000));
  EXPECT_EQ(cache.size(), static_cast<std::size_t>(kRequests));
  for (int i = 0; i < kRequests; i += 7) {
    auto again = cache.check_and_insert(kKey, nonce_of(i), kNow + 60);
    ASSERT_FALSE(again) << i;
    EXPECT_EQ(again.error().code, Errc::replayed_request);
  }
  crypto::KeyId other = kKey;
  other[7] = 0;
  EXPECT_EQ(cache.check_and_insert(other, nonce_of(1), kNow + 60).error().code, Errc::overloaded);
}

TEST(FingerprintSet, HoldsWhatWasInsertedAndNothingElse) {
  detail::FingerprintSet set;
  std::vector<crypto::Fingerprint> inserted;
  for (int i = 0; i < 1000; ++i) {
    const auto nonce = nonce_of(i);
    inserted.push_back(crypto::keyed_fingerprint(nonce));
    set.insert(inserted.back());
  }
  EXPECT_EQ(set.size(), 1000u);
  for (const auto& fingerprint : inserted) EXPECT_TRUE(set.contains(fingerprint));
  for (int i = 1000; i < 3000; ++i) EXPECT_FALSE(set.contains(crypto::keyed_fingerprint(nonce_of(i)))) << i;
  // The value that marks free slots is not mistaken for an entry.
  EXPECT_FALSE(set.contains(crypto::Fingerprint{}));
  EXPECT_FALSE(detail::FingerprintSet{}.contains(inserted.front()));
}

}  // namespace
}  // namespace rvenc::enclave
