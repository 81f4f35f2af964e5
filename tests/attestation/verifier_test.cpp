// The shared pieces of the verifiers: check names, failures, collateral loading, pinned roots.
#include "rvenc/attestation/verifier.hpp"

#include <gtest/gtest.h>

#include "support/attestation_test_support.hpp"

namespace rvenc::attestation {
namespace {

TEST(AttestationVerifier, FailureMessageStartsWithTheCheckName) {
  const auto failure = fail(Check::tcb_status, "no TCB level matches");
  EXPECT_EQ(failure.error().check, Check::tcb_status);
  EXPECT_EQ(failure.error().message, "tcb_status: no TCB level matches");
  EXPECT_EQ(check_name(Check::report_data), "report_data");
}

TEST(AttestationVerifier, ProvidersByName) {
  EXPECT_EQ(provider_from_name("tdx"), Provider::tdx);
  EXPECT_EQ(provider_from_name("sev-snp"), Provider::sev_snp);
  EXPECT_FALSE(provider_from_name("simulated").has_value());
  EXPECT_EQ(provider_name(Provider::sev_snp), "sev-snp");
}

TEST(AttestationVerifier, LoadsACollateralDirectoryByFileName) {
  const auto collateral = Collateral::load_dir(test::attestation_fixtures() / "sev-snp" / "milan-virtee");
  ASSERT_TRUE(collateral.has_value()) << collateral.error().message;
  ASSERT_NE(collateral->find("report.bin"), nullptr);
  EXPECT_EQ(collateral->find("report.bin")->size(), 1184U);
  EXPECT_NE(collateral->find("vcek.der"), nullptr);
  EXPECT_EQ(collateral->find("quote.dat"), nullptr);
}

TEST(AttestationVerifier, MissingCollateralDirectoryIsMalformed) {
  const auto collateral = Collateral::load_dir("/nonexistent/rvenc-collateral");
  ASSERT_FALSE(collateral.has_value());
  EXPECT_EQ(collateral.error().check, Check::malformed);
}

TEST(AttestationVerifier, PinsTheVendorsRoots) {
  EXPECT_EQ(pinned_roots(Provider::tdx).pem_roots.size(), 1U);
  EXPECT_EQ(pinned_roots(Provider::sev_snp).pem_roots.size(), 3U);  // Milan, Genoa, Turin
}

}  // namespace
}  // namespace rvenc::attestation
