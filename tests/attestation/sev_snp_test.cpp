// verify_sev_snp on the real AMD fixtures of ../shared/attestation/sev-snp (Milan reports under
// the pinned ARKs) and their mutations, and on reports of the test signer (VLEK, Genoa, Turin,
// CRLs, guest policy, TCB): every failure must name its check, never crash.
#include "rvenc/attestation/sev_snp.hpp"

#include <gtest/gtest.h>

#include "attestation/x509.hpp"
#include "rvenc/common/hex.hpp"
#include "support/attestation_test_support.hpp"
#include "support/snp_signer.hpp"

namespace rvenc::attestation {
namespace {

constexpr std::int64_t kIn2024 = 1717200000;               // 2024-06-01
constexpr std::int64_t kMilanVcekNotBefore = 1680549823;  // milan-virtee's VCEK: 2023-04-03 19:23:43
constexpr std::int64_t kMilanVcekNotAfter = 1901474623;   // 2030-04-03 19:23:43
constexpr std::string_view kMilanMeasurementPrefix = "7a1e5c266c0108dbc9bb94fa92695132";

Collateral fixture_set(std::string_view set) {
  auto files = Collateral::load_dir(test::attestation_fixtures() / "sev-snp" / set);
  if (!files) ADD_FAILURE() << files.error().message;
  return files ? std::move(*files) : Collateral{};
}

Bytes take(Collateral& set, std::string_view name) {
  const auto node = set.files.extract(std::string(name));
  if (node.empty()) ADD_FAILURE() << "missing " << name;
  return node.empty() ? Bytes{} : node.mapped();
}

// One verification with everything spelled out; the fields default to the real Milan set.
struct Run {
  Bytes report;
  Collateral collateral;
  TrustAnchors anchors = pinned_roots(Provider::sev_snp);
  Policy policy;
  std::int64_t at = kIn2024;
  std::optional<std::array<std::uint8_t, 64>> expected_report_data;

  static Run of(std::string_view set) {
    Run run;
    run.collateral = fixture_set(set);
    run.report = take(run.collateral, "report.bin");
    return run;
  }
  static Run of(const test::SnpTestSigner& signer, Bytes report) {
    return Run{.report = std::move(report), .collateral = signer.collateral(), .anchors = signer.anchors(),
               .at = signer.valid_at()};
  }
  [[nodiscard]] Outcome<Verified> verify() const {
    return verify_sev_snp({.evidence = report, .collateral = collateral, .anchors = anchors, .policy = policy,
                           .at = at, .expected_report_data = expected_report_data});
  }
};

void expect_failure(const Run& run, Check check, std::string_view words = {}) {
  const auto verified = run.verify();
  ASSERT_FALSE(verified.has_value()) << "expected " << check_name(check);
  EXPECT_EQ(verified.error().check, check) << verified.error().message;
  EXPECT_TRUE(verified.error().message.starts_with(std::string(check_name(check)) + ": ")) << verified.error().message;
  EXPECT_NE(verified.error().message.find(words), std::string::npos) << verified.error().message;
}

// --- the real fixtures ---------------------------------------------------------------------

TEST(SevSnp, ParsesTheMilanReport) {
  const auto run = Run::of("milan-virtee");
  const auto report = parse_snp_report(run.report);
  ASSERT_TRUE(report.has_value()) << report.error().message;
  EXPECT_EQ(report->version, 2U);
  EXPECT_EQ(report->policy, 0x30000U);
  EXPECT_EQ(report->signing_key(), SnpSigningKey::vcek);
  EXPECT_FALSE(report->cpuid_family.has_value());  // version 2
  EXPECT_EQ(to_hex(report->reported_tcb), "0300000000000873");
  EXPECT_TRUE(to_hex(report->measurement).starts_with(kMilanMeasurementPrefix));
  EXPECT_EQ(decode_snp_tcb(report->reported_tcb, SnpProduct::milan),
            (SnpTcb{.fmc = std::nullopt, .bootloader = 3, .tee = 0, .snp = 8, .microcode = 0x73}));
}

TEST(SevSnp, TheRealMilanReportVerifiesUnderThePinnedArk) {
  const auto run = Run::of("milan-virtee");
  const auto verified = run.verify();
  ASSERT_TRUE(verified.has_value()) << verified.error().message;
  EXPECT_EQ(verified->provider, Provider::sev_snp);
  EXPECT_TRUE(to_hex(verified->measurement).starts_with(kMilanMeasurementPrefix));
  EXPECT_EQ(verified->tcb_status, "UpToDate");
  EXPECT_FALSE(verified->debug);
  EXPECT_EQ(verified->valid_until, kMilanVcekNotAfter);  // the VCEK ends first
  EXPECT_EQ(verified->fields.at("product"), "Milan");
  EXPECT_EQ(verified->fields.at("signing_key"), "vcek");
  EXPECT_EQ(verified->fields.at("version"), "2");
  EXPECT_EQ(verified->fields.at("reported_tcb"), "0300000000000873");
  EXPECT_EQ(verified->fields.at("policy"), "0000000000030000");
  EXPECT_TRUE(verified->fields.at("chip_id").starts_with("d49554ec717f4e5b"));
  const auto report = parse_snp_report(run.report);
  EXPECT_EQ(verified->report_data, report->report_data);
  // At both ends of the VCEK's validity (notAfter itself is past it: OpenSSL's rule).
  for (const std::int64_t at : {kMilanVcekNotBefore, kMilanVcekNotAfter - 1}) {
    auto edge = run;
    edge.at = at;
    EXPECT_TRUE(edge.verify().has_value()) << at;
  }
}

TEST(SevSnp, TheDebugReportFailsAtDebugUnlessThePolicyAllowsIt) {
  auto run = Run::of("milan-debug");
  expect_failure(run, Check::debug, "bit 19");
  run.policy.allow_debug = true;
  const auto verified = run.verify();
  ASSERT_TRUE(verified.has_value()) << verified.error().message;
  EXPECT_TRUE(verified->debug);
  EXPECT_EQ(verified->fields.at("policy"), "00000000000b0000");
}

TEST(SevSnp, TheTurinChainVerifiesWithItsTcbAndEightByteHwid) {
  auto set = fixture_set("turin-chain");
  auto vcek = x509::parse_der_cert(*set.find("vcek.der"), "VCEK");
  auto ask_ark = x509::parse_pem_certs(*set.find("ask_ark.pem"), "ask_ark.pem");
  auto anchors = x509::parse_anchors(pinned_roots(Provider::sev_snp));
  ASSERT_TRUE(vcek && ask_ark && anchors);
  const auto chain = x509::verify_chain(
      {.leaf = vcek->get(), .intermediates = *ask_ark, .anchors = *anchors, .at = 1767225600, .what = "VCEK chain"});
  ASSERT_TRUE(chain.has_value()) << chain.error().message;
  EXPECT_EQ(x509::subject_cn(chain->back().get()), "ARK-Turin");
  EXPECT_EQ(snp_product_from_name(*x509::der_ia5_string(*x509::extension_by_oid(vcek->get(), "1.3.6.1.4.1.3704.1.2"))),
            SnpProduct::turin);
  EXPECT_TRUE(x509::der_uint(*x509::extension_by_oid(vcek->get(), "1.3.6.1.4.1.3704.1.3.9")).has_value());  // fmcSPL
  EXPECT_EQ(x509::extension_by_oid(vcek->get(), "1.3.6.1.4.1.3704.1.4")->size(), 8U);
}

TEST(SevSnp, AFlippedSignatureByteFailsAtSignature) {
  auto run = Run::of("milan-virtee");
  run.report[0x2A0 + 5] ^= 0x01;  // r
  expect_failure(run, Check::signature, "does not verify");
  run = Run::of("milan-virtee");
  run.report[0x2E8] ^= 0x80;  // s
  expect_failure(run, Check::signature);
}

TEST(SevSnp, AFlippedMeasurementByteFailsAtSignature) {
  auto run = Run::of("milan-virtee");
  run.report[0x90 + 47] ^= 0x01;
  expect_failure(run, Check::signature);
}

TEST(SevSnp, EveryFlippedSignedByteIsRefusedAndNoneCrashes) {
  const auto base = Run::of("milan-virtee");
  for (std::size_t offset = 0; offset < 0x2E8 + kSnpSignatureScalarBytes; ++offset) {
    auto run = base;
    run.report[offset] ^= 0x04;
    const auto verified = run.verify();
    ASSERT_FALSE(verified.has_value()) << "offset " << offset;
    EXPECT_TRUE(verified.error().check == Check::signature || verified.error().check == Check::malformed)
        << offset << ": " << verified.error().message;
  }
}

TEST(SevSnp, AFlippedCertificateByteFailsAtCertChain) {
  auto run = Run::of("milan-virtee");
  auto& vcek = run.collateral.files.at("vcek.der");
  vcek[vcek.size() - 20] ^= 0x01;  // the ASK's signature over the VCEK
  expect_failure(run, Check::cert_chain, "SEV-VCEK");
  run = Run::of("milan-virtee");
  auto& pem = run.collateral.files.at("ask_ark.pem");
  pem[200] = pem[200] == 'A' ? 'B' : 'A';  // inside the ASK's base64
  const auto verified = run.verify();
  ASSERT_FALSE(verified.has_value());
  EXPECT_TRUE(verified.error().check == Check::cert_chain || verified.error().check == Check::malformed)
      << verified.error().message;
}

TEST(SevSnp, AnotherVendorsRootFailsAtCertChain) {
  auto run = Run::of("milan-virtee");
  const auto roots = fixture_set("roots");
  const auto genoa = roots.find("ask_ark_genoa.pem");
  ASSERT_NE(genoa, nullptr);
  const std::string genoa_pem(genoa->begin(), genoa->end());
  run.anchors = TrustAnchors{{genoa_pem.substr(genoa_pem.find("-----BEGIN", 10))}};  // ARK-Genoa only
  expect_failure(run, Check::cert_chain);
  run.anchors = pinned_roots(Provider::tdx);
  expect_failure(run, Check::cert_chain);
}

TEST(SevSnp, AnotherProductsAskFailsAtCertChain) {
  auto run = Run::of("milan-virtee");
  run.collateral.files["ask_ark.pem"] = *fixture_set("roots").find("ask_ark_genoa.pem");
  expect_failure(run, Check::cert_chain, "SEV-VCEK");
}

TEST(SevSnp, OutsideTheVcekValidityFailsAtExpired) {
  auto run = Run::of("milan-virtee");
  run.at = kMilanVcekNotAfter + 86400;
  expect_failure(run, Check::expired, "SEV-VCEK");
  run.at = kMilanVcekNotBefore - 1;
  expect_failure(run, Check::expired, "not yet valid");
}

TEST(SevSnp, TruncatedOrPaddedReportsAreMalformed) {
  const auto base = Run::of("milan-virtee");
  for (const std::size_t size : {std::size_t{0}, std::size_t{4}, std::size_t{0x2A0}, kSnpReportBytes - 1,
                                 kSnpReportBytes + 1}) {
    auto run = base;
    run.report.resize(size);
    expect_failure(run, Check::malformed, "bytes");
  }
}

TEST(SevSnp, UnknownVersionsAreMalformed) {
  for (const std::uint8_t version : {0, 1, 4, 6, 0xff}) {
    auto run = Run::of("milan-virtee");
    run.report[0] = version;
    expect_failure(run, Check::malformed, "version");
  }
}

TEST(SevSnp, AnotherChipsVcekFailsAtSignature) {
  auto run = Run::of("milan-virtee");
  run.collateral.files["vcek.der"] = *fixture_set("milan-debug").find("vcek.der");
  expect_failure(run, Check::signature);
}

TEST(SevSnp, MissingCollateralIsMalformed) {
  auto run = Run::of("milan-virtee");
  run.collateral.files.erase("vcek.der");
  expect_failure(run, Check::malformed, "vcek.der");
  run = Run::of("milan-virtee");
  run.collateral.files.erase("ask_ark.pem");
  expect_failure(run, Check::malformed, "ask_ark.pem");
  run = Run::of("milan-virtee");
  run.collateral.files["crl.der"] = Bytes{0x30, 0x00};
  expect_failure(run, Check::malformed, "crl.der");
}

TEST(SevSnp, WrongReportDataFailsAtReportData) {
  auto run = Run::of("milan-virtee");
  const auto report = parse_snp_report(run.report);
  run.expected_report_data = report->report_data;
  EXPECT_TRUE(run.verify().has_value());
  (*run.expected_report_data)[63] ^= 0x01;
  expect_failure(run, Check::report_data, "REPORT_DATA");
}

TEST(SevSnp, MeasurementPolicyLists) {
  auto run = Run::of("milan-virtee");
  const auto measurement = parse_snp_report(run.report)->measurement;
  run.policy.sev_snp.measurement = {Bytes(48, 0xaa)};
  expect_failure(run, Check::measurement, kMilanMeasurementPrefix);
  run.policy.sev_snp.measurement.emplace_back(measurement.begin(), measurement.end());  // a rolling upgrade
  EXPECT_TRUE(run.verify().has_value());
  run.policy.sev_snp.host_data = {Bytes(32, 0x01)};
  expect_failure(run, Check::measurement, "HOST_DATA");
  run.policy.sev_snp.host_data = {Bytes(32, 0x00)};
  EXPECT_TRUE(run.verify().has_value());
  run.policy.sev_snp.id_key_digest = {Bytes(47, 0x00)};  // a shorter value never matches
  expect_failure(run, Check::measurement, "ID_KEY_DIGEST");
  run.policy.sev_snp.id_key_digest.clear();
  run.policy.sev_snp.author_key_digest = {Bytes(48, 0x01)};
  expect_failure(run, Check::measurement, "AUTHOR_KEY_DIGEST");
}

TEST(SevSnp, MinimumTcbIsComparedPerComponent) {
  auto run = Run::of("milan-virtee");
  run.policy.sev_snp.min_tcb = snp_tcb_from_hex("0300000000000873");
  EXPECT_TRUE(run.verify().has_value());
  run.policy.sev_snp.min_tcb = snp_tcb_from_hex("0200000000000800");
  EXPECT_TRUE(run.verify().has_value());
  run.policy.sev_snp.min_tcb = snp_tcb_from_hex("0300000000000874");  // microcode 116 > 115
  expect_failure(run, Check::tcb_status, "below the policy's minimum");
  run.policy.sev_snp.min_tcb = snp_tcb_from_hex("0000000000000900");  // SNP 9 > 8, the rest lower
  expect_failure(run, Check::tcb_status, "snp 9");
}

TEST(SevSnp, TcbHexIsTheReportByteOrder) {
  EXPECT_EQ(snp_tcb_from_hex("0300000000000873"), 0x7308000000000003ULL);
  EXPECT_EQ(to_hex(snp_tcb_from_uint(0x7308000000000003ULL)), "0300000000000873");
  EXPECT_FALSE(snp_tcb_from_hex("03000000000008").has_value());
  EXPECT_FALSE(snp_tcb_from_hex("03000000000008zz").has_value());
  EXPECT_EQ(decode_snp_tcb(*from_hex_exact<8>("0401020900000022", "t"), SnpProduct::turin),
            (SnpTcb{.fmc = 4, .bootloader = 1, .tee = 2, .snp = 9, .microcode = 0x22}));
}

TEST(SevSnp, ProductNames) {
  EXPECT_EQ(snp_product_from_name("Milan-B0"), SnpProduct::milan);
  EXPECT_EQ(snp_product_from_name("ARK-Genoa"), SnpProduct::genoa);
  EXPECT_EQ(snp_product_from_name("Turin"), SnpProduct::turin);
  EXPECT_FALSE(snp_product_from_name("Milanese").has_value());
  EXPECT_FALSE(snp_product_from_name("").has_value());
}

// --- the test signer ---------------------------------------------------------------------

const test::SnpTestSigner& milan_signer() {
  static const auto signer = test::SnpTestSigner::create();
  return signer;
}

std::array<std::uint8_t, 64> binding(std::uint8_t fill) {
  std::array<std::uint8_t, 64> out{};
  out.fill(fill);
  return out;
}

TEST(SevSnpSigner, ASignedReportVerifiesUnderTheTestRootOnly) {
  const auto& signer = milan_signer();
  auto run = Run::of(signer, signer.report(binding(0x42)));
  run.expected_report_data = binding(0x42);
  const auto verified = run.verify();
  ASSERT_TRUE(verified.has_value()) << verified.error().message;
  EXPECT_EQ(verified->fields.at("version"), "3");
  EXPECT_EQ(verified->fields.at("product"), "Milan");
  EXPECT_EQ(verified->measurement[0], 0x5e);
  EXPECT_EQ(verified->valid_until, signer.not_after());
  run.anchors = pinned_roots(Provider::sev_snp);
  expect_failure(run, Check::cert_chain, "ARK-Milan");
}

TEST(SevSnpSigner, VersionsTwoAndFiveVerify) {
  const auto& signer = milan_signer();
  for (const std::uint32_t version : {2U, 5U}) {
    const auto run = Run::of(signer, signer.report(binding(1), {.version = version}));
    const auto verified = run.verify();
    ASSERT_TRUE(verified.has_value()) << version << ": " << verified.error().message;
    EXPECT_EQ(verified->fields.at("version"), std::to_string(version));
  }
}

TEST(SevSnpSigner, AnotherChipsIdFailsAtCertChain) {
  const auto& signer = milan_signer();
  std::array<std::uint8_t, 64> other{};
  other.fill(0x77);
  expect_failure(Run::of(signer, signer.report(binding(1), {.chip_id = other})), Check::cert_chain, "hwID");
}

TEST(SevSnpSigner, AReportedTcbOtherThanTheVceksFailsAtTcbStatus) {
  const auto& signer = milan_signer();
  const SnpTcbBytes older = {3, 0, 0, 0, 0, 0, 7, 0x73};
  expect_failure(Run::of(signer, signer.report(binding(1), {.reported_tcb = older})), Check::tcb_status,
                 "is not the VCEK's TCB");
}

TEST(SevSnpSigner, GuestPolicyBitsFollowThePolicy) {
  const auto& signer = milan_signer();
  auto run = Run::of(signer, signer.report(binding(1), {.policy = 0x30000 | kSnpPolicyMigrationAgent}));
  expect_failure(run, Check::debug, "migration agent");
  run.policy.sev_snp.allow_migration_agent = true;
  EXPECT_TRUE(run.verify().has_value());
  run = Run::of(signer, signer.report(binding(1)));
  run.policy.sev_snp.allow_smt = false;
  expect_failure(run, Check::debug, "SMT");
  run = Run::of(signer, signer.report(binding(1), {.policy = 0x20000}));  // no SMT
  run.policy.sev_snp.allow_smt = false;
  EXPECT_TRUE(run.verify().has_value());
}

TEST(SevSnpSigner, ARevokedAskFailsAtCrl) {
  const auto& signer = milan_signer();
  auto run = Run::of(signer, signer.report(binding(1)));
  run.collateral.files["crl.der"] = signer.crl(false);
  const auto verified = run.verify();
  ASSERT_TRUE(verified.has_value()) << verified.error().message;
  run.collateral.files["crl.der"] = signer.crl(true);
  expect_failure(run, Check::crl, "revoked");
  // A CRL of another ARK (another signer's) does not verify: it is not the ASK's issuer's.
  const auto other = test::SnpTestSigner::create();
  run.collateral.files["crl.der"] = other.crl(true);
  const auto foreign = run.verify();
  ASSERT_FALSE(foreign.has_value());
  EXPECT_EQ(foreign.error().check, Check::crl) << foreign.error().message;
}

TEST(SevSnpSigner, ACpuOfAnotherProductFailsAtCertChain) {
  const auto& signer = milan_signer();
  auto run = Run::of(signer, signer.report(binding(1)));
  run.report[0x188] = 0x1a;  // CPUID family of Turin; checked before the signature
  expect_failure(run, Check::cert_chain, "Turin");
}

TEST(SevSnpSigner, UnsignedReportsFailAtSignature) {
  const auto& signer = milan_signer();
  auto run = Run::of(signer, signer.report(binding(1)));
  run.report[0x48] = 7 << 2;  // SIGNING_KEY none
  expect_failure(run, Check::signature, "not signed");
  run.report[0x48] = 2;  // MASK_CHIP_KEY
  expect_failure(run, Check::signature, "not signed");
  run.report[0x48] = 3 << 2;  // reserved key selector
  expect_failure(run, Check::malformed, "SIGNING_KEY");
}

TEST(SevSnpSigner, VersionThreeCarriesTheCpuid) {
  const auto& signer = milan_signer();
  const auto report = parse_snp_report(signer.report(binding(1), {.version = 3}));
  ASSERT_TRUE(report.has_value()) << report.error().message;
  EXPECT_EQ(report->cpuid_family, 0x19);
  EXPECT_EQ(report->cpuid_model, 0x01);
  EXPECT_EQ(report->cpuid_product(), SnpProduct::milan);
  SnpReport cpu;
  cpu.cpuid_family = 0x19;
  cpu.cpuid_model = 0x11;
  EXPECT_EQ(cpu.cpuid_product(), SnpProduct::genoa);
  cpu.cpuid_family = 0x1a;
  cpu.cpuid_model = 0x02;
  EXPECT_EQ(cpu.cpuid_product(), SnpProduct::turin);
  cpu.cpuid_family = 0x17;  // Rome: no SEV-SNP product this verifier knows
  EXPECT_FALSE(cpu.cpuid_product().has_value());
  EXPECT_FALSE(parse_snp_report(signer.report(binding(1), {.version = 2}))->cpuid_family.has_value());
}

TEST(SevSnpSigner, AVlekReportVerifiesWithVlekDer) {
  const auto signer = test::SnpTestSigner::create({.signing_key = SnpSigningKey::vlek});
  auto run = Run::of(signer, signer.report(binding(2)));
  const auto verified = run.verify();
  ASSERT_TRUE(verified.has_value()) << verified.error().message;
  EXPECT_EQ(verified->fields.at("signing_key"), "vlek");
  run.collateral.files["vcek.der"] = run.collateral.files.at("vlek.der");
  run.collateral.files.erase("vlek.der");
  expect_failure(run, Check::malformed, "vlek.der");
}

TEST(SevSnpSigner, TurinUsesItsTcbLayoutAndEightByteChipId) {
  const SnpTcbBytes tcb = {4, 1, 2, 9, 0, 0, 0, 0x22};  // fmc 4, bl 1, tee 2, snp 9, ucode 0x22
  const auto signer = test::SnpTestSigner::create({.product = SnpProduct::turin, .tcb = tcb});
  auto run = Run::of(signer, signer.report(binding(3)));
  const auto verified = run.verify();
  ASSERT_TRUE(verified.has_value()) << verified.error().message;
  EXPECT_EQ(verified->fields.at("product"), "Turin");
  EXPECT_EQ(verified->fields.at("chip_id").size(), 16U);
  run.policy.sev_snp.min_tcb = snp_tcb_from_hex("0501020900000022");  // FMC 5 > 4
  expect_failure(run, Check::tcb_status, "fmc 5");
  run.policy.sev_snp.min_tcb = snp_tcb_from_hex("0401020900000022");
  EXPECT_TRUE(run.verify().has_value());
  // A Milan-layout reading of the same bytes would be another TCB: the product decides.
  EXPECT_NE(decode_snp_tcb(tcb, SnpProduct::turin), decode_snp_tcb(tcb, SnpProduct::milan));
  // CHIP_ID beyond the 8 bytes of a Turin hwID must be zero.
  std::array<std::uint8_t, 64> padded{0xc1, 0x71, 0xd0, 0x01};
  padded[9] = 1;
  expect_failure(Run::of(signer, signer.report(binding(3), {.chip_id = padded})), Check::cert_chain, "hwID");
}

TEST(SevSnpSigner, GenoaVerifies) {
  const auto signer = test::SnpTestSigner::create({.product = SnpProduct::genoa});
  const auto verified = Run::of(signer, signer.report(binding(4))).verify();
  ASSERT_TRUE(verified.has_value()) << verified.error().message;
  EXPECT_EQ(verified->fields.at("product"), "Genoa");
}

}  // namespace
}  // namespace rvenc::attestation
