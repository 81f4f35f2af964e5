// Client settings: flags/env over DIR/stack.json (shared/CLI.md), and their validation.
#include <fstream>

#include <gtest/gtest.h>

#include "rvenc/client/settings.hpp"
#include "rvenc/common/hex.hpp"
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

TEST(ClientSettings, DefaultsWithoutAnyStack) {
  auto options = resolve_settings({.api_key = "sk_test_abc"});
  ASSERT_TRUE(options);
  EXPECT_EQ(options->base_url, kDefaultBaseUrl);
  EXPECT_FALSE(options->attestation.simulated_platform_key);
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

}  // namespace
}  // namespace rvenc::client
