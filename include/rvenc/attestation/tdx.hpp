// Intel TDX: the parsed ECDSA quote (v4 and v5, TD report 1.0 / 1.5), Intel's TCB Info and QE
// Identity collateral, and the partial check of a quote without collateral. verify_tdx
// (verifier.hpp) is built from these; the enclave, the CLI and the fuzz targets use the parsers.
//
// Design: the parsers are bounds-checked readers of untrusted bytes (Intel TDX DCAP Quoting Library
// API, "Quote Format"); they never allocate more than the input asks within fixed bounds and
// return malformed naming the field on anything out of place. A parsed Quote holds spans into the
// caller's buffer (keep it alive). The collateral parsers keep the byte range of the signed JSON
// value exactly as it stands in the file (Intel signs those bytes; nothing is re-serialised).
// TCB Info SVNs are bytes: like Intel's QVL, a JSON value over 255 keeps its low 8 bits. TCB
// statuses are ordered UpToDate > SWHardeningNeeded > ConfigurationNeeded >
// ConfigurationAndSWHardeningNeeded > OutOfDate > OutOfDateConfigurationNeeded > Revoked;
// Revoked never passes.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rvenc/attestation/verifier.hpp"

namespace rvenc::attestation::tdx {

inline constexpr std::uint16_t kAttestationKeyEcdsaP256 = 2;
inline constexpr std::uint32_t kTeeTypeTdx = 0x81;
inline constexpr std::size_t kHeaderSize = 48;
inline constexpr std::size_t kTdReport10Size = 584;  // v4 body; v5 body type 2
inline constexpr std::size_t kTdReport15Size = 648;  // v5 body type 3
inline constexpr std::size_t kQeReportSize = 384;    // SGX report body
inline constexpr std::uint16_t kCertDataQeReport = 6;
inline constexpr std::uint16_t kCertDataPckChain = 5;
// Offsets in the TD report body (the quote at kHeaderSize for v4, kHeaderSize + 6 for v5).
inline constexpr std::size_t kBodyMrtdOffset = 136;
inline constexpr std::size_t kBodyReportDataOffset = 520;

using Hash48 = std::array<std::uint8_t, 48>;
using Svn16 = std::array<std::uint8_t, 16>;

struct TdReport {
  Svn16 tee_tcb_svn{};
  Hash48 mrseam{}, mrsignerseam{};
  std::array<std::uint8_t, 8> seam_attributes{}, td_attributes{}, xfam{};
  Hash48 mrtd{}, mrconfigid{}, mrowner{}, mrownerconfig{};
  std::array<Hash48, 4> rtmr{};
  std::array<std::uint8_t, 64> report_data{};
  std::optional<Svn16> tee_tcb_svn2;  // TD report 1.5 only
  std::optional<Hash48> mrservicetd;  // TD report 1.5 only
  [[nodiscard]] bool debug() const noexcept { return (td_attributes[0] & 0x01U) != 0; }  // TUD.DEBUG
};

struct QeReport {  // the SGX report body of the quoting enclave
  Svn16 cpu_svn{};
  std::uint32_t miscselect = 0;
  std::array<std::uint8_t, 16> attributes{};
  std::array<std::uint8_t, 32> mrenclave{}, mrsigner{};
  std::uint16_t isv_prod_id = 0, isv_svn = 0;
  std::array<std::uint8_t, 64> report_data{};
};

struct Quote {
  std::uint16_t version = 0;    // 4 or 5
  std::uint16_t body_type = 2;  // 2: TD report 1.0, 3: TD report 1.5 (v4 is always 2)
  std::span<const std::uint8_t> signed_bytes;  // header ‖ (v5: type ‖ size ‖) body
  TdReport body;
  std::array<std::uint8_t, 64> signature{};        // r ‖ s, by the attestation key
  std::array<std::uint8_t, 64> attestation_key{};  // P-256 x ‖ y
  std::span<const std::uint8_t> qe_report_bytes;   // the 384 bytes the PCK signs
  QeReport qe_report;
  std::array<std::uint8_t, 64> qe_report_signature{};
  std::span<const std::uint8_t> qe_auth_data;
  std::span<const std::uint8_t> pck_chain;  // certification data type 5: PEM (or concatenated DER)
};
// Malformed (naming the field) on a wrong version, key type, TEE type, body type, size or
// certification data type. Bytes after the signature data are ignored (configfs pads outblob).
[[nodiscard]] Outcome<Quote> parse_quote(std::span<const std::uint8_t> bytes);

// The SGX extensions (OID 1.2.840.113741.1.13.1) of a PCK certificate.
struct PckExtensions {
  Svn16 cpu_svn_components{};  // TCB components 1..16
  std::uint16_t pce_svn = 0;
  std::array<std::uint8_t, 16> cpu_svn{};
  std::array<std::uint8_t, 2> pce_id{};
  std::array<std::uint8_t, 6> fmspc{};
};
// From the DER of the extension's value (x509 extension_by_oid); malformed when a field is absent.
[[nodiscard]] Outcome<PckExtensions> parse_pck_extensions(std::span<const std::uint8_t> der);

// ---- collateral ------------------------------------------------------------------------------

struct SignedJson {
  std::size_t body_offset = 0, body_size = 0;  // the signed value's bytes in the file
  std::array<std::uint8_t, 64> signature{};    // r ‖ s
  std::int64_t issue_date = 0, next_update = 0;
};

struct TcbLevel {
  Svn16 sgx_components{};
  std::uint16_t pce_svn = 0;
  Svn16 tdx_components{};
  std::string status;
};
struct IsvsvnLevel {
  std::uint16_t isvsvn = 0;
  std::string status;
};
struct TdxModuleIdentity {
  std::string id;  // "TDX_<hex of TEE_TCB_SVN[1]>"
  Hash48 mrsigner{};
  std::array<std::uint8_t, 8> attributes{}, attributes_mask{};  // compared byte-wise with SEAM_ATTRIBUTES
  std::vector<IsvsvnLevel> levels;
};
struct TcbInfo {
  SignedJson signed_json;
  std::array<std::uint8_t, 6> fmspc{};
  std::array<std::uint8_t, 2> pce_id{};
  Hash48 module_mrsigner{};  // "tdxModule"
  std::array<std::uint8_t, 8> module_attributes{}, module_attributes_mask{};
  std::vector<TcbLevel> levels;
  std::vector<TdxModuleIdentity> module_identities;
};
// `{"tcbInfo": {"id": "TDX", "version": 3, ...}, "signature": "hex"}`; at most 64 levels.
[[nodiscard]] Outcome<TcbInfo> parse_tcb_info(std::span<const std::uint8_t> json);

struct QeIdentity {
  SignedJson signed_json;
  std::uint32_t miscselect = 0, miscselect_mask = 0;
  std::array<std::uint8_t, 16> attributes{}, attributes_mask{};
  std::array<std::uint8_t, 32> mrsigner{};
  std::uint16_t isv_prod_id = 0;
  std::vector<IsvsvnLevel> levels;
};
// `{"enclaveIdentity": {"id": "TD_QE", "version": 2, ...}, "signature": "hex"}`.
[[nodiscard]] Outcome<QeIdentity> parse_qe_identity(std::span<const std::uint8_t> json);

// The rank of a TCB status (higher is better), nullopt for an unknown name.
[[nodiscard]] std::optional<int> tcb_status_rank(std::string_view status) noexcept;
// The status of the first TCB Info level the platform meets (PCK components and PCESVN, the
// quote's TEE_TCB_SVN; with TEE_TCB_SVN[1] > 0 the TDX module identity "TDX_xx" too, the worse
// of both statuses); tcb_status failure when none, or when the quote's TDX module (MRSIGNERSEAM,
// SEAM_ATTRIBUTES under the mask) is not the one of the TCB Info's tdxModule / that identity.
[[nodiscard]] Outcome<std::string> match_tcb_level(const TcbInfo& info, const PckExtensions& pck,
                                                   const TdReport& body);

// ---- partial check -----------------------------------------------------------------------------

struct QuoteCheck {
  Quote quote;
  PckExtensions pck;
  std::int64_t pck_chain_not_after = 0;  // the earliest notAfter of the PCK chain
};
// Everything that needs no collateral: parse, PCK chain (from the quote) to the anchors at
// `at` without CRLs, QE report signed by the PCK, QE report data = SHA-256(attestation key ‖ QE
// auth data) ‖ zeros, quote signature by the attestation key. verify_tdx does this, then the rest.
[[nodiscard]] Outcome<QuoteCheck> check_quote(std::span<const std::uint8_t> evidence, const TrustAnchors& anchors,
                                              std::int64_t at);

}  // namespace rvenc::attestation::tdx
