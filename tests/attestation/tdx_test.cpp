// The Intel TDX verifier against the real fixtures of ../shared/attestation/tdx (each set as its
// README says) and their mutations: every failure at its named check, never a crash.
#include "rvenc/attestation/tdx.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <tuple>
#include <vector>

#include "attestation/x509.hpp"
#include "rvenc/common/hex.hpp"
#include "support/attestation_test_support.hpp"

namespace rvenc::attestation {
namespace {

constexpr std::int64_t kSprTime = 1688169600;  // 2023-07-01
constexpr std::int64_t kV5Time = 1771200000;   // 2026-02-16
constexpr std::int64_t kQvlTime = 1700000000;  // 2023-11-14

Collateral load(std::string_view set) {
  auto c = Collateral::load_dir(test::attestation_fixtures() / "tdx" / set);
  EXPECT_TRUE(c.has_value()) << set;
  return c ? std::move(*c) : Collateral{};
}

TrustAnchors root_of(std::string_view set) {
  std::ifstream in(test::attestation_fixtures() / "tdx" / set / "trust_root.pem");
  return TrustAnchors{{std::string(std::istreambuf_iterator<char>(in), {})}};
}

struct TdxRun {
  Collateral collateral;
  TrustAnchors anchors = pinned_roots(Provider::tdx);
  Policy policy;
  std::int64_t at = kSprTime;
  std::optional<std::array<std::uint8_t, 64>> report_data;
  [[nodiscard]] Outcome<Verified> verify(std::span<const std::uint8_t> quote) const {
    return verify_tdx({quote, collateral, anchors, policy, at, report_data});
  }
  [[nodiscard]] Outcome<Verified> verify() const { return verify(*collateral.find("quote.dat")); }
};

TEST(TdxQuote, ParsesEveryFixtureQuote) {
  for (const auto* path : {"spr-e4-v4/quote.dat", "v5-sample/quote.dat", "qvl-synthetic/quote.dat",
                           "pcci-quotes/quote.dat", "pcci-quotes/quote_b0c06f.dat",
                           "pcci-quotes/quote_zero_reportdata.dat"}) {
    std::ifstream in(test::attestation_fixtures() / "tdx" / path, std::ios::binary);
    const Bytes bytes{std::istreambuf_iterator<char>(in), {}};
    const auto quote = tdx::parse_quote(bytes);
    ASSERT_TRUE(quote.has_value()) << path << ": " << quote.error().message;
    EXPECT_FALSE(quote->pck_chain.empty()) << path;
  }
  const auto v5 = load("v5-sample");
  const auto quote = tdx::parse_quote(*v5.find("quote.dat"));
  ASSERT_TRUE(quote.has_value());
  EXPECT_EQ(quote->version, 5);
  EXPECT_EQ(quote->body_type, 3);
  EXPECT_TRUE(quote->body.tee_tcb_svn2.has_value());
}

TEST(TdxVerify, SprE4PassesEverySignatureChainAndCrlThenFailsAtTcbStatus) {
  TdxRun run{load("spr-e4-v4")};
  const auto result = run.verify();
  EXPECT_FAILS_AT(result, tcb_status);
  EXPECT_NE(result.error().message.find("no TCB level"), std::string::npos) << result.error().message;
  EXPECT_NE(result.error().message.find("03000400000000000000000000000000"), std::string::npos);
}

TEST(TdxVerify, SprE4OutsideItsWindowIsExpired) {
  TdxRun run{load("spr-e4-v4")};
  run.at = 1689000000;  // 2023-07-10: the QE Identity ended 2023-07-08
  EXPECT_FAILS_AT(run.verify(), expired);
  run.at = 1687000000;  // 2023-06-17: the TCB Info is issued 2023-06-18
  EXPECT_FAILS_AT(run.verify(), expired);
  run.at = 1900000000;  // 2030
  EXPECT_FAILS_AT(run.verify(), expired);
}

TEST(TdxVerify, V5SampleQuoteVerifiesAndItsCollateralIsExpired) {
  TdxRun run{load("v5-sample")};
  run.at = kV5Time;
  const auto check = tdx::check_quote(*run.collateral.find("quote.dat"), run.anchors, run.at);
  ASSERT_TRUE(check.has_value()) << check.error().message;
  EXPECT_EQ(to_hex(check->pck.fmspc), "90c06f000000");
  EXPECT_FAILS_AT(run.verify(), expired);
}

TEST(TdxVerify, QvlSyntheticUnderItsOwnRootPassesUpToTheQeIdentity) {
  TdxRun run{load("qvl-synthetic")};
  run.anchors = root_of("qvl-synthetic");
  run.at = kQvlTime;
  const auto check = tdx::check_quote(*run.collateral.find("quote.dat"), run.anchors, run.at);
  ASSERT_TRUE(check.has_value()) << check.error().message;
  const auto result = run.verify();
  // QVL's generated set signs a QE Identity whose MRSIGNER (0bf58c3b...) is not the QE report's
  // (e4bd9fc2...): every signature, chain, CRL and the TCB level pass, the identity cannot.
  EXPECT_FAILS_AT(result, qe_identity);
  EXPECT_NE(result.error().message.find("MRSIGNER"), std::string::npos);
}

TEST(TdxVerify, QvlSyntheticUnderIntelsRootFailsAtCertChain) {
  TdxRun run{load("qvl-synthetic")};
  run.at = kQvlTime;
  EXPECT_FAILS_AT(run.verify(), cert_chain);
  run.anchors = root_of("spr-e4-v4");
  EXPECT_FAILS_AT(run.verify(), cert_chain);
}

TEST(TdxVerify, PcciQuotesVerifyWithoutCollateralAndFailClearlyWithout) {
  const auto dir = load("pcci-quotes");
  for (const auto* name : {"quote.dat", "quote_b0c06f.dat", "quote_zero_reportdata.dat"}) {
    const auto check = tdx::check_quote(*dir.find(name), pinned_roots(Provider::tdx), kV5Time);
    ASSERT_TRUE(check.has_value()) << name << ": " << check.error().message;
    TdxRun run{dir};
    run.at = kV5Time;
    const auto result = run.verify(*dir.find(name));
    EXPECT_FAILS_AT(result, malformed);
    EXPECT_NE(result.error().message.find("pckcrl.der is missing"), std::string::npos) << result.error().message;
  }
  const auto zero = tdx::parse_quote(*dir.find("quote_zero_reportdata.dat"));
  ASSERT_TRUE(zero.has_value());
  EXPECT_TRUE(std::all_of(zero->body.report_data.begin(), zero->body.report_data.end(), [](auto b) { return b == 0; }));
}

// ---- mutations of spr-e4-v4 (which reaches tcb_status untouched) --------------------------------

TdxRun spr_with_quote(const std::function<void(Bytes&)>& mutate) {
  TdxRun run{load("spr-e4-v4")};
  mutate(run.collateral.files["quote.dat"]);
  return run;
}

TEST(TdxMutation, FlippedQuoteSignatureByteFailsAtSignature) {
  const auto run = spr_with_quote([](Bytes& q) { q[tdx::kHeaderSize + tdx::kTdReport10Size + 4 + 5] ^= 0x01; });
  EXPECT_FAILS_AT(run.verify(), signature);
}

TEST(TdxMutation, FlippedMrtdByteFailsAtSignature) {
  const auto run = spr_with_quote([](Bytes& q) { q[tdx::kHeaderSize + tdx::kBodyMrtdOffset] ^= 0x80; });
  EXPECT_FAILS_AT(run.verify(), signature);
}

TEST(TdxMutation, FlippedQeReportByteFailsAtSignature) {
  const auto run = spr_with_quote([](Bytes& q) { q[tdx::kHeaderSize + tdx::kTdReport10Size + 4 + 128 + 6 + 130] ^= 1; });
  EXPECT_FAILS_AT(run.verify(), signature);
}

TEST(TdxMutation, FlippedPckCertificateByteFailsAtCertChain) {
  const auto run = spr_with_quote([](Bytes& q) {
    const std::string_view text(reinterpret_cast<const char*>(q.data()), q.size());
    const auto end = text.find("-----END CERTIFICATE-----");  // the leaf's signature is just before
    ASSERT_NE(end, std::string_view::npos);
    auto& c = q[end - 40];
    c = c == 'A' ? 'B' : 'A';
  });
  EXPECT_FAILS_AT(run.verify(), cert_chain);
}

// spr-e4-v4 with `file`'s text at `needle` + `offset` replaced by `c` (the JSON stays valid).
TdxRun spr_with_json_edit(const std::string& file, std::string_view needle, std::size_t offset, char c) {
  TdxRun run{load("spr-e4-v4")};
  auto& bytes = run.collateral.files[file];
  std::string text(bytes.begin(), bytes.end());
  const auto at = text.find(needle);
  EXPECT_NE(at, std::string::npos) << needle;
  if (at != std::string::npos) text[at + offset] = c;
  bytes.assign(text.begin(), text.end());
  return run;
}

TEST(TdxMutation, FlippedTcbInfoByteFailsAtSignature) {
  EXPECT_FAILS_AT(spr_with_json_edit("tcbinfo.json", "\"tcbEvaluationDataNumber\":15", 26, '6').verify(), signature);
}

TEST(TdxMutation, FlippedQeIdentityByteFailsAtSignature) {
  EXPECT_FAILS_AT(spr_with_json_edit("qeidentity.json", "\"isvprodid\":2", 12, '3').verify(), signature);
}

TEST(TdxMutation, QeAuthDataOrAttestationKeyNotBoundByTheQeReportFailsAtSignature) {
  // QE auth data sits after the QE report and its signature; neither signature covers it, only
  // the QE report data's hash does.
  constexpr std::size_t kSigData = tdx::kHeaderSize + tdx::kTdReport10Size + 4;
  const auto auth = spr_with_quote([](Bytes& q) { q[kSigData + 128 + 6 + tdx::kQeReportSize + 64 + 2] ^= 1; });
  const auto r = auth.verify();
  EXPECT_FAILS_AT(r, signature);
  EXPECT_NE(r.error().message.find("QE report data"), std::string::npos) << r.error().message;
  const auto key = spr_with_quote([](Bytes& q) { q[kSigData + 64 + 3] ^= 1; });
  EXPECT_FAILS_AT(key.verify(), signature);
}

TEST(TdxMutation, SignedJsonIsCheckedOnItsRawBytes) {
  TdxRun run{load("spr-e4-v4")};
  auto& file = run.collateral.files["tcbinfo.json"];
  std::string text(file.begin(), file.end());
  // Whitespace around the signed value changes nothing...
  std::string spaced = "{ \"tcbInfo\" :\n " + text.substr(11);
  file.assign(spaced.begin(), spaced.end());
  EXPECT_FAILS_AT(run.verify(), tcb_status);
  // ...inside it, it is another document.
  std::string inner = text;
  inner.insert(inner.find("\"version\""), " ");
  file.assign(inner.begin(), inner.end());
  EXPECT_FAILS_AT(run.verify(), signature);
  // Two "tcbInfo" members: which one was signed is ambiguous.
  const auto body_end = text.find(",\"signature\"");
  std::string twice = text.substr(0, body_end) + "," + text.substr(1, body_end - 1) + text.substr(body_end);
  file.assign(twice.begin(), twice.end());
  EXPECT_FAILS_AT(run.verify(), malformed);
}

TEST(TdxMutation, AnotherVendorsRootFailsAtCertChain) {
  TdxRun run{load("spr-e4-v4")};
  run.anchors = pinned_roots(Provider::sev_snp);  // AMD's ARKs
  EXPECT_FAILS_AT(run.verify(), cert_chain);
}

TEST(TdxMutation, EveryTruncationIsMalformedNeverACrash) {
  const auto full = *load("spr-e4-v4").find("quote.dat");
  const auto parsed = tdx::parse_quote(full);
  ASSERT_TRUE(parsed.has_value());
  const std::size_t end = 4935;  // where the signature data ends (the file has 39 bytes of padding)
  for (std::size_t n = 0; n < end; n += (n < 700 ? 1 : 37)) {
    const auto run = spr_with_quote([&](Bytes& q) { q.resize(n); });
    const auto result = run.verify();
    EXPECT_FAILS_AT(result, malformed);
  }
}

TEST(TdxMutation, HeaderAndCertificationDataFieldsAreNamed) {
  const Bytes v4 = *load("spr-e4-v4").find("quote.dat");
  const Bytes v5 = *load("v5-sample").find("quote.dat");
  constexpr std::size_t kCertType = tdx::kHeaderSize + tdx::kTdReport10Size + 4 + 128;
  constexpr std::size_t kInnerType = kCertType + 6 + tdx::kQeReportSize + 64 + 2 + 32;
  const std::vector<std::tuple<const Bytes*, std::size_t, std::uint8_t, std::string>> cases = {
      {&v4, 0, 3, "version 3"},
      {&v4, 2, 3, "attestation key type 3"},
      {&v4, 4, 0x00, "TEE type 0"},
      {&v5, 48, 4, "v5 body type 4"},
      {&v5, 50, 0x49, "v5 body size"},
      {&v4, kCertType, 5, "certification data type 5"},
      {&v4, kInnerType, 4, "QE certification data type 4"},
  };
  for (const auto& [quote, offset, value, words] : cases) {
    Bytes q = *quote;
    q[offset] = value;
    const auto parsed = tdx::parse_quote(q);
    EXPECT_FAILS_AT(parsed, malformed);
    EXPECT_NE(parsed.error().message.find(words), std::string::npos) << parsed.error().message;
  }
  for (std::size_t n = 0; n < v5.size(); n += 7) EXPECT_FAILS_AT(tdx::parse_quote(std::span(v5).first(n)), malformed);
}

TEST(TdxMutation, MissingCollateralFilesAreNamed) {
  for (const auto* name : {"pckcrl.der", "rootcrl.der", "tcbinfo.json", "tcbinfo_issuer_chain.pem", "qeidentity.json",
                           "qeidentity_issuer_chain.pem"}) {
    TdxRun run{load("spr-e4-v4")};
    run.collateral.files.erase(name);
    const auto result = run.verify();
    EXPECT_FAILS_AT(result, malformed);
    EXPECT_NE(result.error().message.find(name), std::string::npos) << result.error().message;
  }
}

TEST(TdxMutation, CollateralOfAnotherKindIsMalformed) {
  TdxRun run{load("spr-e4-v4")};
  run.collateral.files["tcbinfo.json"] = run.collateral.files["qeidentity.json"];
  EXPECT_FAILS_AT(run.verify(), malformed);
  run = TdxRun{load("spr-e4-v4")};
  run.collateral.files["pckcrl.der"] = Bytes{0x30, 0x03, 0x02, 0x01, 0x00};
  EXPECT_FAILS_AT(run.verify(), malformed);
}

TEST(TdxCollateral, ParsesTheFixturesTcbInfoAndQeIdentity) {
  const auto v5 = load("v5-sample");
  const auto info = tdx::parse_tcb_info(*v5.find("tcbinfo.json"));
  ASSERT_TRUE(info.has_value()) << info.error().message;
  EXPECT_EQ(info->levels.size(), 3U);
  ASSERT_EQ(info->module_identities.size(), 2U);
  EXPECT_EQ(info->module_identities[1].id, "TDX_01");
  const auto& file = *v5.find("tcbinfo.json");
  const std::string_view body(reinterpret_cast<const char*>(file.data()) + info->signed_json.body_offset,
                              info->signed_json.body_size);
  EXPECT_TRUE(body.starts_with("{\"id\":\"TDX\"")) << body.substr(0, 20);
  EXPECT_TRUE(body.ends_with("}]}")) << body.substr(body.size() - 10);
  const auto qe = tdx::parse_qe_identity(*v5.find("qeidentity.json"));
  ASSERT_TRUE(qe.has_value()) << qe.error().message;
  EXPECT_EQ(qe->isv_prod_id, 2);
}

TEST(TdxCollateral, V5TcbLevelsJudgeTheTdxModuleByItsIdentity) {
  TdxRun run{load("v5-sample")};
  const auto check = tdx::check_quote(*run.collateral.find("quote.dat"), run.anchors, kV5Time);
  ASSERT_TRUE(check.has_value()) << check.error().message;
  const auto info = tdx::parse_tcb_info(*run.collateral.find("tcbinfo.json"));
  ASSERT_TRUE(info.has_value());
  auto body = check->quote.body;  // TEE_TCB_SVN 0b 01 04: module TDX_01 at SVN 11
  const auto status = tdx::match_tcb_level(*info, check->pck, body);
  ASSERT_TRUE(status.has_value()) << status.error().message;
  EXPECT_EQ(*status, "UpToDate");
  body.tee_tcb_svn[0] = 5;  // TDX_01's level for SVN >= 4 is OutOfDate: the worse status wins
  EXPECT_EQ(tdx::match_tcb_level(*info, check->pck, body).value_or("?"), "OutOfDate");
  body.tee_tcb_svn[0] = 1;  // below every TDX_01 level
  EXPECT_FAILS_AT(tdx::match_tcb_level(*info, check->pck, body), tcb_status);
  body.tee_tcb_svn[1] = 2;  // no TDX_02 identity
  const auto none = tdx::match_tcb_level(*info, check->pck, body);
  EXPECT_FAILS_AT(none, tcb_status);
  EXPECT_NE(none.error().message.find("TDX_02"), std::string::npos);
}

TEST(TdxPck, SgxExtensionsOfTheRealPckCertificates) {
  for (const auto& [set, fmspc] : std::vector<std::pair<std::string, std::string>>{
           {"spr-e4-v4", "50806f000000"}, {"v5-sample", "90c06f000000"}, {"qvl-synthetic", "ed742af8adf5"}}) {
    const auto certs = x509::parse_pem_certs(*load(set).find("pck_chain.pem"), "pck_chain.pem");
    ASSERT_TRUE(certs.has_value()) << set;
    const auto ext = x509::extension_by_oid(certs->front().get(), "1.2.840.113741.1.13.1");
    ASSERT_TRUE(ext.has_value()) << set;
    const auto pck = tdx::parse_pck_extensions(*ext);
    ASSERT_TRUE(pck.has_value()) << set << ": " << pck.error().message;
    EXPECT_EQ(to_hex(pck->fmspc), fmspc);
    // Every cut of the extension is malformed, never a crash.
    for (std::size_t n = 0; n < ext->size(); ++n)
      EXPECT_FAILS_AT(tdx::parse_pck_extensions(std::span(*ext).first(n)), malformed);
  }
  EXPECT_FAILS_AT(tdx::parse_pck_extensions(Bytes{0x30, 0x00}), malformed);
  EXPECT_FAILS_AT(tdx::parse_pck_extensions(Bytes(5000, 0x30)), malformed);
}

TEST(TdxPck, PcciQuotesCarryTheirPlatformsFmspc) {
  const auto dir = load("pcci-quotes");
  for (const auto& [name, fmspc] : std::vector<std::pair<std::string, std::string>>{
           {"quote.dat", "00806f050000"}, {"quote_b0c06f.dat", "b0c06f000000"}}) {
    const auto check = tdx::check_quote(*dir.find(name), pinned_roots(Provider::tdx), kV5Time);
    ASSERT_TRUE(check.has_value()) << name << ": " << check.error().message;
    EXPECT_EQ(to_hex(check->pck.fmspc), fmspc) << name;
  }
}

TEST(TdxCollateral, TcbStatusOrder) {
  EXPECT_GT(*tdx::tcb_status_rank("UpToDate"), *tdx::tcb_status_rank("SWHardeningNeeded"));
  EXPECT_GT(*tdx::tcb_status_rank("SWHardeningNeeded"), *tdx::tcb_status_rank("ConfigurationNeeded"));
  EXPECT_GT(*tdx::tcb_status_rank("ConfigurationNeeded"), *tdx::tcb_status_rank("ConfigurationAndSWHardeningNeeded"));
  EXPECT_GT(*tdx::tcb_status_rank("ConfigurationAndSWHardeningNeeded"), *tdx::tcb_status_rank("OutOfDate"));
  EXPECT_GT(*tdx::tcb_status_rank("OutOfDate"), *tdx::tcb_status_rank("Revoked"));
  EXPECT_FALSE(tdx::tcb_status_rank("Fine").has_value());
}

}  // namespace
}  // namespace rvenc::attestation
