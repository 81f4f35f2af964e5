// Collateral sent with hardware evidence (issue 21 item 3): the SEV-SNP certificate table of
// configfs-tsm's auxblob, `--collateral DIR` re-read when it changes, what the provider sends, and
// the document a real `rvenc enclave --collateral` serves.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "fake_hardware_enclave.hpp"
#include "fake_tsm.hpp"
#include "support/snp_signer.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/enclave/attestation.hpp"
#include "rvenc/enclave/collateral.hpp"
#include "rvenc/http/client.hpp"
#include "support/test_support.hpp"

namespace rvenc::enclave {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;

Bytes cert_table(const std::vector<std::pair<std::string_view, Bytes>>& certs) { return fake::snp_cert_table(certs); }

constexpr std::string_view kVcek = "63da758d-e664-4564-adc5-f4b93be8accd";
constexpr std::string_view kAsk = "4ab7b379-bbac-4fe4-a02f-05aef327c782";
constexpr std::string_view kArk = "c0b406a4-a803-4952-9743-3fb6014cd0ae";
constexpr std::string_view kVlek = "a8074bc2-a25a-483e-aae6-39c045a0b8a1";

void write(const fs::path& file, std::string_view content) {
  std::ofstream(file, std::ios::binary) << content;
}

std::string text(const Bytes& bytes) { return {bytes.begin(), bytes.end()}; }

// The DER certificates of a PEM bundle, in order (the table carries DER).
std::vector<Bytes> pem_blocks_as_der(const std::string& pem) {
  constexpr std::string_view kBegin = "-----BEGIN CERTIFICATE-----\n", kEnd = "-----END CERTIFICATE-----";
  std::vector<Bytes> out;
  for (auto at = pem.find(kBegin); at != std::string::npos; at = pem.find(kBegin, at)) {
    const auto end = pem.find(kEnd, at);
    std::string body = pem.substr(at + kBegin.size(), end - at - kBegin.size());
    std::erase(body, '\n');
    out.push_back(protocol::base64_decode(body, "pem").value());
    at = end;
  }
  return out;
}

TEST(SnpCertTable, NamesTheCertificatesAsTheCollateralLayoutDoes) {
  const auto signer = test::SnpTestSigner::create();
  const auto collateral = signer.collateral();
  const std::string ask_ark = text(collateral.files.at("ask_ark.pem"));
  const auto der = pem_blocks_as_der(ask_ark);
  ASSERT_EQ(der.size(), 2U);
  const Bytes& vcek = collateral.files.at("vcek.der");
  const auto table = cert_table({{kArk, der[1]}, {kVcek, vcek}, {"11111111-2222-3333-4444-555555555555", {1, 2}}, {kAsk, der[0]}});
  const auto files = parse_snp_cert_table(table);
  ASSERT_TRUE(files) << files.error().message;
  EXPECT_EQ(files->size(), 2U);
  EXPECT_EQ(files->at("vcek.der"), vcek);
  // ASK first, then ARK, whatever the table's order; the PEM OpenSSL writes.
  EXPECT_EQ(text(files->at("ask_ark.pem")), ask_ark);
  const auto vlek = parse_snp_cert_table(cert_table({{kVlek, vcek}}));
  ASSERT_TRUE(vlek);
  EXPECT_EQ(vlek->at("vlek.der"), vcek);
}

TEST(SnpCertTable, RefusesAnAskOrArkThatIsNoCertificate) {
  const auto refused = parse_snp_cert_table(cert_table({{kAsk, Bytes(200, 0x41)}}));
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("auxblob: the ASK"), std::string::npos) << refused.error().message;
}

TEST(SnpCertTable, RefusesMalformedTables) {
  auto table = cert_table({{kVcek, Bytes(50, 1)}});
  EXPECT_FALSE(parse_snp_cert_table(Bytes(table.begin(), table.begin() + 30)));  // no terminator
  EXPECT_FALSE(parse_snp_cert_table(Bytes{}));
  auto outside = table;
  outside[20] = 0xff;  // length beyond the blob
  EXPECT_FALSE(parse_snp_cert_table(outside));
  auto huge_offset = table;
  huge_offset[19] = 0xff;
  EXPECT_FALSE(parse_snp_cert_table(huge_offset));
  auto empty_cert = table;
  std::fill(empty_cert.begin() + 20, empty_cert.begin() + 24, 0);
  EXPECT_FALSE(parse_snp_cert_table(empty_cert));
  EXPECT_FALSE(parse_snp_cert_table(Bytes(24 * 100, 0xee)));  // entries without end
}

TEST(CollateralDir, ReReadsWhenAFileChangesAndKeepsTheLastGoodSet) {
  test::TempDir dir;
  write(dir.path() / "tcbinfo.json", "{\"tcbInfo\":1}");
  auto collateral = CollateralDir::open(dir.path());
  ASSERT_TRUE(collateral) << collateral.error().message;
  EXPECT_EQ(text((*collateral)->files().at("tcbinfo.json")), "{\"tcbInfo\":1}");

  write(dir.path() / "tcbinfo.json", "{\"tcbInfo\":22}");
  write(dir.path() / "pckcrl.der", "crl");
  const auto changed = (*collateral)->files();
  EXPECT_EQ(text(changed.at("tcbinfo.json")), "{\"tcbInfo\":22}");
  EXPECT_EQ(changed.size(), 2U);

  // Over the document's bounds: refused, the previous files kept.
  write(dir.path() / "big.bin", std::string(protocol::kMaxCollateralBytes, 'x'));
  EXPECT_EQ((*collateral)->files(), changed);
  fs::remove(dir.path() / "big.bin");
  fs::remove(dir.path() / "pckcrl.der");
  EXPECT_EQ((*collateral)->files().size(), 1U);
}

TEST(CollateralDir, OpenNamesAMissingOrOversizedDirectory) {
  test::TempDir dir;
  auto missing = CollateralDir::open(dir.path() / "absent");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::invalid_request);
  EXPECT_NE(missing.error().message.find("absent"), std::string::npos);
  write(dir.path() / "big.bin", std::string(protocol::kMaxCollateralBytes + 1, 'x'));
  auto big = CollateralDir::open(dir.path());
  ASSERT_FALSE(big);
  EXPECT_NE(big.error().message.find("--collateral"), std::string::npos) << big.error().message;
  AttestationConfig simulated;
  simulated.mode = "simulated";
  simulated.platform_key_file = dir.file("platform.key");
  simulated.collateral_dir = dir.path();
  auto refused = make_attestation_provider(simulated);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::invalid_request);
}

// A report of the SEV-SNP layout carrying the reportData asked for.
Bytes snp_report(const protocol::ReportData& report_data) {
  const auto layout = report_layout(TsmKind::sev_snp);
  Bytes report(layout.min_size, 0x22);
  std::copy(report_data.begin(), report_data.end(), report.begin() + static_cast<std::ptrdiff_t>(layout.report_data_offset));
  return report;
}

TEST(ConfigfsTsmCollateral, SendsTheDirectoryAndTheAuxblobCertificates) {
  test::TempDir tsm, files;
  const Bytes vcek(64, 0x30);
  const auto ask_ark = pem_blocks_as_der(text(test::SnpTestSigner::create().collateral().files.at("ask_ark.pem")));
  ASSERT_EQ(ask_ark.size(), 2U);
  fake::FakeTsm fake(tsm.path(), "rvenc-" + std::to_string(::getpid()), "sev_guest", snp_report,
                     cert_table({{kVcek, vcek}, {kAsk, ask_ark[0]}, {kArk, ask_ark[1]}}));
  write(files.path() / "vcek.der", "stale vcek from the directory");
  write(files.path() / "extra.pem", "extra");
  AttestationConfig config;
  config.mode = "sev-snp";
  config.tsm_root = tsm.path();
  config.collateral_dir = files.path();
  auto provider = make_attestation_provider(config);
  ASSERT_TRUE(provider) << provider.error().message;
  ASSERT_TRUE((*provider)->evidence(protocol::ReportData{}));
  const auto collateral = (*provider)->collateral();
  EXPECT_EQ(collateral.at("vcek.der"), vcek) << "the auxblob's certificate replaces the directory's";
  EXPECT_EQ(text(collateral.at("extra.pem")), "extra");
  EXPECT_NE(text(collateral.at("ask_ark.pem")).find("BEGIN CERTIFICATE"), std::string::npos);
}

// The real `rvenc enclave --collateral DIR` puts the files in every document.
TEST(ConfigfsTsmCollateral, EnclaveProcessServesTheCollateralInTheDocument) {
  test::TempDir dir, files;
  write(files.path() / "tcbinfo.json", "{\"tcbInfo\":{}}");
  write(files.path() / "pckcrl.der", std::string("\x30\x82\x00\x01", 4));
  fake::FakeHardwareEnclave enclave(dir, TsmKind::tdx, nullptr, {"--collateral", files.path().string()});
  const auto challenge = crypto::random_array<protocol::kChallengeBytes>();
  auto response = http::fetch("GET", enclave.url + "/rvenc/attestation?challenge=" + to_hex(challenge));
  ASSERT_TRUE(response) << response.error().to_string();
  ASSERT_EQ(response->result_int(), 200U) << response->body();
  auto doc = protocol::parse_attestation(response->body());
  ASSERT_TRUE(doc) << doc.error().message;
  EXPECT_EQ(doc->provider, "tdx");
  EXPECT_EQ(doc->collateral.size(), 2U);
  EXPECT_EQ(text(doc->collateral.at("tcbinfo.json")), "{\"tcbInfo\":{}}");
  EXPECT_EQ(enclave.process->stop(), 0) << enclave.process->output();
}

}  // namespace
}  // namespace rvenc::enclave
