// AMD SEV-SNP attestation reports (SEV-SNP ABI spec 56860, "ATTESTATION_REPORT"): the parsed
// 1184-byte report (versions 2, 3 and 5), the per-product TCB_VERSION layout, and the hex form of
// a TCB used by the policy's `minTcb`. verify_sev_snp (verifier.hpp) checks a report; the enclave
// and the CLI use parse_snp_report to read MEASUREMENT and REPORT_DATA.
//
// Design: parsing is a bounds-checked copy of fixed offsets into plain arrays, no pointer into
// the caller's buffer, no OpenSSL; anything that is not exactly 1184 bytes of a known version is
// `malformed`. The 8-byte TCB_VERSION is kept raw (`std::array<uint8_t, 8>`, as in the report) and
// decoded per product, because AMD changed its layout with Turin: Milan/Genoa
// [bootloader, tee, 0, 0, 0, 0, snp, microcode], Turin [fmc, bootloader, tee, snp, 0, 0, 0, microcode].
// As one integer (Policy::SevSnp::min_tcb) a TCB is the spec's little-endian uint64 of those bytes,
// so "0300000000000873" (the bytes in report order, as AMD's tools print them) is 0x7308000000000003.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "rvenc/attestation/verifier.hpp"

namespace rvenc::attestation {

inline constexpr std::size_t kSnpReportBytes = 1184;
inline constexpr std::size_t kSnpSignedBytes = 0x2A0;     // the signature covers bytes 0 .. 0x29F
inline constexpr std::size_t kSnpSignatureScalarBytes = 72;  // r and s, little-endian, zero-padded
inline constexpr std::uint32_t kSnpSignatureAlgoEcdsaP384Sha384 = 1;

// Guest policy bits (ABI spec, "GUEST_POLICY").
inline constexpr std::uint64_t kSnpPolicySmt = 1ULL << 16;
inline constexpr std::uint64_t kSnpPolicyMigrationAgent = 1ULL << 18;
inline constexpr std::uint64_t kSnpPolicyDebug = 1ULL << 19;

enum class SnpProduct { milan, genoa, turin };
[[nodiscard]] std::string_view snp_product_name(SnpProduct product) noexcept;  // "Milan" / "Genoa" / "Turin"
// By AMD's name as in a VCEK's productName ("Milan-B0", "Genoa", "Turin") or an ARK's CN
// ("ARK-Milan"); nullopt for anything else.
[[nodiscard]] std::optional<SnpProduct> snp_product_from_name(std::string_view name) noexcept;

enum class SnpSigningKey { vcek, vlek };

using SnpTcbBytes = std::array<std::uint8_t, 8>;
struct SnpTcb {
  std::optional<std::uint8_t> fmc;  // Turin and later only
  std::uint8_t bootloader = 0, tee = 0, snp = 0, microcode = 0;
  friend bool operator==(const SnpTcb&, const SnpTcb&) = default;
};
[[nodiscard]] SnpTcb decode_snp_tcb(const SnpTcbBytes& raw, SnpProduct product) noexcept;
// true when every component of `tcb` is at least that of `minimum` (an FMC the report lacks counts 0).
[[nodiscard]] bool snp_tcb_at_least(const SnpTcb& tcb, const SnpTcb& minimum) noexcept;
// The policy's integer form (little-endian load of the 8 bytes) and back.
[[nodiscard]] std::uint64_t snp_tcb_to_uint(const SnpTcbBytes& raw) noexcept;
[[nodiscard]] SnpTcbBytes snp_tcb_from_uint(std::uint64_t value) noexcept;
// "0300000000000873" (16 hex digits, the bytes in report order) → the integer form; nullopt otherwise.
[[nodiscard]] std::optional<std::uint64_t> snp_tcb_from_hex(std::string_view hex) noexcept;

struct SnpReport {
  std::uint32_t version = 0;
  std::uint32_t guest_svn = 0;
  std::uint64_t policy = 0;
  std::array<std::uint8_t, 16> family_id{}, image_id{};
  std::uint32_t vmpl = 0;
  std::uint32_t signature_algo = 0;
  SnpTcbBytes current_tcb{};
  std::uint64_t platform_info = 0;
  bool author_key_en = false;
  bool mask_chip_key = false;  // the report is not signed
  std::uint32_t signing_key_raw = 0;  // 0 VCEK, 1 VLEK, 7 none
  std::array<std::uint8_t, 64> report_data{};
  std::array<std::uint8_t, 48> measurement{};
  std::array<std::uint8_t, 32> host_data{};
  std::array<std::uint8_t, 48> id_key_digest{}, author_key_digest{};
  std::array<std::uint8_t, 32> report_id{}, report_id_ma{};
  SnpTcbBytes reported_tcb{};
  // CPUID_FAM_ID / CPUID_MOD_ID / CPUID_STEP: version 3 and later (nullopt in version 2).
  std::optional<std::uint8_t> cpuid_family, cpuid_model, cpuid_stepping;
  std::array<std::uint8_t, 64> chip_id{};
  SnpTcbBytes committed_tcb{}, launch_tcb{};
  std::array<std::uint8_t, kSnpSignatureScalarBytes> signature_r{}, signature_s{};  // little-endian

  [[nodiscard]] std::optional<SnpSigningKey> signing_key() const noexcept;
  // The product named by CPUID family/model (version 3+); nullopt in version 2 or when unknown.
  [[nodiscard]] std::optional<SnpProduct> cpuid_product() const noexcept;
};

// Exactly kSnpReportBytes of version 2, 3 or 5; malformed otherwise (the signature is not checked).
[[nodiscard]] Outcome<SnpReport> parse_snp_report(std::span<const std::uint8_t> bytes);

}  // namespace rvenc::attestation
