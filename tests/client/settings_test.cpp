// Client settings: flags/env over DIR/stack.json (shared/CLI.md), and their validation.
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "rvenc/client/settings.hpp"
#include "rvenc/common/hex.hpp"
#include "support/attestation_test_support.hpp"
#include "support/test_support.hpp"

namespace rvenc::client {
namespace {

constexpr std::string_view kPlatformKey = "5b0d484fd033d2ac20a8bbcfd345da0acbbd90cb4d91a6b5e080e94af1bed8f9";

void write_stack(const test::TempDir& dir, std::string_view text) { std::ofstream(dir.file("stack.json")) << text; }

TEST(ClientSettings, StackJsonSuppliesGatewayKeyAndPlatformKey) {
  test::TempDir dir;
  write_stack(dir, R"({"gatewayUrl":"http://127.0.0.1:9999","apiKey":"sk_test_abc","platformPublicKey":")" +
                       std::string(kPlatformKey) + R"(","db":"x"})");
  auto options = resolve_settings({.data_dir = dir.path().string()});
  ASSERT_TRUE(options) << options.error().to_string();
  EXPECT_EQ(options->base_url, "http://127.0.0.1:9999");
  EXPECT_EQ(options->api_key, "sk_test_abc");
  ASSERT_TRUE(options->attestation.simulated_platform_key);
  EXPECT_EQ(to_hex(*options->attestation.simulated_platform_key), kPlatformKey);
  EXPECT_EQ(options->protocol_version, protocol::Version::v3);
}

TEST(ClientSettings, ExplicitSettingsWinOverStackJson) {
  test::TempDir dir;
  write_stack(dir, R"({"gatewayUrl":"http://127.0.0.1:9999","apiKey":"sk_test_abc"})");
  auto options = resolve_settings({.gateway = "http://127.0.0.1:1234", .data_dir = dir.path().string(), .protocol = 1});
  ASSERT_TRUE(options);
  EXPECT_EQ(options->base_url, "http://127.0.0.1:1234");
  EXPECT_TRUE(options->api_key.empty());  // nothing is mixed in from the file
  EXPECT_EQ(options->protocol_version, protocol::Version::v1);
}

// Issue 29: `rvenc chat --data D --api-key K` went to the default gateway (any of the three
// settings given made the stack file ignored as a whole).
TEST(ClientSettings, EachFieldResolvesOnItsOwn) {
  test::TempDir dir;
  write_stack(dir, R"({"gatewayUrl":"http://127.0.0.1:9999","apiKey":"sk_test_abc","platformPublicKey":")" +
                       std::string(kPlatformKey) + R"("})");
  auto options = resolve_settings({.api_key = "sk_test_mine", .data_dir = dir.path().string()});
  ASSERT_TRUE(options) << options.error().to_string();
  EXPECT_EQ(options->base_url, "http://127.0.0.1:9999");
  EXPECT_EQ(options->api_key, "sk_test_mine");
  ASSERT_TRUE(options->attestation.simulated_platform_key);
  EXPECT_EQ(to_hex(*options->attestation.simulated_platform_key), kPlatformKey);

  // The same gateway given by flag (trailing slash or not) still takes the stack's key.
  auto same = resolve_settings({.gateway = "http://127.0.0.1:9999/", .data_dir = dir.path().string()});
  ASSERT_TRUE(same);
  EXPECT_EQ(same->api_key, "sk_test_abc");
}

TEST(ClientSettings, ExplicitDataBeatsTheGatewayVariableButNotTheFlag) {
  test::TempDir dir;
  write_stack(dir, R"({"gatewayUrl":"http://127.0.0.1:9999","apiKey":"sk_test_abc"})");
  auto from_env = resolve_settings({.gateway = "http://127.0.0.1:1",
                                    .data_dir = dir.path().string(),
                                    .gateway_from_env = true,
                                    .data_dir_from_flag = true});
  ASSERT_TRUE(from_env);
  EXPECT_EQ(from_env->base_url, "http://127.0.0.1:9999");
  EXPECT_EQ(from_env->api_key, "sk_test_abc");
  // RVENC_DATA is a variable like RVENC_GATEWAY_URL: the more specific gateway variable wins.
  auto both_env = resolve_settings({.gateway = "http://127.0.0.1:1",
                                    .data_dir = dir.path().string(),
                                    .gateway_from_env = true,
                                    .data_dir_from_flag = false});
  ASSERT_TRUE(both_env);
  EXPECT_EQ(both_env->base_url, "http://127.0.0.1:1");
  EXPECT_TRUE(both_env->api_key.empty());
}

// `rvenc up --tls` writes the CA that verifies its https gateway; it goes with that gateway only.
TEST(ClientSettings, StackJsonCaFileGoesWithItsGatewayOnly) {
  test::TempDir dir;
  write_stack(dir, R"({"gatewayUrl":"https://127.0.0.1:9999","apiKey":"sk_test_abc","caFile":"tls/ca.pem"})");
  auto options = resolve_settings({.data_dir = dir.path().string()});
  ASSERT_TRUE(options) << options.error().to_string();
  EXPECT_EQ(options->base_url, "https://127.0.0.1:9999");
  EXPECT_EQ(options->ca_file, (dir.path() / "tls/ca.pem").string());  // relative to stack.json's directory
  auto explicit_ca = resolve_settings({.data_dir = dir.path().string(), .ca_file = "/etc/mine.pem"});
  ASSERT_TRUE(explicit_ca);
  EXPECT_EQ(explicit_ca->ca_file, "/etc/mine.pem");
  auto other_gateway = resolve_settings({.gateway = "https://elsewhere.test", .data_dir = dir.path().string()});
  ASSERT_TRUE(other_gateway);
  EXPECT_TRUE(other_gateway->ca_file.empty());
}

TEST(ClientSettings, DefaultsWithoutAnyStack) {
  auto options = resolve_settings({.api_key = "sk_test_abc"});
  ASSERT_TRUE(options);
  EXPECT_EQ(options->base_url, kDefaultBaseUrl);
  EXPECT_FALSE(options->attestation.simulated_platform_key);
}

TEST(ClientSettings, AttestationPolicyAndTrustRootFilesAreLoaded) {
  test::TempDir dir;
  std::ofstream(dir.file("policy.json")) << R"({"providers": ["tdx"], "tdx": {"minTcbStatus": "SWHardeningNeeded"}})";
  auto options = resolve_settings({.api_key = "sk_test_abc", .attestation_policy = dir.file("policy.json")});
  ASSERT_TRUE(options) << options.error().message;
  EXPECT_EQ(options->attestation.allowed_providers, std::vector<std::string>{"tdx"});
  EXPECT_EQ(options->hardware_policy.tdx.min_tcb_status, "SWHardeningNeeded");
  EXPECT_FALSE(options->trust_anchors) << "the vendors' roots unless a root is given";

  std::ofstream(dir.file("typo.json")) << R"({"tdx": {"mrtdd": []}})";
  auto typo = resolve_settings({.api_key = "sk_test_abc", .attestation_policy = dir.file("typo.json")});
  ASSERT_FALSE(typo);
  EXPECT_EQ(typo.error().code, Errc::invalid_request);
  EXPECT_NE(typo.error().message.find("--attestation-policy"), std::string::npos) << typo.error().message;
  EXPECT_NE(typo.error().message.find("\"mrtdd\""), std::string::npos) << typo.error().message;

  const auto root = test::attestation_fixtures() / "tdx" / "qvl-synthetic" / "trust_root.pem";
  auto rooted = resolve_settings({.api_key = "sk_test_abc", .attestation_trust_root = root.string()});
  ASSERT_TRUE(rooted) << rooted.error().message;
  ASSERT_TRUE(rooted->trust_anchors);
  EXPECT_EQ(rooted->trust_anchors->pem_roots.size(), 1U);
  auto no_root = resolve_settings({.api_key = "sk_test_abc", .attestation_trust_root = dir.file("policy.json")});
  ASSERT_FALSE(no_root);
  EXPECT_NE(no_root.error().message.find("--attestation-trust-root"), std::string::npos);
}

TEST(ClientSettings, ErrorsNameTheSetting) {
  test::TempDir dir;
  auto missing = resolve_settings({.data_dir = dir.path().string()});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("stack.json does not exist"), std::string::npos) << missing.error().message;

  write_stack(dir, "{not json");
  auto broken = resolve_settings({.data_dir = dir.path().string()});
  ASSERT_FALSE(broken);
  EXPECT_NE(broken.error().message.find("not a JSON object"), std::string::npos);

  auto bad_key = resolve_settings({.api_key = "k", .platform_public_key = "abcd"});
  ASSERT_FALSE(bad_key);
  EXPECT_NE(bad_key.error().message.find("platform public key"), std::string::npos);

  auto bad_measurement = resolve_settings({.api_key = "k", .measurement = "xyz"});
  ASSERT_FALSE(bad_measurement);
  EXPECT_NE(bad_measurement.error().message.find("measurement"), std::string::npos);

  auto bad_protocol = resolve_settings({.api_key = "k", .protocol = 4});
  ASSERT_FALSE(bad_protocol);
  EXPECT_EQ(bad_protocol.error().code, Errc::invalid_request);
}


// --- Who may have written stack.json (security review, issue 30 item 6) ---------------------

// Another gateway, and a platform key that would make its attestation "verify".
constexpr std::string_view kPlanted =
    R"({"gatewayUrl":"http://127.0.0.1:6666","platformPublicKey":")"
    "5b0d484fd033d2ac20a8bbcfd345da0acbbd90cb4d91a6b5e080e94af1bed8f9\"}";

std::string refusal(const std::string& data_dir) {
  auto options = resolve_settings({.data_dir = data_dir});
  if (options) return "accepted " + options->base_url;
  EXPECT_EQ(options.error().code, Errc::invalid_request);
  return options.error().message;
}

TEST(ClientSettingsTrust, FileInADirectoryOthersMayWriteIsRefused) {
  test::TempDir dir;
  write_stack(dir, kPlanted);
  ASSERT_EQ(::chmod(dir.file("stack.json").c_str(), 0644), 0);
  ASSERT_EQ(::chmod(dir.path().c_str(), 0777), 0);
  const std::string message = refusal(dir.path().string());
  EXPECT_NE(message.find(dir.path().string() + " (the directory of"), std::string::npos) << message;
  EXPECT_NE(message.find("writable by group/others (mode 0777)"), std::string::npos) << message;
  EXPECT_NE(message.find("chmod go-w " + dir.path().string()), std::string::npos) << message;
}

TEST(ClientSettingsTrust, FileOthersMayWriteIsRefused) {
  test::TempDir dir;
  write_stack(dir, kPlanted);
  ASSERT_EQ(::chmod(dir.file("stack.json").c_str(), 0664), 0);
  const std::string message = refusal(dir.path().string());
  EXPECT_NE(message.find(dir.file("stack.json") + " is writable by group/others (mode 0664); fix with chmod go-w " +
                         dir.file("stack.json")),
            std::string::npos)
      << message;
}

TEST(ClientSettingsTrust, DefaultDirectoryIsCheckedToo) {
  // The finding: a bare `rvenc attest` in a directory where someone planted .rvenc/stack.json.
  test::TempDir cwd;
  const std::filesystem::path planted = cwd.path() / kDefaultDataDir;
  std::filesystem::create_directory(planted);
  std::ofstream(planted / kStackFileName) << kPlanted;
  ASSERT_EQ(::chmod((planted / kStackFileName).c_str(), 0644), 0);
  ASSERT_EQ(::chmod(planted.c_str(), 0777), 0);
  const auto previous = std::filesystem::current_path();
  std::filesystem::current_path(cwd.path());
  auto options = resolve_settings({});
  std::filesystem::current_path(previous);
  ASSERT_FALSE(options) << "trusted " << options->base_url;
  EXPECT_NE(options.error().message.find("writable by group/others"), std::string::npos) << options.error().message;
}

TEST(ClientSettingsTrust, PrivateFileOfThisUserIsRead) {
  test::TempDir dir;  // 0700, as `rvenc up` makes it
  write_stack(dir, kPlanted);
  ASSERT_EQ(::chmod(dir.file("stack.json").c_str(), 0600), 0);
  EXPECT_EQ(refusal(dir.path().string()), "accepted http://127.0.0.1:6666");
  ASSERT_EQ(::chmod(dir.file("stack.json").c_str(), 0644), 0);  // readable by others is fine
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  EXPECT_EQ(refusal(dir.path().string()), "accepted http://127.0.0.1:6666");
}

TEST(ClientSettingsTrust, FifoIsRefusedWithoutBlocking) {
  test::TempDir dir;
  ASSERT_EQ(::mkfifo(dir.file("stack.json").c_str(), 0600), 0);
  const std::string message = refusal(dir.path().string());
  EXPECT_NE(message.find("is not a regular file"), std::string::npos) << message;
}

// Giving a file to another user needs root (CI runs the tests as root).
constexpr uid_t kOtherUid = 12345;

TEST(ClientSettingsTrust, FileOfAnotherUserIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "chown to another user needs root";
  test::TempDir dir;
  write_stack(dir, kPlanted);
  ASSERT_EQ(::chmod(dir.file("stack.json").c_str(), 0644), 0);
  ASSERT_EQ(::chown(dir.file("stack.json").c_str(), kOtherUid, kOtherUid), 0);
  const std::string message = refusal(dir.path().string());
  EXPECT_NE(message.find(dir.file("stack.json") + " is owned by uid 12345, not you"), std::string::npos) << message;
}

TEST(ClientSettingsTrust, DirectoryOfAnotherUserIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "chown to another user needs root";
  test::TempDir dir;
  write_stack(dir, kPlanted);
  ASSERT_EQ(::chown(dir.path().c_str(), kOtherUid, kOtherUid), 0);
  const std::string message = refusal(dir.path().string());
  EXPECT_NE(message.find("(the directory of " + dir.file("stack.json") + ") is owned by uid 12345"), std::string::npos)
      << message;
}

TEST(ClientSettingsTrust, SymbolicLinkIsFollowedOnlyWhenWeOwnIt) {
  test::TempDir target;
  write_stack(target, kPlanted);
  test::TempDir dir;
  ASSERT_EQ(::symlink(target.file("stack.json").c_str(), dir.file("stack.json").c_str()), 0);
  EXPECT_EQ(refusal(dir.path().string()), "accepted http://127.0.0.1:6666");

  if (::geteuid() != 0) GTEST_SKIP() << "lchown to another user needs root";
  ASSERT_EQ(::lchown(dir.file("stack.json").c_str(), kOtherUid, kOtherUid), 0);
  const std::string message = refusal(dir.path().string());
  EXPECT_NE(message.find(dir.file("stack.json") + " (a symbolic link) is owned by uid 12345"), std::string::npos)
      << message;
}

}  // namespace
}  // namespace rvenc::client
