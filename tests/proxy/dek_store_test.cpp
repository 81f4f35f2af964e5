// The DEK store: private file permissions, round trips across reopen, API keys only as hashes,
// and the rotation policy.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "rvenc/common/hex.hpp"
#include "rvenc/proxy/dek_store.hpp"
#include "support/test_support.hpp"

namespace rvenc::proxy {
namespace {

namespace fs = std::filesystem;

client::EncryptionKeys fresh_keys() {
  const auto pair = crypto::xwing_generate_keypair();
  auto encapsulation = crypto::xwing_encapsulate(pair.public_key);
  EXPECT_TRUE(encapsulation);
  client::EncryptionKeys keys;
  keys.shared_secret = encapsulation->shared_secret;
  keys.cipher_text = encapsulation->cipher_text;
  keys.key_id = crypto::key_id(pair.public_key);
  return keys;
}

mode_t file_mode(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0);
  return st.st_mode & 0777;
}

std::string read_all(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

TEST(DekStore, CreatesAPrivateFile) {
  test::TempDir dir;
  const fs::path path = dir.file("deks.json");
  auto store = DekStore::open(path);
  ASSERT_TRUE(store) << store.error().to_string();
  EXPECT_TRUE(fs::exists(path));
  EXPECT_EQ(file_mode(path), 0600u);
  EXPECT_EQ((*store)->size(), 0u);
}

TEST(DekStore, RefusesAFileOthersCanRead) {
  test::TempDir dir;
  const fs::path path = dir.file("deks.json");
  ASSERT_TRUE(DekStore::open(path));
  for (mode_t mode : {0644, 0640, 0604, 0660, 0602}) {
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    auto store = DekStore::open(path);
    ASSERT_FALSE(store) << std::oct << mode;
    EXPECT_EQ(store.error().code, Errc::invalid_request);
    EXPECT_NE(store.error().message.find("chmod 600"), std::string::npos) << store.error().message;
  }
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  EXPECT_TRUE(DekStore::open(path));
}

TEST(DekStore, RefusesSymlinksDirectoriesAndGarbage) {
  test::TempDir dir;
  const fs::path real = dir.file("real.json");
  ASSERT_TRUE(DekStore::open(real));
  const fs::path link = dir.file("link.json");
  fs::create_symlink(real, link);
  EXPECT_FALSE(DekStore::open(link));
  EXPECT_FALSE(DekStore::open(dir.path()));

  const fs::path garbage = dir.file("garbage.json");
  {
    std::ofstream out(garbage);
    out << R"({"version":1,"keys":{"not-a-digest":{}}})";
  }
  ::chmod(garbage.c_str(), 0600);
  auto store = DekStore::open(garbage);
  ASSERT_FALSE(store);
  EXPECT_NE(store.error().message.find("not a valid store"), std::string::npos);
  // A refused file is left as it was.
  EXPECT_EQ(read_all(garbage), R"({"version":1,"keys":{"not-a-digest":{}}})");
}

TEST(DekStore, KeepsKeysAcrossReopenIndexedByTheKeyHash) {
  test::TempDir dir;
  const fs::path path = dir.file("deks.json");
  const std::string api_key = "sk_test_0123456789abcdefghijklmnopqrstuv";
  const std::string digest = api_key_digest(api_key);
  EXPECT_EQ(digest, to_hex(crypto::sha256(crypto::as_bytes(api_key))));
  const client::EncryptionKeys keys = fresh_keys();
  {
    auto store = DekStore::open(path);
    ASSERT_TRUE(store);
    ASSERT_TRUE((*store)->put(digest, Dek{keys, 1'700'000'000, 3}));
    (*store)->note_requests(digest, 9);
    ASSERT_TRUE((*store)->flush());
  }
  EXPECT_EQ(file_mode(path), 0600u);
  const std::string text = read_all(path);
  EXPECT_EQ(text.find(api_key), std::string::npos) << "the API key must never be stored";
  EXPECT_NE(text.find(digest), std::string::npos);

  auto reopened = DekStore::open(path);
  ASSERT_TRUE(reopened);
  auto found = (*reopened)->find(digest);
  ASSERT_TRUE(found);
  EXPECT_TRUE(found->keys.shared_secret == keys.shared_secret);
  EXPECT_EQ(found->keys.cipher_text, keys.cipher_text);
  EXPECT_EQ(found->keys.key_id, keys.key_id);
  EXPECT_EQ(found->created_at, 1'700'000'000);
  EXPECT_EQ(found->requests, 9u);
  EXPECT_FALSE((*reopened)->find(api_key_digest("sk_test_other")));
}

TEST(DekPolicy, RotatesAfterTheRequestCountOrTheAge) {
  DekPolicy policy;
  policy.max_requests = 3;
  policy.max_age = std::chrono::seconds(60);
  Dek dek{fresh_keys(), 1000, 0};
  EXPECT_FALSE(policy.needs_rotation(dek, 1000));
  dek.requests = 2;
  EXPECT_FALSE(policy.needs_rotation(dek, 1059));
  EXPECT_TRUE(policy.needs_rotation(dek, 1060));
  dek.requests = 3;
  EXPECT_TRUE(policy.needs_rotation(dek, 1001));

  DekPolicy unlimited{0, std::chrono::seconds(0)};
  dek.requests = 1'000'000;
  EXPECT_FALSE(unlimited.needs_rotation(dek, 1'000'000'000));
}

}  // namespace
}  // namespace rvenc::proxy
