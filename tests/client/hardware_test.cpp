// The SDK's hardware verifier (rvenc/client/hardware.hpp) on real evidence: the document's
// collateral goes to the verifier, REPORT_DATA must be the document's reportData, the document's
// measurement the evidence's, and the answer is until when the trust holds.
#include <gtest/gtest.h>

#include "rvenc/attestation/tdx.hpp"
#include "rvenc/client/client.hpp"
#include "rvenc/client/hardware.hpp"
#include "support/attestation_test_support.hpp"

namespace rvenc::client {
namespace {

namespace att = attestation;

// A document carrying the set `dir` of the fixtures, its fields taken from the evidence itself.
protocol::AttestationDocument document_of(const std::string& dir, const std::string& evidence_file,
                                          std::string provider) {
  const auto files = att::Collateral::load_dir(test::attestation_fixtures() / dir);
  EXPECT_TRUE(files) << files.error().message;
  protocol::AttestationDocument doc;
  doc.provider = std::move(provider);
  doc.not_after = 4'000'000'000;
  for (const auto& [name, bytes] : files->files)
    if (name == evidence_file) doc.evidence = bytes;
    else doc.collateral.emplace(name, bytes);
  if (doc.provider == "tdx") {
    const auto quote = att::tdx::parse_quote(doc.evidence);
    EXPECT_TRUE(quote) << quote.error().message;
    std::copy(quote->body.report_data.begin(), quote->body.report_data.end(), doc.report_data.begin());
    doc.measurement.assign(quote->body.mrtd.begin(), quote->body.mrtd.end());
  }
  return doc;
}

TEST(HardwareVerifier, VerifiesTheDocumentsEvidenceWithItsCollateral) {
  const auto root = att::load_trust_anchors(test::attestation_fixtures() / "tdx/qvl-synthetic/trust_root.pem");
  ASSERT_TRUE(root) << root.error().message;
  const auto doc = document_of("tdx/qvl-synthetic", "quote.dat", "tdx");
  const auto verify = hardware_verifier(att::Policy{}, *root);
  const auto until = verify(doc);
  ASSERT_TRUE(until) << until.error().message;
  EXPECT_GT(*until, 0);
  EXPECT_LT(*until, doc.not_after) << "the collateral ends before this key's notAfter";
}

TEST(HardwareVerifier, RefusesWhatTheEvidenceDoesNotSay) {
  const auto root = att::load_trust_anchors(test::attestation_fixtures() / "tdx/qvl-synthetic/trust_root.pem");
  ASSERT_TRUE(root);
  const auto good = document_of("tdx/qvl-synthetic", "quote.dat", "tdx");
  const auto verify = hardware_verifier(att::Policy{}, *root);
  const auto expect_refused = [&](const protocol::AttestationDocument& doc, std::string_view check) {
    const auto until = verify(doc);
    ASSERT_FALSE(until);
    EXPECT_EQ(until.error().code, Errc::attestation_failed);
    EXPECT_NE(until.error().message.find(check), std::string::npos) << until.error().message;
  };
  auto doc = good;
  doc.report_data[0] ^= 1;  // a genuine quote of another key / challenge
  expect_refused(doc, "report_data");
  doc = good;
  doc.measurement[0] ^= 1;  // the host claims another measurement than the quote's
  expect_refused(doc, "measurement");
  doc = good;
  doc.collateral.erase("tcbinfo.json");
  expect_refused(doc, "tdx evidence: ");
  // The pinned roots (no test root given): Intel's real root does not sign this synthetic set.
  const auto pinned = hardware_verifier(att::Policy{}, std::nullopt)(good);
  ASSERT_FALSE(pinned);
  EXPECT_NE(pinned.error().message.find("cert_chain"), std::string::npos) << pinned.error().message;
  att::Policy snp_only;
  snp_only.providers = {"sev-snp"};
  const auto other_provider = hardware_verifier(snp_only, *root)(good);
  ASSERT_FALSE(other_provider);
  EXPECT_NE(other_provider.error().message.find("not among the policy's providers"), std::string::npos);
}

TEST(HardwareVerifier, TrustTextNamesPolicyAndRoots) {
  att::Policy debug;
  debug.allow_debug = true;
  EXPECT_NE(hardware_trust(att::Policy{}, std::nullopt), hardware_trust(debug, std::nullopt));
  EXPECT_NE(hardware_trust(att::Policy{}, std::nullopt), hardware_trust(att::Policy{}, att::TrustAnchors{{"pem"}}));
  ClientOptions options;
  install_hardware_verifier(options);
  EXPECT_TRUE(options.attestation.hardware_verifier);
  EXPECT_EQ(options.attestation.hardware_trust, hardware_trust(att::Policy{}, std::nullopt));
}

}  // namespace
}  // namespace rvenc::client
