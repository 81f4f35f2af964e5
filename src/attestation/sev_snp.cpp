// AMD SEV-SNP: the report parser (sev_snp.hpp) and verify_sev_snp (verifier.hpp).
//
// Checks, in order (the first failure is returned):
//   1. malformed   the report (1184 bytes, version 2/3/5), vcek.der/vlek.der, ask_ark.pem, crl.der
//   2. cert_chain / expired / crl
//                  VCEK → ASK → ARK (VLEK → ASVK → ARK) at `at`, the ARK one of the anchors; the
//                  product of the VCEK (productName), the ARK (CN) and the report's CPUID agree
//   3. signature   ECDSA P-384 / SHA-384 by the VCEK/VLEK over bytes 0..0x29F
//   4. cert_chain  CHIP_ID = the VCEK's hwID (VCEK only: a VLEK names no chip)
//   5. tcb_status  REPORTED_TCB = the VCEK/VLEK's TCB extensions; ≥ policy.min_tcb per component
//   6. debug       guest policy DEBUG (and SMT, MIGRATE_MA) as the policy allows
//   7. measurement MEASUREMENT, HOST_DATA, ID_KEY_DIGEST, AUTHOR_KEY_DIGEST in the policy's lists
//   8. report_data REPORT_DATA = the expected binding
#include "rvenc/attestation/sev_snp.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>

#include "rvenc/attestation/bytes.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/crypto/secret.hpp"
#include "x509.hpp"

namespace rvenc::attestation {
namespace {

// --- report layout (ABI spec 56860, Table "ATTESTATION_REPORT Structure") --------------------
constexpr std::size_t kOffGuestSvn = 0x04, kOffPolicy = 0x08, kOffFamilyId = 0x10, kOffImageId = 0x20;
constexpr std::size_t kOffVmpl = 0x30, kOffSignatureAlgo = 0x34, kOffCurrentTcb = 0x38, kOffPlatformInfo = 0x40;
constexpr std::size_t kOffFlags = 0x48, kOffReportData = 0x50, kOffMeasurement = 0x90, kOffHostData = 0xC0;
constexpr std::size_t kOffIdKeyDigest = 0xE0, kOffAuthorKeyDigest = 0x110, kOffReportId = 0x140;
constexpr std::size_t kOffReportIdMa = 0x160, kOffReportedTcb = 0x180, kOffCpuidFamily = 0x188;
constexpr std::size_t kOffChipId = 0x1A0, kOffCommittedTcb = 0x1E0, kOffLaunchTcb = 0x1F0;
constexpr std::size_t kOffSignatureR = 0x2A0, kOffSignatureS = 0x2E8;

// --- AMD's VCEK/VLEK extensions (AMD KDS spec 57230) -----------------------------------------
constexpr std::string_view kOidProductName = "1.3.6.1.4.1.3704.1.2";
constexpr std::string_view kOidBlSpl = "1.3.6.1.4.1.3704.1.3.1";
constexpr std::string_view kOidTeeSpl = "1.3.6.1.4.1.3704.1.3.2";
constexpr std::string_view kOidSnpSpl = "1.3.6.1.4.1.3704.1.3.3";
constexpr std::string_view kOidUcodeSpl = "1.3.6.1.4.1.3704.1.3.8";
constexpr std::string_view kOidFmcSpl = "1.3.6.1.4.1.3704.1.3.9";
constexpr std::string_view kOidHwId = "1.3.6.1.4.1.3704.1.4";

template <std::size_t N>
void copy_at(std::span<const std::uint8_t> bytes, std::size_t offset, std::array<std::uint8_t, N>& out) {
  std::memcpy(out.data(), bytes.data() + offset, N);
}

}  // namespace

std::string_view snp_product_name(SnpProduct product) noexcept {
  switch (product) {
    case SnpProduct::milan: return "Milan";
    case SnpProduct::genoa: return "Genoa";
    case SnpProduct::turin: return "Turin";
  }
  return "Milan";
}

std::optional<SnpProduct> snp_product_from_name(std::string_view name) noexcept {
  if (name.starts_with("ARK-")) name.remove_prefix(4);
  for (const auto product : {SnpProduct::milan, SnpProduct::genoa, SnpProduct::turin}) {
    const auto base = snp_product_name(product);
    if (name == base || (name.starts_with(base) && name.size() > base.size() && name[base.size()] == '-')) {
      return product;
    }
  }
  return std::nullopt;
}

SnpTcb decode_snp_tcb(const SnpTcbBytes& raw, SnpProduct product) noexcept {
  if (product == SnpProduct::turin) {
    return SnpTcb{.fmc = raw[0], .bootloader = raw[1], .tee = raw[2], .snp = raw[3], .microcode = raw[7]};
  }
  return SnpTcb{.fmc = std::nullopt, .bootloader = raw[0], .tee = raw[1], .snp = raw[6], .microcode = raw[7]};
}

bool snp_tcb_at_least(const SnpTcb& tcb, const SnpTcb& minimum) noexcept {
  return tcb.fmc.value_or(0) >= minimum.fmc.value_or(0) && tcb.bootloader >= minimum.bootloader &&
         tcb.tee >= minimum.tee && tcb.snp >= minimum.snp && tcb.microcode >= minimum.microcode;
}

std::uint64_t snp_tcb_to_uint(const SnpTcbBytes& raw) noexcept { return load_le<std::uint64_t>(raw, 0); }

SnpTcbBytes snp_tcb_from_uint(std::uint64_t value) noexcept {
  SnpTcbBytes raw{};
  for (auto& byte : raw) {
    byte = static_cast<std::uint8_t>(value & 0xff);
    value >>= 8;
  }
  return raw;
}

std::optional<std::uint64_t> snp_tcb_from_hex(std::string_view hex) noexcept {
  SnpTcbBytes raw{};
  if (hex.size() != 2 * raw.size() || !from_public_hex_into(hex, raw, "minTcb")) return std::nullopt;
  return snp_tcb_to_uint(raw);
}

std::optional<SnpSigningKey> SnpReport::signing_key() const noexcept {
  if (signing_key_raw == 0) return SnpSigningKey::vcek;
  if (signing_key_raw == 1) return SnpSigningKey::vlek;
  return std::nullopt;
}

std::optional<SnpProduct> SnpReport::cpuid_product() const noexcept {
  if (!cpuid_family || !cpuid_model) return std::nullopt;
  if (*cpuid_family == 0x1A) return SnpProduct::turin;
  if (*cpuid_family == 0x19) return *cpuid_model < 0x10 ? SnpProduct::milan : SnpProduct::genoa;
  return std::nullopt;
}

Outcome<SnpReport> parse_snp_report(std::span<const std::uint8_t> bytes) {
  if (bytes.size() != kSnpReportBytes) {
    return fail(Check::malformed, "the SEV-SNP report has " + std::to_string(bytes.size()) + " bytes (expected " +
                                      std::to_string(kSnpReportBytes) + ")");
  }
  SnpReport report;
  report.version = load_le<std::uint32_t>(bytes, 0);
  if (report.version != 2 && report.version != 3 && report.version != 5) {
    return fail(Check::malformed,
                "SEV-SNP report version " + std::to_string(report.version) + " is not supported (2, 3 or 5)");
  }
  report.guest_svn = load_le<std::uint32_t>(bytes, kOffGuestSvn);
  report.policy = load_le<std::uint64_t>(bytes, kOffPolicy);
  copy_at(bytes, kOffFamilyId, report.family_id);
  copy_at(bytes, kOffImageId, report.image_id);
  report.vmpl = load_le<std::uint32_t>(bytes, kOffVmpl);
  report.signature_algo = load_le<std::uint32_t>(bytes, kOffSignatureAlgo);
  copy_at(bytes, kOffCurrentTcb, report.current_tcb);
  report.platform_info = load_le<std::uint64_t>(bytes, kOffPlatformInfo);
  const std::uint32_t flags = load_le<std::uint32_t>(bytes, kOffFlags);
  report.author_key_en = (flags & 1U) != 0;
  report.mask_chip_key = (flags & 2U) != 0;
  report.signing_key_raw = (flags >> 2) & 7U;
  copy_at(bytes, kOffReportData, report.report_data);
  copy_at(bytes, kOffMeasurement, report.measurement);
  copy_at(bytes, kOffHostData, report.host_data);
  copy_at(bytes, kOffIdKeyDigest, report.id_key_digest);
  copy_at(bytes, kOffAuthorKeyDigest, report.author_key_digest);
  copy_at(bytes, kOffReportId, report.report_id);
  copy_at(bytes, kOffReportIdMa, report.report_id_ma);
  copy_at(bytes, kOffReportedTcb, report.reported_tcb);
  if (report.version >= 3) {
    report.cpuid_family = bytes[kOffCpuidFamily];
    report.cpuid_model = bytes[kOffCpuidFamily + 1];
    report.cpuid_stepping = bytes[kOffCpuidFamily + 2];
  }
  copy_at(bytes, kOffChipId, report.chip_id);
  copy_at(bytes, kOffCommittedTcb, report.committed_tcb);
  copy_at(bytes, kOffLaunchTcb, report.launch_tcb);
  copy_at(bytes, kOffSignatureR, report.signature_r);
  copy_at(bytes, kOffSignatureS, report.signature_s);
  return report;
}

namespace {

// The signing key's certificate and its verified chain.
struct Keychain {
  SnpSigningKey kind = SnpSigningKey::vcek;
  std::string_view name;  // "VCEK" / "VLEK"
  x509::CertPtr leaf;
  x509::Certs chain;  // verified: leaf, ASK/ASVK, ARK
  SnpProduct product = SnpProduct::milan;
  std::int64_t valid_until = 0;
};

Outcome<x509::Certs> load_intermediates(const Collateral& collateral) {
  const Bytes* pem = collateral.find("ask_ark.pem");
  if (pem == nullptr) return fail(Check::malformed, "collateral ask_ark.pem (ASK/ASVK and ARK) is missing");
  return x509::parse_pem_certs(*pem, "ask_ark.pem");
}

// crl.der: the ARK's CRL (AMD KDS /vcek/v1/{product}/crl), optional.
Outcome<x509::Crls> load_crls(const Collateral& collateral) {
  x509::Crls crls;
  if (const Bytes* der = collateral.find("crl.der")) {
    auto crl = x509::parse_crl(*der, "crl.der");
    if (!crl) return std::unexpected(crl.error());
    crls.push_back(std::move(*crl));
  }
  return crls;
}

// The product the keychain is of: the leaf's productName, the ARK's CN and the report's CPUID
// must not disagree (cert_chain), and at least one of the certificates must name it.
Outcome<SnpProduct> chain_product(const Keychain& keys, const SnpReport& report) {
  std::optional<SnpProduct> by_leaf;
  if (const auto ext = x509::extension_by_oid(keys.leaf.get(), kOidProductName)) {
    const auto name = x509::der_ia5_string(*ext);
    by_leaf = name ? snp_product_from_name(*name) : std::nullopt;
    if (!by_leaf) return fail(Check::malformed, std::string(keys.name) + " productName is not Milan, Genoa or Turin");
  }
  const auto by_ark = snp_product_from_name(x509::subject_cn(keys.chain.back().get()));
  if (!by_leaf && !by_ark) {
    return fail(Check::cert_chain, "neither the " + std::string(keys.name) + " nor the ARK names a product");
  }
  const SnpProduct product = by_leaf.value_or(*by_ark);
  if (by_ark && *by_ark != product) {
    return fail(Check::cert_chain, std::string(keys.name) + " of " + std::string(snp_product_name(product)) +
                                       " chains to an ARK of " + std::string(snp_product_name(*by_ark)));
  }
  if (const auto by_cpu = report.cpuid_product(); by_cpu && *by_cpu != product) {
    return fail(Check::cert_chain, "the report's CPU is a " + std::string(snp_product_name(*by_cpu)) + ", the " +
                                       std::string(keys.name) + " is of " + std::string(snp_product_name(product)));
  }
  return product;
}

Outcome<Keychain> verify_keychain(const SnpReport& report, const VerifyInput& input) {
  Keychain keys;
  const auto kind = report.signing_key();
  if (report.mask_chip_key || report.signing_key_raw == 7) {
    return fail(Check::signature, "the SEV-SNP report is not signed (MASK_CHIP_KEY or no signing key)");
  }
  if (!kind) return fail(Check::malformed, "unknown SIGNING_KEY " + std::to_string(report.signing_key_raw));
  keys.kind = *kind;
  keys.name = *kind == SnpSigningKey::vcek ? "VCEK" : "VLEK";
  const std::string file = *kind == SnpSigningKey::vcek ? "vcek.der" : "vlek.der";
  const Bytes* der = input.collateral.find(file);
  if (der == nullptr) return fail(Check::malformed, "collateral " + file + " is missing");
  auto leaf = x509::parse_der_cert(*der, file);
  if (!leaf) return std::unexpected(leaf.error());
  keys.leaf = std::move(*leaf);
  auto intermediates = load_intermediates(input.collateral);
  if (!intermediates) return std::unexpected(intermediates.error());
  auto anchors = x509::parse_anchors(input.anchors);
  if (!anchors) return std::unexpected(anchors.error());
  auto crls = load_crls(input.collateral);
  if (!crls) return std::unexpected(crls.error());
  const std::string what = std::string(keys.name) + " chain";
  auto chain = x509::verify_chain({.leaf = keys.leaf.get(), .intermediates = *intermediates, .anchors = *anchors,
                                   .crls = *crls, .crl_policy = x509::CrlPolicy::where_issued, .at = input.at,
                                   .what = what});
  if (!chain) return std::unexpected(chain.error());
  keys.chain = std::move(*chain);
  auto product = chain_product(keys, report);
  if (!product) return std::unexpected(product.error());
  keys.product = *product;
  keys.valid_until = std::numeric_limits<std::int64_t>::max();  // an unreadable end counts as 0: never cached
  for (const auto& cert : keys.chain) {
    keys.valid_until = std::min(keys.valid_until, x509::cert_not_after(cert.get()).value_or(0));
  }
  for (const auto& crl : *crls) {
    keys.valid_until = std::min(keys.valid_until, x509::crl_next_update(crl.get()).value_or(0));
  }
  return keys;
}

Outcome<void> verify_report_signature(std::span<const std::uint8_t> evidence, const SnpReport& report,
                                      const Keychain& keys) {
  if (report.signature_algo != kSnpSignatureAlgoEcdsaP384Sha384) {
    return fail(Check::signature, "unsupported SIGNATURE_ALGO " + std::to_string(report.signature_algo) +
                                      " (expected 1, ECDSA P-384 with SHA-384)");
  }
  EVP_PKEY* key = X509_get0_pubkey(keys.leaf.get());
  if (key == nullptr || EVP_PKEY_get_bits(key) != 384) {
    return fail(Check::signature, "the " + std::string(keys.name) + " key is not ECDSA P-384");
  }
  std::array<std::uint8_t, kSnpSignatureScalarBytes> r = report.signature_r, s = report.signature_s;
  std::reverse(r.begin(), r.end());
  std::reverse(s.begin(), s.end());
  const auto ok = x509::verify_ecdsa_raw(key, EVP_sha384(), evidence.first(kSnpSignedBytes), r, s,
                                         "SEV-SNP report signed by the " + std::string(keys.name));
  if (!ok) return std::unexpected(ok.error());
  return {};
}

// CHIP_ID must be the VCEK's hwID: 64 bytes on Milan/Genoa; on Turin the hwID has 8 bytes and the
// rest of CHIP_ID must be zero.
Outcome<void> verify_chip_id(const SnpReport& report, const Keychain& keys) {
  if (keys.kind != SnpSigningKey::vcek) return {};
  const auto hwid = x509::extension_by_oid(keys.leaf.get(), kOidHwId);
  const std::size_t size = keys.product == SnpProduct::turin ? 8 : 64;
  if (!hwid || hwid->size() != size) {
    return fail(Check::malformed, "the VCEK has no " + std::to_string(size) + "-byte hwID extension");
  }
  const bool rest_zero = std::all_of(report.chip_id.begin() + static_cast<std::ptrdiff_t>(size), report.chip_id.end(),
                                     [](std::uint8_t b) { return b == 0; });
  if (!std::equal(hwid->begin(), hwid->end(), report.chip_id.begin()) || !rest_zero) {
    return fail(Check::cert_chain, "the VCEK is another chip's: its hwID is not the report's CHIP_ID " +
                                       to_hex(std::span(report.chip_id).first(size)));
  }
  return {};
}

Outcome<std::uint8_t> tcb_extension(const X509* cert, std::string_view oid, std::string_view name,
                                    std::string_view key_name) {
  const auto ext = x509::extension_by_oid(cert, oid);
  const auto value = ext ? x509::der_uint(*ext) : std::nullopt;
  if (!value || *value > 0xff) {
    return fail(Check::malformed, "the " + std::string(key_name) + " has no valid " + std::string(name) + " extension");
  }
  return static_cast<std::uint8_t>(*value);
}

Outcome<SnpTcb> certificate_tcb(const Keychain& keys) {
  SnpTcb tcb;
  const std::pair<std::string_view, std::string_view> parts[] = {
      {kOidBlSpl, "blSPL"}, {kOidTeeSpl, "teeSPL"}, {kOidSnpSpl, "snpSPL"}, {kOidUcodeSpl, "ucodeSPL"}};
  std::uint8_t* fields[] = {&tcb.bootloader, &tcb.tee, &tcb.snp, &tcb.microcode};
  for (std::size_t i = 0; i < std::size(parts); ++i) {
    const auto value = tcb_extension(keys.leaf.get(), parts[i].first, parts[i].second, keys.name);
    if (!value) return std::unexpected(value.error());
    *fields[i] = *value;
  }
  if (keys.product == SnpProduct::turin) {
    const auto fmc = tcb_extension(keys.leaf.get(), kOidFmcSpl, "fmcSPL", keys.name);
    if (!fmc) return std::unexpected(fmc.error());
    tcb.fmc = *fmc;
  }
  return tcb;
}

std::string describe(const SnpTcb& tcb) {
  std::string out;
  if (tcb.fmc) out += "fmc " + std::to_string(*tcb.fmc) + ", ";
  return out + "bootloader " + std::to_string(tcb.bootloader) + ", tee " + std::to_string(tcb.tee) + ", snp " +
         std::to_string(tcb.snp) + ", microcode " + std::to_string(tcb.microcode);
}

Outcome<void> verify_tcb(const SnpReport& report, const Keychain& keys, const Policy& policy) {
  const auto certified = certificate_tcb(keys);
  if (!certified) return std::unexpected(certified.error());
  const SnpTcb reported = decode_snp_tcb(report.reported_tcb, keys.product);
  if (reported != *certified) {
    return fail(Check::tcb_status, "REPORTED_TCB (" + describe(reported) + ") is not the " + std::string(keys.name) +
                                       "'s TCB (" + describe(*certified) + ")");
  }
  if (policy.sev_snp.min_tcb) {
    const SnpTcb minimum = decode_snp_tcb(snp_tcb_from_uint(*policy.sev_snp.min_tcb), keys.product);
    if (!snp_tcb_at_least(reported, minimum)) {
      return fail(Check::tcb_status, "REPORTED_TCB (" + describe(reported) + ") is below the policy's minimum (" +
                                         describe(minimum) + ")");
    }
  }
  return {};
}

// Guest policy bits that weaken isolation, refused unless the policy allows them. SMT and a
// migration agent are reported under `debug` too: like debug, each lets something outside the
// measured guest observe it (a sibling hyperthread, a migration agent that can export its memory).
Outcome<void> verify_guest_policy(const SnpReport& report, const Policy& policy) {
  if ((report.policy & kSnpPolicyDebug) != 0 && !policy.allow_debug) {
    return fail(Check::debug, "the guest policy allows debugging (POLICY bit 19) and the policy does not allow debug");
  }
  if ((report.policy & kSnpPolicyMigrationAgent) != 0 && !policy.sev_snp.allow_migration_agent) {
    return fail(Check::debug, "the guest policy allows a migration agent (POLICY bit 18) and the policy does not");
  }
  if ((report.policy & kSnpPolicySmt) != 0 && !policy.sev_snp.allow_smt) {
    return fail(Check::debug, "the guest policy allows SMT (POLICY bit 16) and the policy does not");
  }
  return {};
}

Outcome<void> match_list(std::span<const Bytes> accepted, std::span<const std::uint8_t> value, std::string_view field) {
  if (accepted.empty()) return {};
  for (const auto& candidate : accepted) {
    if (std::equal(candidate.begin(), candidate.end(), value.begin(), value.end())) return {};
  }
  return fail(Check::measurement, std::string(field) + " " + to_hex(value) + " is none of the policy's " +
                                      std::to_string(accepted.size()) + " accepted values");
}

Outcome<void> verify_measurements(const SnpReport& report, const Policy& policy) {
  const auto& lists = policy.sev_snp;
  for (const auto& [accepted, value, field] :
       {std::tuple{std::span(lists.measurement), std::span<const std::uint8_t>(report.measurement), "MEASUREMENT"},
        std::tuple{std::span(lists.host_data), std::span<const std::uint8_t>(report.host_data), "HOST_DATA"},
        std::tuple{std::span(lists.id_key_digest), std::span<const std::uint8_t>(report.id_key_digest),
                   "ID_KEY_DIGEST"},
        std::tuple{std::span(lists.author_key_digest), std::span<const std::uint8_t>(report.author_key_digest),
                   "AUTHOR_KEY_DIGEST"}}) {
    if (auto ok = match_list(accepted, value, field); !ok) return ok;
  }
  return {};
}

std::string hex_u64(std::uint64_t value) {
  std::array<std::uint8_t, 8> big{};
  for (std::size_t i = big.size(); i-- > 0;) {
    big[i] = static_cast<std::uint8_t>(value & 0xff);
    value >>= 8;
  }
  return to_hex(big);
}

Verified make_verified(const SnpReport& report, const Keychain& keys) {
  Verified out;
  out.provider = Provider::sev_snp;
  out.measurement.assign(report.measurement.begin(), report.measurement.end());
  out.tcb_status = "UpToDate";
  out.debug = (report.policy & kSnpPolicyDebug) != 0;
  out.report_data = report.report_data;
  out.valid_until = keys.valid_until;
  const std::size_t chip_bytes = keys.product == SnpProduct::turin ? 8 : 64;
  out.fields = {
      {"version", std::to_string(report.version)},
      {"product", std::string(snp_product_name(keys.product))},
      {"signing_key", keys.kind == SnpSigningKey::vcek ? "vcek" : "vlek"},
      {"policy", hex_u64(report.policy)},
      {"reported_tcb", to_hex(report.reported_tcb)},
      {"committed_tcb", to_hex(report.committed_tcb)},
      {"launch_tcb", to_hex(report.launch_tcb)},
      {"host_data", to_hex(report.host_data)},
      {"id_key_digest", to_hex(report.id_key_digest)},
      {"author_key_digest", to_hex(report.author_key_digest)},
      {"chip_id", to_hex(std::span(report.chip_id).first(chip_bytes))},
      {"vmpl", std::to_string(report.vmpl)},
      {"guest_svn", std::to_string(report.guest_svn)},
  };
  return out;
}

}  // namespace

Outcome<Verified> verify_sev_snp(const VerifyInput& input) {
  const auto report = parse_snp_report(input.evidence);
  if (!report) return std::unexpected(report.error());
  const auto keys = verify_keychain(*report, input);
  if (!keys) return std::unexpected(keys.error());
  if (auto ok = verify_report_signature(input.evidence, *report, *keys); !ok) return std::unexpected(ok.error());
  if (auto ok = verify_chip_id(*report, *keys); !ok) return std::unexpected(ok.error());
  if (auto ok = verify_tcb(*report, *keys, input.policy); !ok) return std::unexpected(ok.error());
  if (auto ok = verify_guest_policy(*report, input.policy); !ok) return std::unexpected(ok.error());
  if (auto ok = verify_measurements(*report, input.policy); !ok) return std::unexpected(ok.error());
  if (input.expected_report_data &&
      !crypto::constant_time_equal(report->report_data, *input.expected_report_data)) {
    return fail(Check::report_data, "REPORT_DATA is not the expected binding");
  }
  return make_verified(*report, *keys);
}

}  // namespace rvenc::attestation
