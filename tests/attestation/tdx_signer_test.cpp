// verify_tdx on synthetic quotes from the test signer (tests/support/tdx_signer.hpp): a quote that
// passes every check, and each check failing on its own (debug bit, measurements, REPORTDATA, a
// revoked PCK, TCB and QE statuses, expiry, the pinned root); plus the cost of one verification.
#include <gtest/gtest.h>

#include <cstdio>
#include <ctime>

#include "rvenc/attestation/tdx.hpp"
#include "rvenc/common/hex.hpp"
#include "support/attestation_test_support.hpp"
#include "support/tdx_signer.hpp"

namespace rvenc::attestation {
namespace {

const std::array<std::uint8_t, 64> kBinding = {0xb1, 0x4d, 0x19, 0x90};

struct Signed {
  test::TdxTestSigner signer;
  Collateral collateral;
  TrustAnchors anchors;
  Policy policy;
  std::int64_t at = 0;
  std::optional<std::array<std::uint8_t, 64>> report_data = kBinding;

  explicit Signed(const test::TdxSignerOptions& options = {})
      : signer(test::TdxTestSigner::create(options)),
        collateral(signer.collateral()),
        anchors(signer.anchors()),
        at(signer.valid_at()) {}
  [[nodiscard]] Outcome<Verified> verify(const test::TdxQuoteOptions& options = {}) const {
    const Bytes quote = signer.quote(kBinding, options);
    return verify_tdx({quote, collateral, anchors, policy, at, report_data});
  }
};

TEST(TdxSigner, ASignedQuoteVerifiesUnderTheTestRoot) {
  const Signed s;
  test::TdxQuoteOptions options;
  options.rtmr[2][0] = 0x22;
  const auto v = s.verify(options);
  ASSERT_TRUE(v.has_value()) << v.error().message;
  EXPECT_EQ(v->provider, Provider::tdx);
  EXPECT_EQ(to_hex(v->measurement), to_hex(options.mrtd));
  EXPECT_EQ(v->tcb_status, "UpToDate");
  EXPECT_FALSE(v->debug);
  EXPECT_EQ(v->report_data, kBinding);
  EXPECT_EQ(v->valid_until, s.signer.not_after());
  EXPECT_EQ(v->fields.at("rtmr2"), to_hex(options.rtmr[2]));
  EXPECT_EQ(v->fields.at("fmspc"), "90c06f000000");
  EXPECT_EQ(v->fields.at("quote_version"), "4");
  for (const auto* key : {"rtmr0", "rtmr1", "rtmr3", "mrseam", "xfam", "td_attributes", "tee_tcb_svn"})
    EXPECT_TRUE(v->fields.contains(key)) << key;
}

TEST(TdxSigner, AV5QuoteWithATdReport15Verifies) {
  const Signed s;
  test::TdxQuoteOptions options;
  options.version = 5;
  const auto v = s.verify(options);
  ASSERT_TRUE(v.has_value()) << v.error().message;
  EXPECT_EQ(v->fields.at("quote_version"), "5");
  EXPECT_EQ(v->report_data, kBinding);
  const Bytes quote = s.signer.quote(kBinding, options);
  const auto parsed = tdx::parse_quote(quote);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->body_type, 3);
  EXPECT_EQ(parsed->signed_bytes.size(), tdx::kHeaderSize + 6 + tdx::kTdReport15Size);
}

TEST(TdxSigner, AnotherTdxModuleFailsAtTcbStatus) {
  Signed s;
  const auto& file = s.collateral.files["tcbinfo.json"];
  // The signer's TCB Info names Intel's (zero) TDX module signer; one naming another refuses the quote.
  test::TdxQuoteOptions options;
  options.tee_tcb_svn[1] = 0;
  ASSERT_TRUE(s.verify(options).has_value());
  tdx::TcbInfo info = *tdx::parse_tcb_info(file);
  info.module_mrsigner[0] = 1;
  tdx::PckExtensions pck;
  pck.cpu_svn_components = test::TdxSignerOptions{}.cpu_svn_components;
  pck.pce_svn = test::TdxSignerOptions{}.pce_svn;
  tdx::TdReport body;
  body.tee_tcb_svn = options.tee_tcb_svn;
  ASSERT_TRUE(tdx::match_tcb_level(*tdx::parse_tcb_info(file), pck, body).has_value());
  const auto r = tdx::match_tcb_level(info, pck, body);
  EXPECT_FAILS_AT(r, tcb_status);
  EXPECT_NE(r.error().message.find("MRSIGNERSEAM"), std::string::npos);
}

TEST(TdxSigner, TheSameQuoteFailsUnderThePinnedIntelRoot) {
  Signed s;
  s.anchors = pinned_roots(Provider::tdx);
  EXPECT_FAILS_AT(s.verify(), cert_chain);
}

TEST(TdxSigner, DebugBitFailsUnlessThePolicyAllowsIt) {
  Signed s;
  test::TdxQuoteOptions options;
  options.td_attributes[0] = 0x01;
  EXPECT_FAILS_AT(s.verify(options), debug);
  s.policy.allow_debug = true;
  const auto v = s.verify(options);
  ASSERT_TRUE(v.has_value()) << v.error().message;
  EXPECT_TRUE(v->debug);
}

TEST(TdxSigner, MeasurementsOutsideThePolicyFail) {
  Signed s;
  const test::TdxQuoteOptions options;
  s.policy.tdx.mrtd = {Bytes(48, 0x01)};
  EXPECT_FAILS_AT(s.verify(options), measurement);
  s.policy.tdx.mrtd.push_back(Bytes(options.mrtd.begin(), options.mrtd.end()));  // a rolling upgrade: two accepted
  ASSERT_TRUE(s.verify(options).has_value());
  s.policy.tdx.rtmr1 = {Bytes(48, 0x01)};
  const auto r = s.verify(options);
  EXPECT_FAILS_AT(r, measurement);
  EXPECT_NE(r.error().message.find("rtmr1"), std::string::npos);
  s.policy.tdx.rtmr1.clear();
  s.policy.tdx.xfam = {Bytes(8, 0)};
  EXPECT_FAILS_AT(s.verify(options), measurement);
}

TEST(TdxSigner, WrongReportDataFails) {
  Signed s;
  s.report_data = std::array<std::uint8_t, 64>{0xb1, 0x4d, 0x19, 0x91};
  EXPECT_FAILS_AT(s.verify(), report_data);
  s.report_data.reset();
  EXPECT_TRUE(s.verify().has_value());
}

TEST(TdxSigner, ARevokedPckFailsAtCrl) {
  Signed s;
  s.collateral.files["pckcrl.der"] = s.signer.pck_crl(true);
  EXPECT_FAILS_AT(s.verify(), crl);
}

TEST(TdxSigner, TcbStatusBelowThePolicyFails) {
  test::TdxSignerOptions options;
  options.tcb_status = "OutOfDate";
  Signed s(options);
  const auto r = s.verify();
  EXPECT_FAILS_AT(r, tcb_status);
  EXPECT_NE(r.error().message.find("OutOfDate"), std::string::npos);
  s.policy.tdx.min_tcb_status = "OutOfDate";
  const auto v = s.verify();
  ASSERT_TRUE(v.has_value()) << v.error().message;
  EXPECT_EQ(v->tcb_status, "OutOfDate");
  s.policy.tdx.min_tcb_status = "Sometimes";
  EXPECT_FAILS_AT(s.verify(), malformed);
}

TEST(TdxSigner, RevokedTcbNeverPasses) {
  test::TdxSignerOptions options;
  options.tcb_status = "Revoked";
  Signed s(options);
  s.policy.tdx.min_tcb_status = "Revoked";
  EXPECT_FAILS_AT(s.verify(), tcb_status);
}

TEST(TdxSigner, TeeTcbSvnBelowEveryLevelFails) {
  const Signed s;
  test::TdxQuoteOptions options;
  options.tee_tcb_svn[2] = 2;  // the level asks 3
  EXPECT_FAILS_AT(s.verify(options), tcb_status);
}

TEST(TdxSigner, OutOfDateQuotingEnclaveFailsAtQeIdentity) {
  test::TdxSignerOptions options;
  options.qe_status = "OutOfDate";
  const Signed s(options);
  EXPECT_FAILS_AT(s.verify(), qe_identity);
}

TEST(TdxSigner, AfterTheCollateralsEndItIsExpired) {
  Signed s;
  s.at = s.signer.not_after() + 1;
  EXPECT_FAILS_AT(s.verify(), expired);
  s.at = s.signer.valid_at() - 2 * 86400;  // before anything was issued
  EXPECT_FAILS_AT(s.verify(), expired);
}

TEST(TdxSigner, CostOfOneVerificationWithCollateralLoaded) {
  // CPU time of this process (the machine is shared: wall time would measure the neighbours).
  const auto cpu_us = [] {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
  };
  const Signed s;
  const Bytes quote = s.signer.quote(kBinding);
  constexpr int kRuns = 200;
  const auto start = cpu_us();
  for (int i = 0; i < kRuns; ++i) ASSERT_TRUE(verify_tdx({quote, s.collateral, s.anchors, s.policy, s.at, kBinding}));
  const auto per_quote = (cpu_us() - start) / kRuns;
  std::printf("verify_tdx: %.3f ms CPU per quote (%d runs)\n", static_cast<double>(per_quote) / 1000.0, kRuns);
  RecordProperty("verify_tdx_cpu_us", static_cast<int>(per_quote));
}

}  // namespace
}  // namespace rvenc::attestation
