// verify_nvidia_gpu, parse_rim and compare_with_rims on NVIDIA's real fixtures
// (../shared/attestation/nvidia: the H100 sample report, its chain and two RIMs; the 8-GPU PPCIe
// evidence) and their mutations: every failure names its check, never crashes.
#include "rvenc/attestation/nvidia.hpp"

#include <gtest/gtest.h>
#include <openssl/pem.h>

#include "attestation/x509.hpp"
#include "rvenc/common/hex.hpp"
#include "support/attestation_test_support.hpp"

namespace rvenc::attestation {
namespace {

constexpr std::int64_t kIn2024 = 1717200000;  // 2024-06-01
constexpr std::int64_t kIn2019 = 1546300800;  // 2019-01-01: before every certificate of the chain
constexpr std::string_view kHopperNonce = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";

Collateral fixture_dir(std::string_view set) {
  auto files = Collateral::load_dir(test::attestation_fixtures() / "nvidia" / set);
  if (!files) ADD_FAILURE() << files.error().message;
  return files ? std::move(*files) : Collateral{};
}

const Bytes& file(const Collateral& set, std::string_view name) {
  static const Bytes empty;
  const Bytes* found = set.find(name);
  if (found == nullptr) ADD_FAILURE() << "missing " << name;
  return found == nullptr ? empty : *found;
}

SpdmNonce nonce_of(std::string_view hex) {
  auto nonce = from_hex_exact<kSpdmNonceBytes>(hex, "nonce");
  EXPECT_TRUE(nonce.has_value());
  return nonce.value_or(SpdmNonce{});
}

// The sample H100 report (hex in the fixture) with its chain; fields default to a valid run.
struct Run {
  Bytes evidence;
  Bytes chain;
  TrustAnchors anchors = nvidia_device_roots();
  std::int64_t at = kIn2024;
  std::optional<SpdmNonce> expected_nonce = nonce_of(kHopperNonce);

  static Run hopper() {
    const auto set = fixture_dir("hopper-sample");
    const auto& hex = file(set, "attestation_report.hex");
    std::string text(hex.begin(), hex.end());
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())) != 0) text.pop_back();
    auto evidence = from_hex(text, "attestation_report.hex");
    EXPECT_TRUE(evidence.has_value());
    return Run{.evidence = evidence.value_or(Bytes{}), .chain = file(set, "cert_chain.pem")};
  }
  [[nodiscard]] Outcome<GpuVerified> verify() const {
    return verify_nvidia_gpu({.evidence = evidence,
                              .cert_chain_pem = chain,
                              .anchors = anchors,
                              .at = at,
                              .expected_nonce = expected_nonce});
  }
};

void expect_failure(const Run& run, Check check, std::string_view words = {}) {
  test::expect_failed_at(run.verify(), check, words);
}

// The chain with one byte of the leaf's DER (its signature's last byte) flipped, as PEM again.
Bytes chain_with_flipped_leaf_byte(const Bytes& pem) {
  auto certs = x509::parse_pem_certs(pem, "chain");
  EXPECT_TRUE(certs.has_value());
  if (!certs) return {};
  Bytes out;
  for (std::size_t i = 0; i < certs->size(); ++i) {
    unsigned char* der = nullptr;
    const int size = i2d_X509((*certs)[i].get(), &der);
    EXPECT_GT(size, 0);
    Bytes bytes(der, der + size);
    OPENSSL_free(der);
    if (i == 0) bytes.back() ^= 0x01;
    const unsigned char* cursor = bytes.data();
    const x509::CertPtr cert(d2i_X509(nullptr, &cursor, static_cast<long>(bytes.size())));
    EXPECT_NE(cert, nullptr);
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, cert.get());
    char* data = nullptr;
    const long length = BIO_get_mem_data(bio, &data);
    out.insert(out.end(), data, data + length);
    BIO_free(bio);
  }
  return out;
}

// --- the real H100 sample -------------------------------------------------------------------

TEST(NvidiaGpu, ParsesTheHopperSample) {
  const auto run = Run::hopper();
  const auto spdm = parse_spdm_measurements(run.evidence);
  ASSERT_TRUE(spdm.has_value()) << spdm.error().message;
  EXPECT_EQ(spdm->blocks.size(), 64U);
  EXPECT_EQ(spdm->blocks.begin()->first, 0U);
  EXPECT_EQ(spdm->blocks.rbegin()->first, 63U);
  EXPECT_EQ(spdm->blocks.at(1).value.size(), 48U);
  EXPECT_EQ(to_hex(spdm->request_nonce), kHopperNonce);
  EXPECT_EQ(spdm->driver_version(), "550.90.07");
  EXPECT_EQ(spdm->vbios_version(), "96.00.9F.00.01");
  EXPECT_EQ(spdm->signed_bytes + kSpdmSignatureBytes, run.evidence.size());
}

TEST(NvidiaGpu, VerifiesTheHopperSampleUnderThePinnedRoot) {
  const auto verified = Run::hopper().verify();
  ASSERT_TRUE(verified.has_value()) << verified.error().message;
  EXPECT_EQ(verified->leaf_cn, "GH100 A01 GSP FMC LF");
  EXPECT_EQ(verified->driver_version, "550.90.07");
  EXPECT_EQ(verified->vbios_version, "96.00.9F.00.01");
  EXPECT_EQ(verified->measurements.size(), 64U);
  EXPECT_EQ(verified->measurements.at(1).size(), 96U);
  EXPECT_EQ(to_hex(verified->nonce), kHopperNonce);
  EXPECT_EQ(verified->valid_until, 253402300799);  // 9999-12-31 23:59:59
}

TEST(NvidiaGpu, WithoutAnExpectedNonceTheNonceIsNotChecked) {
  auto run = Run::hopper();
  run.expected_nonce.reset();
  EXPECT_TRUE(run.verify().has_value());
}

TEST(NvidiaGpu, AWrongNonceFailsAtReportData) {
  auto run = Run::hopper();
  run.expected_nonce->front() ^= 0x01;
  expect_failure(run, Check::report_data, "nonce");
}

TEST(NvidiaGpu, AFlippedSignatureByteFailsAtSignature) {
  auto run = Run::hopper();
  run.evidence.back() ^= 0x01;
  expect_failure(run, Check::signature);
  run = Run::hopper();
  run.evidence[run.evidence.size() - kSpdmSignatureBytes] ^= 0x80;  // r's first byte
  expect_failure(run, Check::signature);
}

TEST(NvidiaGpu, AFlippedMeasurementByteFailsAtSignature) {
  auto run = Run::hopper();
  run.evidence[kSpdmRequestBytes + 8 + 7 + 10] ^= 0x01;  // block 1's value
  expect_failure(run, Check::signature);
  run = Run::hopper();
  run.evidence[4] ^= 0x01;  // the request's nonce is signed too
  run.expected_nonce.reset();
  expect_failure(run, Check::signature);
}

TEST(NvidiaGpu, AFlippedCertificateByteFailsAtCertChain) {
  auto run = Run::hopper();
  run.chain = chain_with_flipped_leaf_byte(run.chain);
  expect_failure(run, Check::cert_chain, "GH100 A01 GSP FMC LF");
}

TEST(NvidiaGpu, AnotherVendorsRootFailsAtCertChain) {
  auto run = Run::hopper();
  run.anchors = pinned_roots(Provider::sev_snp);  // AMD's ARKs
  expect_failure(run, Check::cert_chain);
}

TEST(NvidiaGpu, ATimeBeforeTheChainsValidityFailsAtExpired) {
  auto run = Run::hopper();
  run.at = kIn2019;
  expect_failure(run, Check::expired);
}

TEST(NvidiaGpu, EveryTruncationIsMalformed) {
  const auto whole = Run::hopper();
  for (std::size_t size = 0; size < whole.evidence.size(); ++size) {
    auto run = whole;
    run.evidence.resize(size);
    expect_failure(run, Check::malformed);
  }
  auto longer = whole;
  longer.evidence.push_back(0);
  expect_failure(longer, Check::malformed, "after the signature");
}

TEST(NvidiaGpu, BadHeadersAndCountsAreMalformed) {
  const auto whole = Run::hopper();
  const auto with = [&](std::size_t offset, std::uint8_t value) {
    auto run = whole;
    run.evidence[offset] = value;
    return run;
  };
  expect_failure(with(0, 0x12), Check::malformed, "GET_MEASUREMENTS");
  expect_failure(with(2, 0x00), Check::malformed, "signed");
  expect_failure(with(kSpdmRequestBytes + 1, 0x61), Check::malformed, "MEASUREMENTS");
  expect_failure(with(kSpdmRequestBytes + 4, 0), Check::malformed, "no measurement block");
  expect_failure(with(kSpdmRequestBytes + 4, 65), Check::malformed);
  expect_failure(with(kSpdmRequestBytes + 7, 0xFF), Check::malformed);           // record length
  expect_failure(with(kSpdmRequestBytes + 8 + 1, 2), Check::malformed, "DMTF");  // measurement spec
  expect_failure(with(kSpdmRequestBytes + 8 + 4 + 1, 49), Check::malformed, "value size");
}

TEST(NvidiaGpu, AChainThatIsNotPemIsMalformed) {
  auto run = Run::hopper();
  run.chain = Bytes{'x', 'y'};
  expect_failure(run, Check::malformed);
}

// --- the 8-GPU PPCIe evidence --------------------------------------------------------------------

TEST(NvidiaGpu, AllEightPpcieGpusVerifyWithTheirNonces) {
  const auto set = fixture_dir("ppcie-8gpu");
  const auto& json = file(set, "gpu_evidence.json");
  const auto gpus = parse_gpu_evidence_json(std::string_view(reinterpret_cast<const char*>(json.data()), json.size()));
  ASSERT_TRUE(gpus.has_value()) << gpus.error().message;
  ASSERT_EQ(gpus->size(), 8U);
  const auto anchors = nvidia_device_roots();
  for (const auto& gpu : *gpus) {
    const auto verified = verify_nvidia_gpu({.evidence = gpu.evidence,
                                             .cert_chain_pem = gpu.cert_chain_pem,
                                             .anchors = anchors,
                                             .at = kIn2024,
                                             .expected_nonce = gpu.nonce});
    ASSERT_TRUE(verified.has_value()) << verified.error().message;
    EXPECT_EQ(verified->nonce, gpu.nonce);
    EXPECT_EQ(verified->driver_version, "590.12");
    EXPECT_EQ(verified->vbios_version, "96.00.A5.00.01");
  }
  auto other = (*gpus)[1];
  other.nonce[0] ^= 0x01;
  const auto wrong = verify_nvidia_gpu({.evidence = other.evidence,
                                        .cert_chain_pem = other.cert_chain_pem,
                                        .anchors = anchors,
                                        .at = kIn2024,
                                        .expected_nonce = other.nonce});
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error().check, Check::report_data);
}

TEST(NvidiaGpu, BadEvidenceJsonIsMalformed) {
  for (const std::string_view json :
       {"", "{}", "[]", "[1]", R"([{"nonce":"00"}])", R"([{"nonce":7,"evidence":"","certificate":""}])",
        R"([{"nonce":"931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb","evidence":"@@"}])"}) {
    const auto gpus = parse_gpu_evidence_json(json);
    ASSERT_FALSE(gpus.has_value()) << json;
    EXPECT_EQ(gpus.error().check, Check::malformed) << json;
  }
}

// --- RIMs ---------------------------------------------------------------------------------------

Rim sample_rim(std::string_view name) {
  const auto set = fixture_dir("hopper-sample");
  const auto& xml = file(set, name);
  auto rim = parse_rim(std::string_view(reinterpret_cast<const char*>(xml.data()), xml.size()));
  EXPECT_TRUE(rim.has_value()) << rim.error().message;
  return rim.value_or(Rim{});
}

TEST(NvidiaRim, ParsesTheSampleRims) {
  const auto rim = sample_rim("1010_0200_882_96005E0001_PROD.swidtag");
  EXPECT_EQ(rim.colloquial_version, "96.00.5e.00.01");
  EXPECT_EQ(rim.product, "GH100");
  ASSERT_TRUE(rim.measurements.contains(1));
  EXPECT_EQ(rim.measurements.at(1).alternatives.front().substr(0, 8), "c3f65ef7");
  EXPECT_FALSE(rim.measurements.at(7).active);
  EXPECT_EQ(sample_rim("g520_0200_885_9600740001_PROD.swidtag").colloquial_version, "96.00.74.00.01");
}

TEST(NvidiaRim, NeitherSampleRimMatchesTheSampleReport) {
  const auto verified = Run::hopper().verify();
  ASSERT_TRUE(verified.has_value()) << verified.error().message;
  for (const auto* name : {"1010_0200_882_96005E0001_PROD.swidtag", "g520_0200_885_9600740001_PROD.swidtag"}) {
    const Rim rims[] = {sample_rim(name)};
    const auto compared = compare_with_rims(*verified, rims);
    ASSERT_FALSE(compared.has_value()) << name;
    EXPECT_EQ(compared.error().check, Check::measurement);
    // Computed independently from the hex and the XML: VBIOS values at 1, 2, 9, 11 differ.
    EXPECT_EQ(compared.error().message, "measurement: the GPU's measurements at index 1, 2, 9, 11 match no RIM value");
  }
}

TEST(NvidiaRim, ARimOfTheReportsOwnValuesMatchesAndOneFlippedValueIsNamed) {
  const auto verified = Run::hopper().verify();
  ASSERT_TRUE(verified.has_value()) << verified.error().message;
  Rim rim{.colloquial_version = "96.00.9f.00.01"};
  for (const auto& [index, hex] : verified->measurements)
    rim.measurements[index] = {.name = "m", .active = true, .size = hex.size() / 2, .alternatives = {hex}};
  EXPECT_TRUE(compare_with_rims(*verified, std::span(&rim, 1)).has_value());

  auto flipped = rim;
  flipped.measurements.at(5).alternatives = {std::string(96, '0')};
  const auto mismatch = compare_with_rims(*verified, std::span(&flipped, 1));
  ASSERT_FALSE(mismatch.has_value());
  EXPECT_EQ(mismatch.error().message, "measurement: the GPU's measurements at index 5 match no RIM value");
  flipped.measurements.at(5).active = false;  // inactive values are not compared
  EXPECT_TRUE(compare_with_rims(*verified, std::span(&flipped, 1)).has_value());

  auto older = rim;
  older.colloquial_version = "96.00.5e.00.01";
  const auto version = compare_with_rims(*verified, std::span(&older, 1));
  ASSERT_FALSE(version.has_value());
  EXPECT_NE(version.error().message.find("RIM version 96.00.5e.00.01"), std::string::npos);

  const Rim both[] = {rim, rim};  // two RIMs at one active index
  EXPECT_EQ(compare_with_rims(*verified, both).error().check, Check::malformed);
  EXPECT_EQ(compare_with_rims(*verified, {}).error().check, Check::measurement);
}

std::string sample_rim_text(std::string_view name = "1010_0200_882_96005E0001_PROD.swidtag") {
  const auto set = fixture_dir("hopper-sample");
  const auto& xml = file(set, name);
  return {xml.begin(), xml.end()};
}

// `text` with the first `from` replaced by `to`.
std::string replaced_in(std::string text, std::string_view from, std::string_view to) {
  const auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

TEST(NvidiaRim, BadRimsAreMalformed) {
  const std::string sample = sample_rim_text();
  const auto replaced = [&](std::string_view from, std::string_view to) { return replaced_in(sample, from, to); };
  for (const std::string& xml :
       {std::string(), std::string("<a>"), std::string("<SoftwareIdentity/>"), sample.substr(0, sample.size() / 2),
        replaced(R"(index="1")", R"(index="0")"), replaced(R"(index="1")", R"(index="x")"),
        replaced(R"(active="False")", R"(active="no")"), replaced(R"(alternatives="1")", R"(alternatives="2")"),
        replaced("ns2:Hash0=\"c3f6", "ns2:Hash0=\"zzf6"),
        std::string(R"(<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]><a>&e;</a>)")}) {
    const auto rim = parse_rim(xml);
    ASSERT_FALSE(rim.has_value()) << xml.substr(0, 80);
    EXPECT_EQ(rim.error().check, Check::malformed);
  }
}

// --- RIM signatures (XMLDSig, libxmlsec1) -------------------------------------------------------

constexpr std::int64_t kIn2026 = 1780000000;  // after the L4 signers' notAfter (2025)

void expect_rim_failure(const std::string& xml, Check check, std::string_view words = {},
                        const TrustAnchors& anchors = nvidia_rim_roots(), std::int64_t at = kIn2024) {
  test::expect_failed_at(verify_rim({.xml = xml, .anchors = anchors, .at = at}), check, words);
}

TEST(NvidiaRimSignature, BothSampleRimsVerifyUnderThePinnedCorimRoot) {
  for (const auto* name : {"1010_0200_882_96005E0001_PROD.swidtag", "g520_0200_885_9600740001_PROD.swidtag"}) {
    const auto rim = verify_rim({.xml = sample_rim_text(name), .anchors = nvidia_rim_roots(), .at = kIn2024});
    ASSERT_TRUE(rim.has_value()) << name << ": " << rim.error().message;
    EXPECT_EQ(rim->measurements.size(), sample_rim(name).measurements.size());
    EXPECT_EQ(rim->colloquial_version, sample_rim(name).colloquial_version);
  }
}

TEST(NvidiaRimSignature, AChangedMeasurementValueFailsAtSignature) {
  expect_rim_failure(replaced_in(sample_rim_text(), "ns2:Hash0=\"c3f65ef7", "ns2:Hash0=\"c3f65ef8"), Check::signature,
                     "HCC RIM L4 Signer");
  expect_rim_failure(
      replaced_in(sample_rim_text(), R"(colloquialVersion="96.00.5E.00.01")", R"(colloquialVersion="96.00.9F.00.01")"),
      Check::signature);
}

TEST(NvidiaRimSignature, AFlippedSignatureValueFailsAtSignature) {
  expect_rim_failure(replaced_in(sample_rim_text(), "<ds:SignatureValue>s5JY", "<ds:SignatureValue>s5JZ"),
                     Check::signature);
}

TEST(NvidiaRimSignature, AnotherAlgorithmFailsAtSignature) {
  expect_rim_failure(
      replaced_in(sample_rim_text(), R"(<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2006/12/xml-c14n11"/>)",
                  R"(<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>)"),
      Check::signature);
}

TEST(NvidiaRimSignature, AnotherRootFailsAtCertChainAndALaterTimeAtExpired) {
  expect_rim_failure(sample_rim_text(), Check::cert_chain, "", nvidia_device_roots());
  expect_rim_failure(sample_rim_text(), Check::expired, "HCC RIM L4 Signer", nvidia_rim_roots(), kIn2026);
}

TEST(NvidiaRimSignature, AMissingOrSecondSignatureIsMalformed) {
  const std::string sample = sample_rim_text();
  const auto begin = sample.find("<ds:Signature ");
  const auto end = sample.find("</ds:Signature>");
  ASSERT_NE(begin, std::string::npos);
  ASSERT_NE(end, std::string::npos);
  const std::string signature = sample.substr(begin, end + 15 - begin);
  expect_rim_failure(replaced_in(sample, signature, ""), Check::malformed, "no ds:Signature");
  expect_rim_failure(replaced_in(sample, signature, signature + signature), Check::malformed, "more than one");
  expect_rim_failure(replaced_in(sample, "<ds:X509Certificate>MII", "<ds:X509Certificate>@II"), Check::malformed);
}

}  // namespace
}  // namespace rvenc::attestation
