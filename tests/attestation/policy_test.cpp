// The policy file (parse_policy): the shape of issue 21 item 4, strictness (a typo must not accept
// everything), bounds, the canonical form; and verify()'s provider check.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "rvenc/attestation/verifier.hpp"
#include "rvenc/common/hex.hpp"
#include "support/test_support.hpp"

namespace rvenc::attestation {
namespace {

const std::string kHex48(96, 'a');
const std::string kHex32(64, 'b');

std::string full_policy() {
  return R"({"providers": ["tdx", "sev-snp"], "allowDebug": false,
    "tdx": {"mrtd": [")" + kHex48 + R"("], "rtmr0": [")" + kHex48 + R"(", ")" + std::string(96, 'c') + R"("],
            "rtmr1": [], "rtmr2": [], "rtmr3": [], "mrseam": [")" + kHex48 + R"("],
            "xfam": ["e702060000000000"], "minTcbStatus": "SWHardeningNeeded"},
    "sevSnp": {"measurement": [")" + kHex48 + R"("], "hostData": [")" + kHex32 + R"("],
               "idKeyDigest": [], "authorKeyDigest": [], "minTcb": "0300000000000873",
               "allowSmt": false, "allowMigrationAgent": false}})";
}

void expect_malformed(const std::string& json, const std::string& names) {
  const auto policy = parse_policy(json);
  ASSERT_FALSE(policy.has_value()) << json;
  EXPECT_EQ(policy.error().check, Check::malformed);
  EXPECT_NE(policy.error().message.find(names), std::string::npos) << policy.error().message;
}

TEST(AttestationPolicy, ParsesTheIssueShape) {
  const auto policy = parse_policy(full_policy());
  ASSERT_TRUE(policy.has_value()) << policy.error().message;
  EXPECT_EQ(policy->providers, (std::vector<std::string>{"tdx", "sev-snp"}));
  EXPECT_FALSE(policy->allow_debug);
  ASSERT_EQ(policy->tdx.mrtd.size(), 1U);
  EXPECT_EQ(to_hex(policy->tdx.mrtd[0]), kHex48);
  EXPECT_EQ(policy->tdx.rtmr0.size(), 2U);
  EXPECT_TRUE(policy->tdx.rtmr1.empty());
  EXPECT_EQ(policy->tdx.xfam.at(0).size(), 8U);
  EXPECT_EQ(policy->tdx.min_tcb_status, "SWHardeningNeeded");
  EXPECT_EQ(policy->sev_snp.host_data.at(0).size(), 32U);
  // Report order: bootloader 3 in byte 0, microcode 0x73 in byte 7.
  ASSERT_TRUE(policy->sev_snp.min_tcb.has_value());
  EXPECT_EQ(*policy->sev_snp.min_tcb, 0x7308000000000003ULL);
  EXPECT_FALSE(policy->sev_snp.allow_smt);
}

TEST(AttestationPolicy, EmptyObjectIsTheStrictDefault) {
  const auto policy = parse_policy("{}");
  ASSERT_TRUE(policy.has_value()) << policy.error().message;
  EXPECT_FALSE(policy->allow_debug);  // never by default
  EXPECT_EQ(policy->providers.size(), 2U);
  EXPECT_EQ(policy->tdx.min_tcb_status, "UpToDate");
  EXPECT_FALSE(policy->sev_snp.min_tcb.has_value());
  EXPECT_FALSE(policy->sev_snp.allow_migration_agent);
}

TEST(AttestationPolicy, UnknownKeysAreRefusedByName) {
  expect_malformed(R"({"allowDebg": true})", "\"allowDebg\"");
  expect_malformed(R"({"tdx": {"mrtdd": []}})", "\"mrtdd\"");
  expect_malformed(R"({"sevSnp": {"measurements": []}})", "\"measurements\"");
  expect_malformed(R"({"sev_snp": {}})", "\"sev_snp\"");
}

TEST(AttestationPolicy, ValuesOfTheWrongShapeAreRefusedByKey) {
  expect_malformed(R"({"tdx": {"mrtd": ["abcd"]}})", "tdx.mrtd");
  expect_malformed(R"({"sevSnp": {"hostData": [")" + kHex48 + R"("]}})", "sevSnp.hostData");
  expect_malformed(R"({"sevSnp": {"measurement": [")" + std::string(95, 'a') + "g" + R"("]}})", "sevSnp.measurement");
  expect_malformed(R"({"sevSnp": {"measurement": ")" + kHex48 + R"("}})", "sevSnp.measurement");
  expect_malformed(R"({"tdx": {"xfam": [")" + kHex32 + R"("]}})", "tdx.xfam");
  expect_malformed(R"({"tdx": {"minTcbStatus": "Revoked"}})", "tdx.minTcbStatus");
  expect_malformed(R"({"sevSnp": {"minTcb": "0300"}})", "sevSnp.minTcb");
  expect_malformed(R"({"sevSnp": {"allowSmt": "yes"}})", "sevSnp.allowSmt");
  expect_malformed(R"({"allowDebug": 1})", "allowDebug");
  expect_malformed(R"({"tdx": []})", "tdx");
  expect_malformed(R"([])", "document");
}

TEST(AttestationPolicy, ProvidersAreHardwareOnlyNonEmptyAndDistinct) {
  expect_malformed(R"({"providers": ["simulated"]})", "providers");
  expect_malformed(R"({"providers": []})", "providers");
  expect_malformed(R"({"providers": ["tdx", "tdx"]})", "twice");
  const auto one = parse_policy(R"({"providers": ["sev-snp"]})");
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ(one->providers, std::vector<std::string>{"sev-snp"});
}

TEST(AttestationPolicy, BadJsonDuplicatesAndSizesAreRefused) {
  expect_malformed("{", "attestation policy");
  expect_malformed(R"({"allowDebug": false, "allowDebug": true})", "allowDebug");
  expect_malformed(std::string(kMaxPolicyBytes + 1, ' '), "larger than");
  std::string many = R"({"tdx": {"mrtd": [)";
  for (std::size_t i = 0; i <= kMaxPolicyValues; ++i) many += (i ? ",\"" : "\"") + kHex48 + "\"";
  expect_malformed(many + "]}}", "at most");
}

TEST(AttestationPolicy, CanonicalFormRoundTrips) {
  const auto policy = parse_policy(full_policy());
  ASSERT_TRUE(policy.has_value());
  const std::string canonical = serialize_policy(*policy);
  const auto again = parse_policy(canonical);
  ASSERT_TRUE(again.has_value()) << again.error().message;
  EXPECT_EQ(serialize_policy(*again), canonical);
  EXPECT_NE(canonical.find("\"minTcb\":\"0300000000000873\""), std::string::npos) << canonical;
  EXPECT_NE(serialize_policy(Policy{}), canonical);
}

TEST(AttestationPolicy, LoadsAFileAndNamesAMissingOne) {
  test::TempDir dir;
  const auto file = dir.file("policy.json");
  std::ofstream(file) << R"({"allowDebug": true})";
  const auto policy = load_policy(file);
  ASSERT_TRUE(policy.has_value()) << policy.error().message;
  EXPECT_TRUE(policy->allow_debug);
  const auto missing = load_policy(dir.file("absent.json"));
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().message.find("absent.json"), std::string::npos);
}

TEST(AttestationVerify, RefusesAProviderThePolicyDoesNotList) {
  Policy policy;
  policy.providers = {"tdx"};
  const Collateral collateral;
  const TrustAnchors anchors = pinned_roots(Provider::sev_snp);
  const Bytes evidence(1184, 0);
  const auto verified = verify(Provider::sev_snp, VerifyInput{evidence, collateral, anchors, policy, 0, std::nullopt});
  ASSERT_FALSE(verified.has_value());
  EXPECT_EQ(verified.error().check, Check::measurement);
  EXPECT_NE(verified.error().message.find("sev-snp"), std::string::npos);
}

}  // namespace
}  // namespace rvenc::attestation
