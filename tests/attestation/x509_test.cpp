// The module's OpenSSL helpers (src/attestation/x509.hpp) on the real vendor chains of
// ../shared/attestation (AMD: RSA-PSS ARK/ASK, P-384 VCEK; Intel: ECDSA P-256 with CRLs) and
// mutations of them.
#include "attestation/x509.hpp"

#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/obj_mac.h>

#include <algorithm>
#include <string>

#include "support/attestation_test_support.hpp"

namespace rvenc::attestation::x509 {
namespace {

constexpr std::int64_t kMilanVcekNotBefore = 1680549823;  // 2023-04-03 19:23:43 UTC
constexpr std::int64_t kMilanVcekNotAfter = 1901474623;   // 2030-04-03 19:23:43 UTC
constexpr std::int64_t kIn2024 = 1717200000;               // 2024-06-01
constexpr std::int64_t kTdxCollateralTime = 1688169600;    // 2023-07-01, inside spr-e4-v4's CRLs

Bytes fixture(std::string_view set, std::string_view name) {
  auto files = Collateral::load_dir(test::attestation_fixtures() / set);
  if (!files) ADD_FAILURE() << files.error().message;
  const Bytes* bytes = files ? files->find(name) : nullptr;
  if (bytes == nullptr) ADD_FAILURE() << "missing fixture " << set << "/" << name;
  return bytes != nullptr ? *bytes : Bytes{};
}

std::span<const std::uint8_t> as_bytes(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

struct MilanChain {
  CertPtr vcek;
  Certs ask_ark;
  Certs anchors;
};

MilanChain milan_chain() {
  MilanChain chain;
  auto vcek = parse_der_cert(fixture("sev-snp/milan-virtee", "vcek.der"), "VCEK");
  auto ask_ark = parse_pem_certs(fixture("sev-snp/milan-virtee", "ask_ark.pem"), "ask_ark.pem");
  auto anchors = parse_anchors(pinned_roots(Provider::sev_snp));
  EXPECT_TRUE(vcek && ask_ark && anchors);
  if (vcek) chain.vcek = std::move(*vcek);
  if (ask_ark) chain.ask_ark = std::move(*ask_ark);
  if (anchors) chain.anchors = std::move(*anchors);
  return chain;
}

Outcome<Certs> verify_milan(const MilanChain& chain, std::int64_t at, std::span<const CertPtr> anchors) {
  return verify_chain({.leaf = chain.vcek.get(), .intermediates = chain.ask_ark, .anchors = anchors, .at = at,
                       .what = "VCEK chain"});
}

TEST(AttestationX509, ParsesAPemBundleInOrder) {
  const auto certs = parse_pem_certs(fixture("sev-snp/milan-virtee", "ask_ark.pem"), "ask_ark.pem");
  ASSERT_TRUE(certs.has_value()) << certs.error().message;
  ASSERT_EQ(certs->size(), 2U);
  EXPECT_EQ(subject_cn((*certs)[0].get()), "SEV-Milan");
  EXPECT_EQ(subject_cn((*certs)[1].get()), "ARK-Milan");
}

TEST(AttestationX509, RefusesBadPem) {
  for (const std::string_view bad :
       {std::string_view{}, std::string_view{"not a certificate"},
        std::string_view{"-----BEGIN CERTIFICATE-----\nAAAA!!!!\n-----END CERTIFICATE-----\n"}}) {
    const auto certs = parse_pem_certs(as_bytes(bad), "bundle");
    ASSERT_FALSE(certs.has_value()) << bad;
    EXPECT_EQ(certs.error().check, Check::malformed);
    EXPECT_TRUE(certs.error().message.starts_with("malformed: bundle: ")) << certs.error().message;
  }
}

TEST(AttestationX509, RefusesTruncatedOrPaddedDer) {
  auto der = fixture("sev-snp/milan-virtee", "vcek.der");
  ASSERT_TRUE(parse_der_cert(der, "VCEK").has_value());
  auto padded = der;
  padded.push_back(0);
  EXPECT_EQ(parse_der_cert(padded, "VCEK").error().check, Check::malformed);
  der.resize(der.size() / 2);
  EXPECT_EQ(parse_der_cert(der, "VCEK").error().check, Check::malformed);
  EXPECT_EQ(parse_der_cert({}, "VCEK").error().check, Check::malformed);
}

TEST(AttestationX509, AnchorsMustBeSelfSignedRoots) {
  EXPECT_EQ(parse_anchors(pinned_roots(Provider::sev_snp))->size(), 3U);
  const auto ask = fixture("sev-snp/milan-virtee", "ask_ark.pem");
  const std::string pem(ask.begin(), ask.end());
  const auto ask_only = pem.substr(0, pem.find("-----END CERTIFICATE-----") + 25);
  const auto anchors = parse_anchors(TrustAnchors{{ask_only}});
  ASSERT_FALSE(anchors.has_value());
  EXPECT_EQ(anchors.error().check, Check::malformed);
  EXPECT_NE(anchors.error().message.find("SEV-Milan"), std::string::npos) << anchors.error().message;
  EXPECT_EQ(parse_anchors(TrustAnchors{}).error().check, Check::malformed);
}

TEST(AttestationX509, VerifiesTheMilanRsaPssChainAtAGivenTime) {
  const auto chain = milan_chain();
  const auto verified = verify_milan(chain, kIn2024, chain.anchors);
  ASSERT_TRUE(verified.has_value()) << verified.error().message;
  ASSERT_EQ(verified->size(), 3U);
  EXPECT_EQ(subject_cn(verified->back().get()), "ARK-Milan");
  EXPECT_TRUE(verify_milan(chain, kMilanVcekNotBefore, chain.anchors).has_value());
  EXPECT_TRUE(verify_milan(chain, kMilanVcekNotAfter - 1, chain.anchors).has_value());
}

TEST(AttestationX509, OutsideValidityIsExpiredNamingTheCertificate) {
  const auto chain = milan_chain();
  for (const std::int64_t at : {kMilanVcekNotBefore - 1, kMilanVcekNotAfter}) {
    const auto verified = verify_milan(chain, at, chain.anchors);
    ASSERT_FALSE(verified.has_value()) << at;
    EXPECT_EQ(verified.error().check, Check::expired);
    EXPECT_NE(verified.error().message.find("SEV-VCEK"), std::string::npos) << verified.error().message;
  }
}

TEST(AttestationX509, AnotherVendorsRootIsRefused) {
  const auto chain = milan_chain();
  const auto genoa = parse_pem_certs(fixture("sev-snp/roots", "ask_ark_genoa.pem"), "genoa");
  ASSERT_TRUE(genoa.has_value());
  const std::span<const CertPtr> genoa_ark(&genoa->back(), 1);
  const auto by_genoa = verify_milan(chain, kIn2024, genoa_ark);
  ASSERT_FALSE(by_genoa.has_value());
  EXPECT_EQ(by_genoa.error().check, Check::cert_chain);
  const auto intel = parse_anchors(pinned_roots(Provider::tdx));
  ASSERT_TRUE(intel.has_value());
  EXPECT_EQ(verify_milan(chain, kIn2024, *intel).error().check, Check::cert_chain);
}

TEST(AttestationX509, AFlippedCertificateSignatureByteBreaksTheChain) {
  auto der = fixture("sev-snp/milan-virtee", "vcek.der");
  der[der.size() - 10] ^= 0x01;  // inside the ASK's RSA-PSS signature over the VCEK
  auto chain = milan_chain();
  auto vcek = parse_der_cert(der, "VCEK");
  ASSERT_TRUE(vcek.has_value());
  chain.vcek = std::move(*vcek);
  const auto verified = verify_milan(chain, kIn2024, chain.anchors);
  ASSERT_FALSE(verified.has_value());
  EXPECT_EQ(verified.error().check, Check::cert_chain);
  EXPECT_TRUE(verified.error().message.starts_with("cert_chain: VCEK chain: certificate 'SEV-VCEK'"))
      << verified.error().message;
}

TEST(AttestationX509, ACaCertificateCannotBeTheLeaf) {
  const auto chain = milan_chain();
  const auto verified = verify_chain({.leaf = chain.ask_ark[0].get(), .intermediates = chain.ask_ark,
                                      .anchors = chain.anchors, .at = kIn2024, .what = "VCEK chain"});
  ASSERT_FALSE(verified.has_value());
  EXPECT_EQ(verified.error().check, Check::cert_chain);
  EXPECT_NE(verified.error().message.find("is a CA certificate"), std::string::npos);
}

struct TdxChain {
  Certs pck_chain;  // leaf, Platform CA
  Certs anchors;
  CrlPtr pck_crl, root_crl;
};

TdxChain tdx_chain() {
  TdxChain chain;
  auto pck = parse_pem_certs(fixture("tdx/spr-e4-v4", "pck_chain.pem"), "pck_chain.pem");
  const auto root = fixture("tdx/spr-e4-v4", "trust_root.pem");
  auto anchors = parse_anchors(TrustAnchors{{std::string(root.begin(), root.end())}});
  auto pck_crl = parse_crl(fixture("tdx/spr-e4-v4", "pckcrl.der"), "pckcrl.der");
  auto root_crl = parse_crl(fixture("tdx/spr-e4-v4", "rootcrl.der"), "rootcrl.der");
  EXPECT_TRUE(pck && anchors && pck_crl && root_crl);
  if (pck) chain.pck_chain = std::move(*pck);
  if (anchors) chain.anchors = std::move(*anchors);
  if (pck_crl) chain.pck_crl = std::move(*pck_crl);
  if (root_crl) chain.root_crl = std::move(*root_crl);
  return chain;
}

Outcome<Certs> verify_tdx(const TdxChain& chain, std::span<const CrlPtr> crls, CrlPolicy policy, std::int64_t at) {
  return verify_chain({.leaf = chain.pck_chain[0].get(), .intermediates = chain.pck_chain, .anchors = chain.anchors,
                       .crls = crls, .crl_policy = policy, .at = at, .what = "PCK chain"});
}

TEST(AttestationX509, VerifiesAnEcdsaChainWithBothCrls) {
  auto chain = tdx_chain();
  Crls crls;
  crls.push_back(std::move(chain.pck_crl));
  crls.push_back(std::move(chain.root_crl));
  const auto verified = verify_tdx(chain, crls, CrlPolicy::every_issuer, kTdxCollateralTime);
  ASSERT_TRUE(verified.has_value()) << verified.error().message;
  EXPECT_EQ(verified->size(), 3U);
  // After the PCK CRL's nextUpdate (2023-07-08) the CRL is expired.
  const auto late = verify_tdx(chain, crls, CrlPolicy::every_issuer, kTdxCollateralTime + 30 * 86400);
  ASSERT_FALSE(late.has_value());
  EXPECT_EQ(late.error().check, Check::expired);
}

TEST(AttestationX509, AMissingCrlFailsUnlessThePolicyAllowsIt) {
  auto chain = tdx_chain();
  Crls crls;
  crls.push_back(std::move(chain.root_crl));  // the PCK Platform CA's CRL is missing
  const auto strict = verify_tdx(chain, crls, CrlPolicy::every_issuer, kTdxCollateralTime);
  ASSERT_FALSE(strict.has_value());
  EXPECT_EQ(strict.error().check, Check::crl);
  EXPECT_TRUE(verify_tdx(chain, crls, CrlPolicy::where_issued, kTdxCollateralTime).has_value());
}

TEST(AttestationX509, ACrlWithABadSignatureFailsAtCrl) {
  auto chain = tdx_chain();
  auto der = fixture("tdx/spr-e4-v4", "pckcrl.der");
  der[der.size() - 5] ^= 0x01;  // inside the CRL's ECDSA signature
  auto bad = parse_crl(der, "pckcrl.der");
  ASSERT_TRUE(bad.has_value());
  Crls crls;
  crls.push_back(std::move(*bad));
  crls.push_back(std::move(chain.root_crl));
  const auto verified = verify_tdx(chain, crls, CrlPolicy::every_issuer, kTdxCollateralTime);
  ASSERT_FALSE(verified.has_value());
  EXPECT_EQ(verified.error().check, Check::crl);
}

TEST(AttestationX509, ParsesCrlsAsDerOrPem) {
  EXPECT_TRUE(parse_crl(fixture("tdx/spr-e4-v4", "rootcrl.der"), "rootcrl.der").has_value());
  EXPECT_EQ(parse_crl(as_bytes("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"), "crl").error().check,
            Check::malformed);
  EXPECT_EQ(parse_crl(as_bytes("\x30\x03\x02\x01"), "crl").error().check, Check::malformed);
}

TEST(AttestationX509, ReadsTheVcekExtensionsAndValidity) {
  const auto chain = milan_chain();
  const auto product = extension_by_oid(chain.vcek.get(), "1.3.6.1.4.1.3704.1.2");
  ASSERT_TRUE(product.has_value());
  EXPECT_EQ(der_ia5_string(*product), "Milan-B0");
  const auto bl = extension_by_oid(chain.vcek.get(), "1.3.6.1.4.1.3704.1.3.1");
  ASSERT_TRUE(bl.has_value());
  EXPECT_EQ(der_uint(*bl), 3U);
  EXPECT_EQ(der_uint(*extension_by_oid(chain.vcek.get(), "1.3.6.1.4.1.3704.1.3.8")), 0x73U);
  EXPECT_EQ(extension_by_oid(chain.vcek.get(), "1.3.6.1.4.1.3704.1.4")->size(), 64U);  // hwID, raw
  EXPECT_FALSE(extension_by_oid(chain.vcek.get(), "1.3.6.1.4.1.3704.1.3.9").has_value());  // no FMC on Milan
  EXPECT_FALSE(extension_by_oid(chain.vcek.get(), "not an oid").has_value());
  EXPECT_EQ(cert_not_after(chain.vcek.get()), kMilanVcekNotAfter);
  EXPECT_EQ(cert_not_before(chain.vcek.get()), kMilanVcekNotBefore);
  EXPECT_FALSE(der_uint(*product).has_value());   // an IA5String is no INTEGER
  EXPECT_FALSE(der_ia5_string(*bl).has_value());  // and the reverse
  const std::uint8_t negative[] = {0x02, 0x01, 0xff};
  EXPECT_FALSE(der_uint(negative).has_value());
}

TEST(AttestationX509, CrlNextUpdate) {
  const auto crl = parse_crl(fixture("tdx/spr-e4-v4", "pckcrl.der"), "pckcrl.der");
  ASSERT_TRUE(crl.has_value());
  EXPECT_EQ(crl_next_update(crl->get()), 1688801272);  // 2023-07-08 07:27:52 UTC
}

// The raw report signature of milan-virtee: r and s little-endian at 0x2A0 / 0x2E8 over bytes
// 0..0x29F, ECDSA P-384 SHA-384 by the VCEK.
TEST(AttestationX509, VerifiesARawEcdsaSignature) {
  const auto chain = milan_chain();
  auto report = fixture("sev-snp/milan-virtee", "report.bin");
  ASSERT_EQ(report.size(), 1184U);
  Bytes r(report.begin() + 0x2A0, report.begin() + 0x2A0 + 72);
  Bytes s(report.begin() + 0x2E8, report.begin() + 0x2E8 + 72);
  std::reverse(r.begin(), r.end());
  std::reverse(s.begin(), s.end());
  EVP_PKEY* key = X509_get0_pubkey(chain.vcek.get());
  const std::span<const std::uint8_t> body(report.data(), 0x2A0);
  const auto ok = verify_ecdsa_raw(key, EVP_sha384(), body, r, s, "report");
  EXPECT_TRUE(ok.has_value()) << ok.error().message;
  report[0x90] ^= 0x01;  // the measurement
  const auto bad = verify_ecdsa_raw(key, EVP_sha384(), body, r, s, "report");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().check, Check::signature);
  EXPECT_EQ(verify_ecdsa_raw(key, EVP_sha384(), body, {}, s, "report").error().check, Check::signature);
  EXPECT_EQ(verify_ecdsa_raw(key, EVP_sha256(), body, r, s, "report").error().check, Check::signature);
}

TEST(AttestationX509, BuildsAnEcKeyFromRawCoordinates) {
  const auto chain = milan_chain();
  EVP_PKEY* vcek_key = X509_get0_pubkey(chain.vcek.get());
  unsigned char point[1 + 96];
  std::size_t size = 0;
  ASSERT_EQ(EVP_PKEY_get_octet_string_param(vcek_key, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point, &size), 1);
  ASSERT_EQ(size, sizeof point);
  Bytes xy(point + 1, point + sizeof point);
  const auto key = ec_public_key_from_xy(NID_secp384r1, xy, "VCEK key");
  ASSERT_TRUE(key.has_value()) << key.error().message;
  EXPECT_EQ(EVP_PKEY_eq(key->get(), vcek_key), 1);
  EXPECT_EQ(ec_public_key_from_xy(NID_X9_62_prime256v1, xy, "key").error().check, Check::malformed);  // wrong size
  xy.back() ^= 0x01;  // off the curve
  EXPECT_EQ(ec_public_key_from_xy(NID_secp384r1, xy, "key").error().check, Check::malformed);
  EXPECT_EQ(ec_public_key_from_xy(NID_secp521r1, Bytes(132), "key").error().check, Check::malformed);
}

TEST(AttestationX509, Sha384OfAKnownInput) {
  const auto digest = sha384(as_bytes("abc"));
  EXPECT_EQ(digest[0], 0xcbU);  // FIPS 180-2 example: cb00753f45a35e8b...
  EXPECT_EQ(digest[1], 0x00U);
  EXPECT_EQ(digest[47], 0xa7U);
}

}  // namespace
}  // namespace rvenc::attestation::x509
