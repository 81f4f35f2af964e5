#include <gtest/gtest.h>

#include "rvenc/enclave/replay.hpp"

#include <atomic>
#include <optional>
#include <string>
#include <thread>
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

// A request that passes its checks: reserved, then committed.
Status record(ReplayCache& cache, const crypto::Nonce& nonce, std::int64_t now, const std::string& tenant = {},
              const crypto::KeyId& key_id = kKey) {
  auto reservation = cache.reserve(tenant, key_id, nonce, now);
  if (!reservation) return std::unexpected(reservation.error());
  reservation->commit();
  return {};
}

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
  EXPECT_TRUE(record(cache, nonce_of(1), kNow));
  auto again = record(cache, nonce_of(1), kNow + 10);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::replayed_request);
  EXPECT_TRUE(record(cache, nonce_of(2), kNow + 10));
  crypto::KeyId other = kKey;
  other[0] = 9;
  EXPECT_TRUE(record(cache, nonce_of(1), kNow + 10, {}, other));
}

TEST(ReplayCache, RemembersForTheWholeWindowThenForgets) {
  ReplayCache cache(100);
  ASSERT_TRUE(record(cache, nonce_of(1), kNow));
  EXPECT_FALSE(record(cache, nonce_of(1), kNow + kReplayWindowSeconds - 1));
  EXPECT_EQ(cache.size(), 1u);
  // Well after the window (plus a bucket), the entry's bucket has expired.
  EXPECT_TRUE(record(cache, nonce_of(2), kNow + kReplayWindowSeconds + kReplayBucketSeconds + 1));
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_TRUE(record(cache, nonce_of(1), kNow + kReplayWindowSeconds + kReplayBucketSeconds + 2));
}

TEST(ReplayCache, FullCacheRefusesWithOverloadedAndForgetsNothing) {
  ReplayCache cache(3, 3);  // one tenant may fill it
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(record(cache, nonce_of(i), kNow + i));
  auto full = record(cache, nonce_of(10), kNow + 5);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, Errc::overloaded);
  // Still a replay, not "overloaded", for what it remembers.
  auto replay = record(cache, nonce_of(0), kNow + 5);
  ASSERT_FALSE(replay);
  EXPECT_EQ(replay.error().code, Errc::replayed_request);
  // Once the window has passed, room again.
  EXPECT_TRUE(record(cache, nonce_of(10), kNow + 2 * kReplayWindowSeconds));
}

TEST(ReplayCache, ClockGoingBackwardsKeepsEntries) {
  ReplayCache cache(100);
  ASSERT_TRUE(record(cache, nonce_of(1), kNow));
  ASSERT_TRUE(record(cache, nonce_of(2), kNow - 200));
  EXPECT_FALSE(record(cache, nonce_of(2), kNow));
  EXPECT_FALSE(record(cache, nonce_of(1), kNow - 100));
}

TEST(ReplayCache, RemembersEveryOneOfManyRequests) {
  // Enough to make each bucket's table grow many times over.
  constexpr int kRequests = 50'000;
  ReplayCache cache(kRequests, kRequests);
  for (int i = 0; i < kRequests; ++i) ASSERT_TRUE(record(cache, nonce_of(i), kNow + i / 1000));
  EXPECT_EQ(cache.size(), static_cast<std::size_t>(kRequests));
  for (int i = 0; i < kRequests; i += 7) {
    auto again = record(cache, nonce_of(i), kNow + 60);
    ASSERT_FALSE(again) << i;
    EXPECT_EQ(again.error().code, Errc::replayed_request);
  }
  crypto::KeyId other = kKey;
  other[7] = 0;
  EXPECT_EQ(record(cache, nonce_of(1), kNow + 60, {}, other).error().code, Errc::overloaded);
}

TEST(ReplayCache, ReleasedReservationFreesThePairAndTheSlotAtOnce) {
  ReplayCache cache(100);
  {
    auto reservation = cache.reserve("key_a", kKey, nonce_of(1), kNow);
    ASSERT_TRUE(reservation);
    EXPECT_EQ(cache.size(), 1u);
    EXPECT_EQ(cache.held("key_a"), 1u);
    // While it is reserved, a copy of the request is a replay.
    auto copy = cache.reserve("key_b", kKey, nonce_of(1), kNow);
    ASSERT_FALSE(copy);
    EXPECT_EQ(copy.error().code, Errc::replayed_request);
    reservation->release();
    EXPECT_EQ(cache.size(), 0u);
    EXPECT_EQ(cache.held("key_a"), 0u);
    reservation->release();  // twice is harmless
    EXPECT_EQ(cache.size(), 0u);
  }
  // Not committed: dropping the reservation releases it too.
  { ASSERT_TRUE(cache.reserve("key_a", kKey, nonce_of(1), kNow)); }
  EXPECT_EQ(cache.size(), 0u);
  // A released pair may be reserved again (that request was never answered), and once
  // committed it is a replay for the whole window.
  ASSERT_TRUE(record(cache, nonce_of(1), kNow, "key_a"));
  EXPECT_EQ(record(cache, nonce_of(1), kNow + 1, "key_b").error().code, Errc::replayed_request);
  EXPECT_EQ(cache.size(), 1u);
}

TEST(ReplayCache, MovedReservationIsReleasedOnceAndCommittedOnce) {
  ReplayCache cache(100);
  auto first = cache.reserve("key_a", kKey, nonce_of(1), kNow);
  ASSERT_TRUE(first);
  ReplayCache::Reservation moved = std::move(*first);
  first->release();  // the moved-from object holds nothing
  EXPECT_EQ(cache.size(), 1u);
  auto second = cache.reserve("key_a", kKey, nonce_of(2), kNow);
  ASSERT_TRUE(second);
  moved = std::move(*second);  // releases the first pair, takes the second
  EXPECT_EQ(cache.size(), 1u);
  moved.commit();
  moved.release();  // after commit: nothing to release
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_TRUE(record(cache, nonce_of(1), kNow));
  EXPECT_EQ(record(cache, nonce_of(2), kNow).error().code, Errc::replayed_request);
}

// Finding 4 of issue 30: requests that are refused after authentication (a test key's invalid
// requests) must not take room from anyone.
TEST(ReplayCache, RefusedRequestsOfATenantTakeNoRoom) {
  ReplayCache cache(300);
  for (int i = 0; i < 3000; ++i) {
    auto reservation = cache.reserve("key_test", kKey, nonce_of(i), kNow);
    ASSERT_TRUE(reservation) << i;
    reservation->release();
  }
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_TRUE(record(cache, nonce_of(5000), kNow, "key_live"));
}

TEST(ReplayCache, TenantBeyondItsShareIsRefusedAloneWithTheTimeItsOldestEntryExpires) {
  ReplayCache cache(100, 10);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(record(cache, nonce_of(i), kNow + i * 30, "key_a")) << i;
  const std::int64_t later = kNow + 300;
  auto over = record(cache, nonce_of(100), later, "key_a");
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, Errc::replay_quota_exceeded);
  EXPECT_NE(over.error().message.find("10 requests"), std::string::npos) << over.error().message;
  // Its oldest entry is in the bucket of kNow: it expires a window after that bucket's end.
  const std::int64_t bucket_start = kNow - kNow % kReplayBucketSeconds;
  EXPECT_EQ(cache.retry_after("key_a", later), bucket_start + kReplayBucketSeconds + kReplayWindowSeconds - later);
  EXPECT_EQ(cache.retry_after("key_b", later), 1);
  // A replay is still called a replay, not a quota matter.
  EXPECT_EQ(record(cache, nonce_of(3), later, "key_a").error().code, Errc::replayed_request);
  // Everyone else is served meanwhile, the anonymous tenant included.
  EXPECT_TRUE(record(cache, nonce_of(100), later, "key_b"));
  EXPECT_TRUE(record(cache, nonce_of(101), later));
  // Once its oldest bucket expired, the tenant has room again, and no more than that.
  const std::int64_t expired = bucket_start + kReplayBucketSeconds + kReplayWindowSeconds;
  const std::size_t left = cache.held("key_a");
  EXPECT_TRUE(record(cache, nonce_of(200), expired, "key_a"));
  EXPECT_LE(cache.held("key_a"), left);
}

TEST(ReplayCache, ReservationsInFlightCountAgainstTheShare) {
  ReplayCache cache(100, 4);
  std::vector<ReplayCache::Reservation> in_flight;
  for (int i = 0; i < 4; ++i) {
    auto reservation = cache.reserve("key_a", kKey, nonce_of(i), kNow);
    ASSERT_TRUE(reservation);
    in_flight.push_back(std::move(*reservation));
  }
  EXPECT_EQ(cache.reserve("key_a", kKey, nonce_of(9), kNow).error().code, Errc::replay_quota_exceeded);
  EXPECT_EQ(cache.retry_after("key_a", kNow), 1);  // nothing committed: its slots free within moments
  in_flight.pop_back();
  EXPECT_TRUE(cache.reserve("key_a", kKey, nonce_of(9), kNow));
}

TEST(ReplayCache, ManyTenantsTogetherFillItAndThenItIsOverloadedForEveryone) {
  ReplayCache cache(6, 2);
  for (const std::string tenant : {"key_a", "key_b", "key_c"})
    for (int i = 0; i < 2; ++i) ASSERT_TRUE(record(cache, nonce_of(static_cast<int>(cache.size())), kNow, tenant));
  auto full = record(cache, nonce_of(50), kNow, "key_d");
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, Errc::overloaded);
  EXPECT_EQ(cache.held("key_d"), 0u);
}

TEST(ReplayCache, DefaultShareIsAnEighthWithAFloorAndNeverTheWholeCache) {
  EXPECT_EQ(default_tenant_share(std::size_t{1} << 20), std::size_t{1} << 17);
  EXPECT_EQ(default_tenant_share(300), 64u);
  EXPECT_EQ(default_tenant_share(1000), 125u);
  EXPECT_EQ(default_tenant_share(100), 50u);
  EXPECT_EQ(default_tenant_share(2), 1u);
  EXPECT_EQ(default_tenant_share(1), 1u);
  EXPECT_EQ(ReplayCache(300).tenant_share(), 64u);
  EXPECT_EQ(ReplayCache(300, 500).tenant_share(), 300u);  // never more than the cache
  for (std::size_t capacity = 2; capacity < 5000; capacity += 7) EXPECT_LT(default_tenant_share(capacity), capacity);
}

// Of concurrent copies of one request, exactly one holds the pair; the others are replays.
TEST(ReplayCache, ConcurrentReservationsOfOnePairHaveExactlyOneWinner) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 200;
  ReplayCache cache(100'000, 100'000);
  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::optional<ReplayCache::Reservation>> won(kThreads);
    std::vector<Errc> refused(kThreads, Errc::internal_error);
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        ready.fetch_add(1);
        while (ready.load() < kThreads) std::this_thread::yield();
        auto reservation = cache.reserve("key_" + std::to_string(t), kKey, nonce_of(round), kNow);
        if (reservation) {
          won[t] = std::move(*reservation);
        } else {
          refused[t] = reservation.error().code;
        }
      });
    }
    for (auto& thread : threads) thread.join();
    int winners = 0;
    for (int t = 0; t < kThreads; ++t) {
      if (won[t]) {
        ++winners;
        // Half the rounds the winner is answered, half refused: either way no copy is left to win.
        if (round % 2 == 0) won[t]->commit();
      } else {
        EXPECT_EQ(refused[t], Errc::replayed_request);
      }
    }
    ASSERT_EQ(winners, 1) << "round " << round;
  }
  EXPECT_EQ(cache.size(), static_cast<std::size_t>(kRounds / 2));
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
