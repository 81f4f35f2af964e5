// Test-only AMD SEV-SNP signer: a synthetic ARK → ASK (ASVK) → VCEK (VLEK) chain made with
// OpenSSL under a test root, and attestation reports signed by that VCEK, so tests (and the
// end-to-end runs on a fake configfs-tsm) can exercise verify_sev_snp with any REPORT_DATA,
// measurement, guest policy or TCB.
//
// Design: the certificates mimic AMD's (RSA-PSS SHA-384 ARK/ASK, P-384 VCEK with AMD's TCB,
// productName and hwID extensions; the same CNs "ARK-Milan", "SEV-Milan", "SEV-VCEK") but the keys
// are fresh, so they verify only under `anchors()`, never under the pinned AMD roots: a test can
// prove the verifier refuses them by default. RSA keys are 2048-bit for speed. Failures of
// OpenSSL throw std::runtime_error (test code only; never linked into a production target).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>

#include "rvenc/attestation/sev_snp.hpp"
#include "rvenc/attestation/verifier.hpp"

namespace rvenc::test {

struct SnpSignerOptions {
  attestation::SnpProduct product = attestation::SnpProduct::milan;
  attestation::SnpSigningKey signing_key = attestation::SnpSigningKey::vcek;
  // The VCEK's TCB in report byte order (Milan/Genoa: bl, tee, 0, 0, 0, 0, snp, ucode).
  attestation::SnpTcbBytes tcb = {3, 0, 0, 0, 0, 0, 8, 0x73};
  std::array<std::uint8_t, 64> chip_id = {0xc1, 0x71, 0xd0, 0x01};  // hwID (Turin: the first 8 bytes)
  std::int64_t not_before = 0;  // Unix seconds; 0: now - 1 day
  std::int64_t not_after = 0;   // 0: not_before + 2 years
};

struct SnpReportOptions {
  std::uint32_t version = 3;
  std::uint64_t policy = 0x30000;  // SMT allowed, bit 17 (reserved, must be 1); debug off
  std::array<std::uint8_t, 48> measurement = {0x5e, 0x5e};
  std::array<std::uint8_t, 32> host_data{};
  std::array<std::uint8_t, 48> id_key_digest{}, author_key_digest{};
  std::optional<attestation::SnpTcbBytes> reported_tcb;     // default: the certificate's TCB
  std::optional<std::array<std::uint8_t, 64>> chip_id;      // default: the certificate's hwID
};

class SnpTestSigner {
 public:
  [[nodiscard]] static SnpTestSigner create(const SnpSignerOptions& options = {});
  SnpTestSigner(SnpTestSigner&&) noexcept;
  SnpTestSigner& operator=(SnpTestSigner&&) noexcept;
  ~SnpTestSigner();

  // A 1184-byte report carrying `report_data`, signed by the VCEK (VLEK).
  [[nodiscard]] attestation::Bytes report(const std::array<std::uint8_t, 64>& report_data,
                                          const SnpReportOptions& options = {}) const;
  // "vcek.der" (or "vlek.der") and "ask_ark.pem" (ASK or ASVK, then ARK).
  [[nodiscard]] attestation::Collateral collateral() const;
  // The test ARK, the only anchor these chains verify under.
  [[nodiscard]] attestation::TrustAnchors anchors() const;
  // A CRL of the ARK valid around not_before, revoking the ASK when `revoke_ask` ("crl.der").
  [[nodiscard]] attestation::Bytes crl(bool revoke_ask) const;
  // A time inside every certificate's validity.
  [[nodiscard]] std::int64_t valid_at() const;
  [[nodiscard]] std::int64_t not_after() const;

 private:
  struct Impl;
  explicit SnpTestSigner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rvenc::test
