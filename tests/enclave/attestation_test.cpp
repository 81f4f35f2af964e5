#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "fake_tsm.hpp"
#include "rvenc/enclave/attestation.hpp"

#include "rvenc/attestation/tdx.hpp"
#include "support/tdx_signer.hpp"
#include "rvenc/enclave/key.hpp"
#include "rvenc/enclave/server.hpp"
#include "support/test_support.hpp"

namespace rvenc::enclave {
namespace {

namespace fs = std::filesystem;
using fake::FakeTsm;

protocol::ReportData report_data_of(std::uint8_t fill) {
  protocol::ReportData data;
  data.fill(fill);
  return data;
}

TEST(SimulatedProvider, EvidenceVerifiesWithThePlatformKey) {
  crypto::Ed25519Seed seed;
  crypto::random_bytes(seed.span());
  auto provider = SimulatedProvider::create(seed);
  ASSERT_TRUE(provider) << provider.error().to_string();
  EXPECT_EQ((*provider)->name(), "simulated");

  // The measurement is the SHA-256 of this very executable.
  std::ifstream self("/proc/self/exe", std::ios::binary);
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(self)), std::istreambuf_iterator<char>());
  const auto expected = crypto::sha256(bytes);
  ASSERT_EQ((*provider)->measurement().size(), expected.size());
  EXPECT_TRUE(std::equal(expected.begin(), expected.end(), (*provider)->measurement().begin()));

  const auto key = crypto::xwing_generate_keypair();
  const auto challenge = crypto::random_array<protocol::kChallengeBytes>();
  protocol::AttestationDocument doc;
  doc.key_id = crypto::key_id(key.public_key);
  doc.public_key = key.public_key;
  doc.not_after = 2'000'000'000;
  doc.provider = "simulated";
  doc.binding = protocol::kCurrentBinding;
  doc.report_data = protocol::expected_report_data(doc, challenge);
  doc.measurement.assign(expected.begin(), expected.end());
  auto evidence = (*provider)->evidence(doc.report_data);
  ASSERT_TRUE(evidence);
  doc.evidence = *evidence;

  protocol::AttestationPolicy policy;
  policy.allowed_providers = {"simulated"};
  policy.simulated_platform_key = (*provider)->platform_public_key();
  policy.expected_measurement = doc.measurement;
  EXPECT_TRUE(protocol::verify_attestation(doc, challenge, policy));

  // Another platform key, or another challenge, does not verify.
  protocol::AttestationPolicy wrong = policy;
  wrong.simulated_platform_key = crypto::ed25519_keypair_from_seed(crypto::Ed25519Seed{}).public_key;
  EXPECT_FALSE(protocol::verify_attestation(doc, challenge, wrong));
  EXPECT_FALSE(protocol::verify_attestation(doc, crypto::random_array<protocol::kChallengeBytes>(), policy));
}

TEST(ConfigfsTsm, SevSnpReportCarriesReportDataAndMeasurement) {
  rvenc::test::TempDir dir;
  FakeTsm fake(dir.path(), "entry", "sev_guest", TsmKind::sev_snp);
  auto provider = ConfigfsTsmProvider::create(TsmKind::sev_snp, dir.path(), "entry");
  ASSERT_TRUE(provider) << provider.error().to_string();
  EXPECT_EQ((*provider)->name(), "sev-snp");
  ASSERT_EQ((*provider)->measurement().size(), 48u);
  for (std::size_t i = 0; i < 48; ++i) EXPECT_EQ((*provider)->measurement()[i], FakeTsm::measurement_byte(i));

  const auto data = report_data_of(0x5A);
  auto evidence = (*provider)->evidence(data);
  ASSERT_TRUE(evidence) << evidence.error().to_string();
  ASSERT_EQ(evidence->size(), 0x4A0u);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), evidence->begin() + 0x50));
  EXPECT_EQ(fake.reports(), 2);  // one at creation for the measurement, one now
}

TEST(ConfigfsTsm, TdxQuoteAndAutoDetection) {
  rvenc::test::TempDir dir;
  FakeTsm fake(dir.path(), "rvenc-" + std::to_string(::getpid()), "tdx_guest", TsmKind::tdx);
  AttestationConfig config;
  config.mode = "auto";
  config.tsm_root = dir.path();
  auto provider = make_attestation_provider(config);
  ASSERT_TRUE(provider) << provider.error().to_string();
  EXPECT_EQ((*provider)->name(), "tdx");
  const auto data = report_data_of(0x33);
  auto evidence = (*provider)->evidence(data);
  ASSERT_TRUE(evidence) << evidence.error().to_string();
  EXPECT_TRUE(std::equal(data.begin(), data.end(), evidence->begin() + 48 + 520));
  EXPECT_FALSE((*provider)->platform_public_key());
}

// Before: the measurement and REPORTDATA were read at the v4 offsets in every quote, so a v5
// quote (TD report 1.5, after a 6-byte body descriptor) gave a wrong MRTD and was refused for not
// carrying the reportData. A v5 quote of the TDX test signer.
TEST(ConfigfsTsm, TdxV5QuoteIsReadAtItsOwnOffsets) {
  rvenc::test::TempDir dir;
  const auto signer = test::TdxTestSigner::create();
  test::TdxQuoteOptions options;
  options.version = 5;
  for (std::size_t i = 0; i < options.mrtd.size(); ++i) options.mrtd[i] = static_cast<std::uint8_t>(0x40 + i);
  FakeTsm fake(dir.path(), "entry", "tdx_guest", [&](const protocol::ReportData& data) {
    std::array<std::uint8_t, 64> report_data{};
    std::copy(data.begin(), data.end(), report_data.begin());
    return signer.quote(report_data, options);
  });
  auto provider = ConfigfsTsmProvider::create(TsmKind::tdx, dir.path(), "entry");
  ASSERT_TRUE(provider) << provider.error().to_string();
  ASSERT_EQ((*provider)->measurement().size(), options.mrtd.size());
  EXPECT_TRUE(std::equal(options.mrtd.begin(), options.mrtd.end(), (*provider)->measurement().begin()));
  const auto data = report_data_of(0x55);
  auto evidence = (*provider)->evidence(data);
  ASSERT_TRUE(evidence) << evidence.error().to_string();
  const auto quote = attestation::tdx::parse_quote(*evidence);
  ASSERT_TRUE(quote) << quote.error().message;
  EXPECT_EQ(quote->version, 5);
}

TEST(ConfigfsTsm, RefusesAnotherProviderThanAskedFor) {
  rvenc::test::TempDir dir;
  FakeTsm fake(dir.path(), "entry", "sev_guest", TsmKind::sev_snp);
  auto provider = ConfigfsTsmProvider::create(TsmKind::tdx, dir.path(), "entry");
  ASSERT_FALSE(provider);
  EXPECT_EQ(provider.error().code, Errc::attestation_failed);
  EXPECT_NE(provider.error().message.find("sev-snp"), std::string::npos);
}

TEST(ConfigfsTsm, RefusesAReportThatDoesNotCarryTheReportData) {
  rvenc::test::TempDir dir;
  FakeTsm fake(dir.path(), "entry", "sev_guest", TsmKind::sev_snp, /*echo_report_data=*/false);
  // The creation report is bound to zero reportData, which the fake's filler (0x11) is not.
  auto provider = ConfigfsTsmProvider::create(std::nullopt, dir.path(), "entry");
  ASSERT_FALSE(provider);
  EXPECT_EQ(provider.error().code, Errc::attestation_failed);
}

TEST(AttestationSelection, AutoWithoutHardwareRefusesAndNeverFallsBackToSimulated) {
  rvenc::test::TempDir dir;
  AttestationConfig config;
  config.mode = "auto";
  config.tsm_root = dir.path() / "no-such-tree";
  config.platform_key_file = dir.file("platform.key");
  auto provider = make_attestation_provider(config);
  ASSERT_FALSE(provider);
  EXPECT_EQ(provider.error().code, Errc::attestation_failed);
  EXPECT_NE(provider.error().message.find("simulated"), std::string::npos);
  EXPECT_FALSE(fs::exists(config.platform_key_file));

  config.mode = "sev-snp";
  EXPECT_FALSE(make_attestation_provider(config));
  config.mode = "bogus";
  auto bogus = make_attestation_provider(config);
  ASSERT_FALSE(bogus);
  EXPECT_EQ(bogus.error().code, Errc::invalid_request);
}

TEST(AttestationSelection, SimulatedCreatesThePlatformKeyOnce) {
  rvenc::test::TempDir dir;
  AttestationConfig config;
  config.mode = "simulated";
  config.platform_key_file = dir.file("platform.key");
  auto first = make_attestation_provider(config);
  ASSERT_TRUE(first) << first.error().to_string();
  auto second = make_attestation_provider(config);
  ASSERT_TRUE(second);
  EXPECT_EQ((*first)->platform_public_key(), (*second)->platform_public_key());
  struct stat st {};
  ASSERT_EQ(::stat(config.platform_key_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

// Issue 30 item 1: with hardware attestation the key is made fresh at every start (a file on the
// host's disk would hand it to the host) unless a key file is given explicitly.
TEST(AttestationSelection, HardwareEnclaveMakesAFreshKeyAtEveryStartUnlessGivenAKeyFile) {
  rvenc::test::TempDir dir;
  FakeTsm fake(dir.path(), "rvenc-" + std::to_string(::getpid()), "sev_guest", TsmKind::sev_snp);
  EnclaveOptions options;
  options.attestation.mode = "sev-snp";
  options.attestation.tsm_root = dir.path();
  const bool default_file_existed = fs::exists(kDefaultKeyFile);
  std::optional<crypto::KeyId> previous;
  for (int start = 0; start < 2; ++start) {
    auto server = EnclaveServer::create(options);
    ASSERT_TRUE(server) << server.error().to_string();
    const auto key_id = (*server)->service().current_key()->key_id();
    if (previous) {
      EXPECT_NE(key_id, *previous) << "a new key at every start";
    }
    previous = key_id;
  }
  EXPECT_EQ(fs::exists(kDefaultKeyFile), default_file_existed) << "no key file written";

  options.key_file = dir.file("enclave.key");
  auto first = EnclaveServer::create(options);
  ASSERT_TRUE(first) << first.error().to_string();
  const auto kept = (*first)->service().current_key()->key_id();
  first->reset();
  auto second = EnclaveServer::create(options);
  ASSERT_TRUE(second) << second.error().to_string();
  EXPECT_EQ((*second)->service().current_key()->key_id(), kept) << "an explicit key file is used";
}

}  // namespace
}  // namespace rvenc::enclave
