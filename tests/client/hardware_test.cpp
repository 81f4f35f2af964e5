// The SDK's hardware verifier (rvenc/client/hardware.hpp) on evidence of the test signers: the
// document's collateral goes to the verifier, REPORT_DATA must be the document's reportData, the
// document's measurement the evidence's, and the answer is until when the trust holds.
#include <gtest/gtest.h>

#include "rvenc/client/client.hpp"
#include "rvenc/client/hardware.hpp"
#include "support/snp_signer.hpp"
#include "support/tdx_signer.hpp"

namespace rvenc::client {
namespace {

namespace att = attestation;

struct SignedDocument {
  protocol::AttestationDocument doc;
  att::TrustAnchors anchors;
  std::int64_t signer_not_after = 0;
};

// A document of `provider` whose evidence the test signer made for fresh random reportData, with
// the signer's collateral; `sign` makes the evidence and sets the measurement.
template <class Signer, class Sign>
SignedDocument signed_document(const Signer& signer, std::string_view provider, Sign sign) {
  SignedDocument out;
  auto& doc = out.doc;
  doc.provider = std::string(provider);
  doc.not_after = 4'000'000'000;
  crypto::random_bytes(doc.report_data);
  std::array<std::uint8_t, 64> report_data{};
  std::copy(doc.report_data.begin(), doc.report_data.end(), report_data.begin());
  sign(report_data, doc);
  for (const auto& [name, bytes] : signer.collateral().files) doc.collateral.emplace(name, bytes);
  out.anchors = signer.anchors();
  out.signer_not_after = signer.not_after();
  return out;
}

SignedDocument tdx_document() {
  static const auto signer = test::TdxTestSigner::create();
  return signed_document(signer, "tdx", [&](const std::array<std::uint8_t, 64>& report_data, auto& doc) {
    const test::TdxQuoteOptions options;
    doc.evidence = signer.quote(report_data, options);
    doc.measurement.assign(options.mrtd.begin(), options.mrtd.end());
  });
}

SignedDocument snp_document() {
  static const auto signer = test::SnpTestSigner::create();
  return signed_document(signer, "sev-snp", [&](const std::array<std::uint8_t, 64>& report_data, auto& doc) {
    const test::SnpReportOptions options;
    doc.evidence = signer.report(report_data, options);
    doc.measurement.assign(options.measurement.begin(), options.measurement.end());
  });
}

void expect_refused(const protocol::HardwareVerifier& verify, const protocol::AttestationDocument& doc,
                    std::string_view check) {
  const auto until = verify(doc);
  ASSERT_FALSE(until) << check;
  EXPECT_EQ(until.error().code, Errc::attestation_failed);
  EXPECT_NE(until.error().message.find(check), std::string::npos) << until.error().message;
}

TEST(HardwareVerifier, VerifiesTheDocumentsEvidenceWithItsCollateral) {
  for (const auto& signed_doc : {tdx_document(), snp_document()}) {
    const auto until = hardware_verifier(att::Policy{}, signed_doc.anchors)(signed_doc.doc);
    ASSERT_TRUE(until) << signed_doc.doc.provider << ": " << until.error().message;
    EXPECT_LE(*until, signed_doc.signer_not_after) << "no longer than the certificates and collateral";
    EXPECT_LT(*until, signed_doc.doc.not_after);
  }
}

TEST(HardwareVerifier, RefusesWhatTheEvidenceDoesNotSay) {
  for (const auto& good : {tdx_document(), snp_document()}) {
    const auto verify = hardware_verifier(att::Policy{}, good.anchors);
    auto doc = good.doc;
    doc.report_data[0] ^= 1;  // a genuine report of another key / challenge
    expect_refused(verify, doc, "report_data");
    doc = good.doc;
    doc.measurement[0] ^= 1;  // the host claims another measurement than the evidence's
    expect_refused(verify, doc, "measurement");
    doc = good.doc;
    doc.collateral.clear();  // withheld collateral is a refusal, never a pass
    expect_refused(verify, doc, good.doc.provider + " evidence: ");
    doc = good.doc;
    doc.evidence[doc.evidence.size() / 2] ^= 1;
    expect_refused(verify, doc, good.doc.provider + " evidence: ");
    // The vendors' pinned roots (no test root given) do not sign the test chains.
    expect_refused(hardware_verifier(att::Policy{}, std::nullopt), good.doc, "cert_chain");
    att::Policy other_provider;
    other_provider.providers = {good.doc.provider == "tdx" ? "sev-snp" : "tdx"};
    expect_refused(hardware_verifier(other_provider, good.anchors), good.doc, "not among the policy's providers");
    doc = good.doc;
    doc.provider = "simulated";
    expect_refused(verify, doc, "no verifier");
  }
}

TEST(HardwareVerifier, TrustTextNamesPolicyAndRoots) {
  att::Policy debug;
  debug.allow_debug = true;
  EXPECT_EQ(hardware_trust(att::Policy{}, std::nullopt), "") << "defaults: the trust digest of earlier releases";
  EXPECT_NE(hardware_trust(debug, std::nullopt), "");
  EXPECT_NE(hardware_trust(att::Policy{}, att::TrustAnchors{{"pem"}}), "");
  EXPECT_NE(hardware_trust(debug, std::nullopt), hardware_trust(debug, att::TrustAnchors{{"pem"}}));
  ClientOptions options;
  options.hardware_policy.allow_debug = true;
  install_hardware_verifier(options);
  EXPECT_TRUE(options.attestation.hardware_verifier);
  EXPECT_EQ(options.attestation.hardware_trust, hardware_trust(debug, std::nullopt));
}

}  // namespace
}  // namespace rvenc::client
