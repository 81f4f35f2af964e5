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

crypto::Sha256Digest digest_of(int i) {
  crypto::Sha256Digest d{};
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

}  // namespace
}  // namespace rvenc::enclave
