// `rvenc attest verify` (issue 21 item 6) as scripts run it: the real binary on the real fixtures
// of ../shared/attestation (README there says what each set must give).
#include <fstream>
#include <string>
#include <vector>

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include "support/attestation_test_support.hpp"
#include "support/test_support.hpp"

namespace rvenc::attestation {
namespace {

namespace fs = std::filesystem;

struct Run {
  int status = -1;
  std::string output;  // stdout and stderr
};

Run attest_verify(std::vector<std::string> args) {
  std::vector<std::string> argv{test::rvenc_binary(), "attest", "verify"};
  argv.insert(argv.end(), args.begin(), args.end());
  test::ChildProcess child(argv);
  Run run;
  run.status = child.wait_exit(std::chrono::seconds(60));
  run.output = child.output();
  return run;
}

std::string fixture(const std::string& path) { return (test::attestation_fixtures() / path).string(); }

// The last line that looks like a JSON object.
boost::json::object json_line(const std::string& output) {
  const auto begin = output.rfind("\n{") == std::string::npos ? output.find('{') : output.rfind("\n{") + 1;
  const auto end = output.find('\n', begin);
  return boost::json::parse(output.substr(begin, end - begin)).as_object();
}

TEST(AttestVerifyCli, MilanReportVerifiesAndPrintsTheFiveKeys) {
  const auto run = attest_verify({"--provider", "sev-snp", "--evidence", fixture("sev-snp/milan-virtee/report.bin"),
                                  "--at", "1750000000", "--json"});
  ASSERT_EQ(run.status, 0) << run.output;
  const auto obj = json_line(run.output);
  EXPECT_EQ(obj.size(), 5U);
  for (const auto* key : {"provider", "measurement", "tcbStatus", "debug", "reportData"})
    EXPECT_TRUE(obj.contains(key)) << key;
  EXPECT_EQ(obj.at("provider").as_string(), "sev-snp");
  EXPECT_TRUE(obj.at("measurement").as_string().starts_with("7a1e5c266c0108dbc9bb94fa92695132"));
  EXPECT_FALSE(obj.at("debug").as_bool());
  EXPECT_EQ(obj.at("reportData").as_string().size(), 128U);
}

TEST(AttestVerifyCli, DebugReportIsRefusedByDefaultAndAcceptedOnlyByPolicy) {
  const std::vector<std::string> base{"--provider", "sev-snp", "--evidence", fixture("sev-snp/milan-debug/report.bin"),
                                      "--at", "1750000000"};
  const auto refused = attest_verify(base);
  EXPECT_EQ(refused.status, 1) << refused.output;
  EXPECT_NE(refused.output.find("rvenc attest verify: debug"), std::string::npos) << refused.output;

  test::TempDir dir;
  std::ofstream(dir.file("policy.json")) << R"({"allowDebug": true})";
  auto args = base;
  args.insert(args.end(), {"--policy", dir.file("policy.json")});
  const auto allowed = attest_verify(args);
  EXPECT_EQ(allowed.status, 0) << allowed.output;
}

TEST(AttestVerifyCli, AMeasurementNotInThePolicyFailsAtMeasurement) {
  test::TempDir dir;
  std::ofstream(dir.file("policy.json")) << R"({"sevSnp": {"measurement": [")" << std::string(96, '0') << R"("]}})";
  const auto run = attest_verify({"--provider", "sev-snp", "--evidence", fixture("sev-snp/milan-virtee/report.bin"),
                                  "--at", "1750000000", "--policy", dir.file("policy.json")});
  EXPECT_EQ(run.status, 1) << run.output;
  EXPECT_NE(run.output.find("rvenc attest verify: measurement"), std::string::npos) << run.output;
}

TEST(AttestVerifyCli, SapphireRapidsQuoteOf2023FailsAtTcbStatus) {
  const auto run = attest_verify(
      {"--provider", "tdx", "--evidence", fixture("tdx/spr-e4-v4/quote.dat"), "--at", "1688169600"});
  EXPECT_EQ(run.status, 1) << run.output;
  EXPECT_NE(run.output.find("rvenc attest verify: tcb_status"), std::string::npos) << run.output;
}

TEST(AttestVerifyCli, SyntheticQuoteChainsOnlyToItsTestRootAnnouncedLoudly) {
  const std::string quote = fixture("tdx/qvl-synthetic/quote.dat");
  // Under its own root every signature, chain, CRL and TCB level of Intel's QVL sample passes; its
  // QE Identity names another MRSIGNER than its QE report (tdx_test.cpp), so it stops there.
  const auto trusted = attest_verify({"--provider", "tdx", "--evidence", quote, "--at", "1700000000", "--trust-root",
                                      fixture("tdx/qvl-synthetic/trust_root.pem"), "--json"});
  EXPECT_EQ(trusted.status, 1) << trusted.output;
  EXPECT_NE(trusted.output.find("rvenc attest verify: qe_identity"), std::string::npos) << trusted.output;
  EXPECT_NE(trusted.output.find("WARNING: trusting the test root"), std::string::npos) << trusted.output;
  const auto pinned = attest_verify({"--provider", "tdx", "--evidence", quote, "--at", "1700000000"});
  EXPECT_EQ(pinned.status, 1) << pinned.output;
  EXPECT_NE(pinned.output.find("rvenc attest verify: cert_chain"), std::string::npos) << pinned.output;
}

TEST(AttestVerifyCli, UnusableInputGetsAClearErrorNeverACrash) {
  test::TempDir dir;
  const auto missing = attest_verify({"--provider", "sev-snp", "--evidence", dir.file("absent.bin")});
  EXPECT_EQ(missing.status, 1) << missing.output;
  EXPECT_NE(missing.output.find("malformed: cannot read"), std::string::npos) << missing.output;

  std::ofstream(dir.file("typo.json")) << R"({"allowDebg": true})";
  const auto typo = attest_verify({"--provider", "sev-snp", "--evidence", fixture("sev-snp/milan-debug/report.bin"),
                                   "--policy", dir.file("typo.json")});
  EXPECT_EQ(typo.status, 2) << typo.output;
  EXPECT_NE(typo.output.find("\"allowDebg\""), std::string::npos) << typo.output;

  std::ofstream(dir.file("empty.pem")) << "not a certificate";
  const auto root = attest_verify({"--provider", "tdx", "--evidence", fixture("tdx/qvl-synthetic/quote.dat"),
                                   "--trust-root", dir.file("empty.pem")});
  EXPECT_EQ(root.status, 2) << root.output;
  EXPECT_NE(root.output.find("no PEM certificate"), std::string::npos) << root.output;

  const auto no_provider = attest_verify({"--evidence", fixture("sev-snp/milan-debug/report.bin")});
  EXPECT_EQ(no_provider.status, 2) << no_provider.output;
  const auto bad_provider = attest_verify({"--provider", "sgx", "--evidence", fixture("sev-snp/milan-debug/report.bin")});
  EXPECT_EQ(bad_provider.status, 2) << bad_provider.output;

  // Evidence of another provider, or garbage: a named failure, exit 1.
  std::ofstream(dir.file("garbage.bin")) << std::string(5000, '\x7f');
  for (const auto* provider : {"tdx", "sev-snp"}) {
    const auto garbage = attest_verify({"--provider", provider, "--evidence", dir.file("garbage.bin")});
    EXPECT_EQ(garbage.status, 1) << garbage.output;
    EXPECT_NE(garbage.output.find("rvenc attest verify: "), std::string::npos) << garbage.output;
  }
}

TEST(AttestVerifyCli, CollateralDefaultsToTheEvidenceDirectory) {
  // The report alone, elsewhere: without its VCEK and chain it cannot verify.
  test::TempDir dir;
  fs::copy_file(fixture("sev-snp/milan-virtee/report.bin"), dir.file("report.bin"));
  const auto alone = attest_verify({"--provider", "sev-snp", "--evidence", dir.file("report.bin"), "--at", "1750000000"});
  EXPECT_EQ(alone.status, 1) << alone.output;
  const auto pointed = attest_verify({"--provider", "sev-snp", "--evidence", dir.file("report.bin"), "--collateral",
                                      fixture("sev-snp/milan-virtee"), "--at", "1750000000"});
  EXPECT_EQ(pointed.status, 0) << pointed.output;
}

TEST(AttestVerifyCli, AttestWithoutVerifyStillChecksALiveGateway) {
  // The parent command keeps its flags: with an unreachable gateway it fails to connect (exit 3),
  // it does not run the offline check.
  test::ChildProcess child({test::rvenc_binary(), "attest", "--gateway", "http://127.0.0.1:1", "--json"});
  EXPECT_EQ(child.wait_exit(std::chrono::seconds(60)), 3) << child.output();
}

}  // namespace
}  // namespace rvenc::attestation
