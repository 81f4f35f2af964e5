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

// Issue 30 item 3: entries record notAfter and the trust settings they were verified under; at
// start the ones verified under other settings, of unknown age or expiring are dropped.
TEST(DekStore, KeepsNotAfterAndTrustAndDropsWhatTheseSettingsDidNotVerify) {
  test::TempDir dir;
  const fs::path path = dir.file("deks.json");
  protocol::AttestationPolicy policy;
  policy.allowed_providers = {"simulated"};
  policy.expected_measurement = std::vector<std::uint8_t>(32, 0xAA);
  const std::string trust = trust_digest(policy);
  constexpr std::int64_t kNow = 1'800'000'000;
  const auto with = [&](std::optional<std::int64_t> not_after, std::string verified_under) {
    Dek dek{fresh_keys(), kNow - 10, 1, std::move(verified_under)};
    dek.keys.not_after = not_after;
    return dek;
  };
  {
    auto store = DekStore::open(path);
    ASSERT_TRUE(store);
    ASSERT_TRUE((*store)->put(api_key_digest("sk_test_good"), with(kNow + 3600, trust)));
    ASSERT_TRUE((*store)->put(api_key_digest("sk_test_other"), with(kNow + 3600, std::string(64, '0'))));
    ASSERT_TRUE((*store)->put(api_key_digest("sk_test_unknown"), with(kNow + 3600, "")));
    ASSERT_TRUE((*store)->put(api_key_digest("sk_test_no_age"), with(std::nullopt, trust)));
    ASSERT_TRUE((*store)->put(api_key_digest("sk_test_expiring"), with(kNow + 30, trust)));
  }
  auto reopened = DekStore::open(path);
  ASSERT_TRUE(reopened) << reopened.error().to_string();
  auto good = (*reopened)->find(api_key_digest("sk_test_good"));
  ASSERT_TRUE(good);
  EXPECT_EQ(good->keys.not_after, kNow + 3600);
  EXPECT_EQ(good->trust, trust);
  EXPECT_EQ((*reopened)->size(), 5u);

  auto dropped = (*reopened)->drop_unverified(trust, kNow);
  ASSERT_TRUE(dropped);
  EXPECT_EQ(*dropped, 4u);
  EXPECT_TRUE((*reopened)->find(api_key_digest("sk_test_good")));
  auto after = DekStore::open(path);
  ASSERT_TRUE(after);
  EXPECT_EQ((*after)->size(), 1u) << "the dropped keys are gone from the file too";

  // Another measurement is another trust digest; so is the platform key.
  auto other = policy;
  other.expected_measurement = std::vector<std::uint8_t>(32, 0xBB);
  EXPECT_NE(trust_digest(other), trust);
  other = policy;
  other.simulated_platform_key = crypto::Ed25519PublicKey{};
  EXPECT_NE(trust_digest(other), trust);
  EXPECT_EQ(trust_digest(policy), trust);
  // So is another hardware policy or trust root (--attestation-policy, --attestation-trust-root).
  other = policy;
  other.hardware_trust = "policy {\"allowDebug\":true}\nroots pinned";
  const std::string hardware = trust_digest(other);
  EXPECT_NE(hardware, trust);
  other.hardware_trust = "policy {\"allowDebug\":false}\nroots pinned";
  EXPECT_NE(trust_digest(other), hardware);
}

TEST(DekStore, StoresOfOlderReleasesStillLoad) {
  test::TempDir dir;
  const fs::path path = dir.file("deks.json");
  const client::EncryptionKeys keys = fresh_keys();
  const std::string digest = api_key_digest("sk_test_old");
  {
    std::ofstream out(path);
    out << R"({"version":1,"keys":{")" << digest << R"(":{"keys":)" << keys.to_json()
        << R"(,"createdAt":1700000000,"requests":2}}})";
  }
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write);
  auto store = DekStore::open(path);
  ASSERT_TRUE(store) << store.error().to_string();
  auto found = (*store)->find(digest);
  ASSERT_TRUE(found);
  EXPECT_FALSE(found->keys.not_after);
  EXPECT_TRUE(found->trust.empty());
  EXPECT_EQ(*(*store)->drop_unverified(trust_digest({}), 1'700'000'000), 1u) << "unknown age: verified afresh";
}

TEST(DekPolicy, RotatesNearTheEnclaveKeysNotAfter) {
  DekPolicy unlimited{0, std::chrono::seconds(0)};
  Dek dek{fresh_keys(), 1000, 0};
  dek.keys.not_after = 5000;
  EXPECT_FALSE(unlimited.needs_rotation(dek, 5000 - client::kKeyExpiryMargin.count() - 1));
  EXPECT_TRUE(unlimited.needs_rotation(dek, 5000 - client::kKeyExpiryMargin.count()));
  EXPECT_TRUE(unlimited.needs_rotation(dek, 5000));
}

// Issue 21 item 5: DEKs are encapsulations to one enclave key; a rotating enclave's key is
// replaced at notAfter − grace, so they are re-made at their refreshAt (kept in the store).
TEST(DekPolicy, RotatesAtTheKeysRefreshAtAndTheStoreKeepsIt) {
  DekPolicy unlimited{0, std::chrono::seconds(0)};
  Dek dek{fresh_keys(), 1000, 0};
  dek.keys.not_after = 1004;
  dek.keys.refresh_at = client::refresh_time(1004, 1000);
  EXPECT_EQ(dek.keys.refresh_at, 1002);
  EXPECT_FALSE(unlimited.needs_rotation(dek, 1001));
  EXPECT_TRUE(unlimited.needs_rotation(dek, 1002));
  auto loaded = client::EncryptionKeys::from_json(dek.keys.to_json());
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->refresh_at, 1002);
}

// Keys verified while binding 1 was accepted are not reused once binding 2 is required.
TEST(DekStore, TrustDigestCoversTheBindingRequired) {
  protocol::AttestationPolicy policy;
  auto lenient = policy;
  lenient.min_binding = protocol::Binding::v1;
  EXPECT_NE(trust_digest(policy), trust_digest(lenient));
}

}  // namespace
}  // namespace rvenc::proxy
