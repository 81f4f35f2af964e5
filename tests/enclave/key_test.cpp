#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "rvenc/enclave/key.hpp"
#include "support/test_support.hpp"

namespace rvenc::enclave {
namespace {

namespace fs = std::filesystem;

void write_file(const std::string& path, std::string_view bytes, fs::perms perms) {
  std::ofstream(path, std::ios::binary) << bytes;
  fs::permissions(path, perms);
}

TEST(SeedFile, CreatedWithMode0600AndReloadedUnchanged) {
  rvenc::test::TempDir dir;
  const auto path = dir.file("enclave.key");
  auto first = load_or_create_seed_file(path, "key file");
  ASSERT_TRUE(first) << first.error().to_string();
  EXPECT_TRUE(first->created);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 32);

  auto second = load_or_create_seed_file(path, "key file");
  ASSERT_TRUE(second) << second.error().to_string();
  EXPECT_FALSE(second->created);
  EXPECT_TRUE(first->seed == second->seed);
}

TEST(SeedFile, RefusesWrongSize) {
  rvenc::test::TempDir dir;
  const auto path = dir.file("short.key");
  write_file(path, std::string(31, 'x'), fs::perms::owner_read | fs::perms::owner_write);
  auto seed = load_or_create_seed_file(path, "key file");
  ASSERT_FALSE(seed);
  EXPECT_EQ(seed.error().code, Errc::invalid_request);
  EXPECT_NE(seed.error().message.find("32"), std::string::npos);
}

TEST(SeedFile, RefusesGroupOrWorldReadable) {
  rvenc::test::TempDir dir;
  const auto path = dir.file("open.key");
  write_file(path, std::string(32, 'x'), fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  auto seed = load_or_create_seed_file(path, "key file");
  ASSERT_FALSE(seed);
  EXPECT_EQ(seed.error().code, Errc::invalid_request);
  EXPECT_NE(seed.error().message.find("chmod 600"), std::string::npos);

  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write | fs::perms::others_read);
  EXPECT_FALSE(load_or_create_seed_file(path, "key file"));
}

TEST(SeedFile, RefusesDirectory) {
  rvenc::test::TempDir dir;
  fs::create_directory(dir.path() / "d");
  fs::permissions(dir.path() / "d", fs::perms::owner_all);
  EXPECT_FALSE(load_or_create_seed_file(dir.path() / "d", "key file"));
}

crypto::Blake2b256Digest digest_of(int i) {
  crypto::Blake2b256Digest d{};
  d[0] = static_cast<std::uint8_t>(i);
  return d;
}

crypto::SharedSecret secret_of(int i) {
  crypto::SharedSecret s;
  s.data()[0] = static_cast<std::uint8_t>(i);
  return s;
}

TEST(SharedSecretCache, EvictsLeastRecentlyUsed) {
  SharedSecretCache cache(2);
  cache.insert(digest_of(1), secret_of(1));
  cache.insert(digest_of(2), secret_of(2));
  ASSERT_TRUE(cache.find(digest_of(1)));  // 1 is now the most recent
  cache.insert(digest_of(3), secret_of(3));
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_FALSE(cache.find(digest_of(2)));
  auto one = cache.find(digest_of(1));
  ASSERT_TRUE(one);
  EXPECT_TRUE(*one == secret_of(1));
  auto three = cache.find(digest_of(3));
  ASSERT_TRUE(three);
  EXPECT_TRUE(*three == secret_of(3));
}

TEST(SharedSecretCache, InsertRefreshesExistingEntry) {
  SharedSecretCache cache(2);
  cache.insert(digest_of(1), secret_of(1));
  cache.insert(digest_of(1), secret_of(9));
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_TRUE(*cache.find(digest_of(1)) == secret_of(9));
}

TEST(EnclaveKey, DecapsulatesWhatTheClientEncapsulatedAndCachesIt) {
  crypto::XWingSeed seed;
  crypto::random_bytes(seed.span());
  EnclaveKey key(seed, 1234, 8);
  EXPECT_EQ(key.key_id(), crypto::key_id(key.public_key()));
  EXPECT_EQ(key.not_after(), 1234);

  auto encapsulation = crypto::xwing_encapsulate(key.public_key());
  ASSERT_TRUE(encapsulation);
  auto first = key.decapsulate(encapsulation->cipher_text);
  ASSERT_TRUE(first);
  EXPECT_TRUE(*first == encapsulation->shared_secret);
  EXPECT_EQ(key.cache().size(), 1u);
  auto second = key.decapsulate(encapsulation->cipher_text);
  ASSERT_TRUE(second);
  EXPECT_TRUE(*second == encapsulation->shared_secret);
  EXPECT_EQ(key.cache().size(), 1u);

  // Another key pair's ciphertext gives an unrelated secret (implicit rejection).
  auto other = crypto::xwing_encapsulate(crypto::xwing_generate_keypair().public_key);
  auto wrong = key.decapsulate(other->cipher_text);
  ASSERT_TRUE(wrong);
  EXPECT_FALSE(*wrong == other->shared_secret);
}

// --- the enclave key file (issue 30 item 3: keys with a lifetime) -----------------------------

constexpr std::chrono::seconds kLifetime{30L * 24 * 3600};
constexpr std::int64_t kNow = 1'800'000'000;

std::uintmax_t size_of(const std::string& path) { return fs::file_size(path); }

TEST(KeyFile, RoundTripsSeedAndNotAfterPrivately) {
  rvenc::test::TempDir dir;
  const auto path = dir.file("enclave.key");
  crypto::Secret<kSeedFileBytes> seed;
  crypto::random_bytes(seed.span());
  ASSERT_TRUE(write_key_file(path, seed, 0x0102030405060708));
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(size_of(path), kKeyFileBytes);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  auto read = read_key_file(path);
  ASSERT_TRUE(read) << read.error().to_string();
  ASSERT_TRUE(*read);
  EXPECT_TRUE((*read)->seed == seed);
  EXPECT_EQ((*read)->not_after, 0x0102030405060708);

  EXPECT_FALSE(*read_key_file(dir.file("missing.key"))) << "a missing file is no error";
}

TEST(KeyFile, RefusesOtherSizesForeignFormatsAndOpenModes) {
  rvenc::test::TempDir dir;
  const auto owner_only = fs::perms::owner_read | fs::perms::owner_write;
  write_file(dir.file("short.key"), std::string(47, 'x'), owner_only);
  write_file(dir.file("foreign.key"), std::string(kKeyFileBytes, 'x'), owner_only);
  for (const char* name : {"short.key", "foreign.key"}) {
    auto read = read_key_file(dir.file(name));
    ASSERT_FALSE(read) << name;
    EXPECT_EQ(read.error().code, Errc::invalid_request);
    EXPECT_NE(read.error().message.find("not an enclave key file"), std::string::npos) << read.error().message;
  }
  crypto::Secret<kSeedFileBytes> seed;
  ASSERT_TRUE(write_key_file(dir.file("open.key"), seed, kNow));
  fs::permissions(dir.file("open.key"), owner_only | fs::perms::group_read);
  auto open = read_key_file(dir.file("open.key"));
  ASSERT_FALSE(open);
  EXPECT_NE(open.error().message.find("chmod 600"), std::string::npos);
}

TEST(LoadEnclaveKey, CreatesTheFileAndKeepsItsNotAfterAcrossRestarts) {
  rvenc::test::TempDir dir;
  const fs::path path = dir.file("enclave.key");
  auto first = load_enclave_key(path, kLifetime, kNow);
  ASSERT_TRUE(first) << first.error().to_string();
  EXPECT_EQ((*first)->not_after(), kNow + kLifetime.count());
  EXPECT_TRUE(first->made_now);
  EXPECT_EQ(size_of(path), kKeyFileBytes);

  // A restart ten days later: the same key, and its notAfter is not pushed out (the old code
  // reset it to now + lifetime at every start).
  auto later = load_enclave_key(path, kLifetime, kNow + 10 * 24 * 3600);
  ASSERT_TRUE(later) << later.error().to_string();
  EXPECT_EQ((*later)->key_id(), (*first)->key_id());
  EXPECT_EQ((*later)->not_after(), kNow + kLifetime.count());
  EXPECT_FALSE(later->made_now);  // it may have served an earlier process
}

TEST(LoadEnclaveKey, LegacySeedFileCountsAsCreatedNowAndIsUpgraded) {
  rvenc::test::TempDir dir;
  const auto path = dir.file("enclave.key");
  crypto::Secret<kSeedFileBytes> seed;
  crypto::random_bytes(seed.span());
  write_file(path, std::string(reinterpret_cast<const char*>(seed.data()), seed.size()),
             fs::perms::owner_read | fs::perms::owner_write);
  const auto legacy_key_id = crypto::key_id(crypto::xwing_keypair_from_seed(seed).public_key);

  auto key = load_enclave_key(fs::path(path), kLifetime, kNow);
  ASSERT_TRUE(key) << key.error().to_string();
  EXPECT_EQ((*key)->key_id(), legacy_key_id);
  EXPECT_FALSE(key->made_now);
  EXPECT_EQ((*key)->not_after(), kNow + kLifetime.count());
  EXPECT_EQ(size_of(path), kKeyFileBytes) << "rewritten with its notAfter";
  auto read = read_key_file(path);
  ASSERT_TRUE(read && *read);
  EXPECT_TRUE((*read)->seed == seed);
  EXPECT_EQ((*read)->not_after, kNow + kLifetime.count());
}

TEST(LoadEnclaveKey, ExpiredOrSoonExpiringKeyIsReplacedByANewOne) {
  for (const std::int64_t not_after : {kNow - 1, kNow, kNow + kKeyRenewBefore.count() - 1}) {
    rvenc::test::TempDir dir;
    const fs::path path = dir.file("enclave.key");
    crypto::Secret<kSeedFileBytes> seed;
    crypto::random_bytes(seed.span());
    ASSERT_TRUE(write_key_file(path, seed, not_after));
    const auto old_key_id = crypto::key_id(crypto::xwing_keypair_from_seed(seed).public_key);

    auto key = load_enclave_key(path, kLifetime, kNow);
    ASSERT_TRUE(key) << key.error().to_string();
    EXPECT_NE((*key)->key_id(), old_key_id) << not_after;
    EXPECT_TRUE(key->made_now);
    EXPECT_EQ((*key)->not_after(), kNow + kLifetime.count());
    auto read = read_key_file(path);
    ASSERT_TRUE(read && *read);
    EXPECT_FALSE((*read)->seed == seed) << "the new key is the one in the file";
    EXPECT_EQ((*read)->not_after, kNow + kLifetime.count());
  }
  // An hour and more left: kept.
  rvenc::test::TempDir dir;
  crypto::Secret<kSeedFileBytes> seed;
  ASSERT_TRUE(write_key_file(dir.file("enclave.key"), seed, kNow + kKeyRenewBefore.count()));
  auto kept = load_enclave_key(fs::path(dir.file("enclave.key")), kLifetime, kNow);
  ASSERT_TRUE(kept);
  EXPECT_EQ((*kept)->key_id(), crypto::key_id(crypto::xwing_keypair_from_seed(seed).public_key));
}

TEST(LoadEnclaveKey, WithoutAFileEveryStartMakesANewKeyInMemory) {
  auto first = load_enclave_key(std::nullopt, kLifetime, kNow);
  auto second = load_enclave_key(std::nullopt, kLifetime, kNow);
  ASSERT_TRUE(first && second);
  EXPECT_NE((*first)->key_id(), (*second)->key_id());
  EXPECT_EQ((*first)->not_after(), kNow + kLifetime.count());
}

}  // namespace
}  // namespace rvenc::enclave
