// Test-only Intel TDX signer: a test root → PCK CA → PCK certificate (with Intel's SGX extensions:
// FMSPC, PCE-ID, TCB components, PCESVN, CPUSVN) and a TCB signing certificate, made with OpenSSL;
// it signs TCB Info, QE Identity, both CRLs, a QE report and v4 quotes with any REPORTDATA, MRTD,
// RTMRs, TD attributes or TEE TCB SVN, so tests (and end-to-end runs on a fake configfs-tsm) can
// exercise every check of verify_tdx.
//
// Design: the certificates carry test names ("rvenc test SGX Root CA", ...) and fresh P-256 keys,
// so they verify only under `anchors()`, never under the pinned Intel root: a test proves the
// verifier refuses them by default. The collateral JSON is written as Intel's PCS writes it (one
// TCB level equal to the platform, one QE level) and signed over the exact bytes of its value.
// Failures of OpenSSL throw std::runtime_error (test code only; never in a production target).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "rvenc/attestation/tdx.hpp"
#include "rvenc/attestation/verifier.hpp"

namespace rvenc::test {

struct TdxSignerOptions {
  attestation::tdx::Svn16 cpu_svn_components = {4, 4, 2, 2, 3, 1, 0, 5};  // PCK TCB components
  std::uint16_t pce_svn = 13;
  std::array<std::uint8_t, 6> fmspc = {0x90, 0xc0, 0x6f, 0, 0, 0};
  attestation::tdx::Svn16 min_tee_tcb_svn = {5, 0, 3};  // the TCB level's tdxtcbcomponents
  std::string tcb_status = "UpToDate";                  // of that TCB level
  std::string qe_status = "UpToDate";                   // of the QE Identity's level
  std::int64_t not_before = 0;                          // Unix seconds; 0: now - 1 day
  std::int64_t not_after = 0;                           // certificates; 0: not_before + 2 years
};

struct TdxQuoteOptions {
  std::uint16_t version = 4;  // 5: a v5 quote with a TD report 1.5 body (type 3)
  attestation::tdx::Hash48 mrtd = {0x7d, 0x7d};
  std::array<attestation::tdx::Hash48, 4> rtmr{};
  attestation::tdx::Hash48 mrseam = {0x5e};
  std::array<std::uint8_t, 8> td_attributes{};  // bit 0 of byte 0: TUD.DEBUG
  std::array<std::uint8_t, 8> xfam = {0xe7, 0x02, 0x06};
  attestation::tdx::Svn16 tee_tcb_svn = {5, 0, 3};
};

class TdxTestSigner {
 public:
  [[nodiscard]] static TdxTestSigner create(const TdxSignerOptions& options = {});
  TdxTestSigner(TdxTestSigner&&) noexcept;
  TdxTestSigner& operator=(TdxTestSigner&&) noexcept;
  ~TdxTestSigner();

  // A quote (v4, or v5 per options) carrying `report_data`, its PCK chain (PEM) in certification
  // data type 6 → 5.
  [[nodiscard]] attestation::Bytes quote(const std::array<std::uint8_t, 64>& report_data,
                                         const TdxQuoteOptions& options = {}) const;
  // tcbinfo.json, qeidentity.json, their issuer chains, pckcrl.der (+ issuer chain), rootcrl.der,
  // pck_chain.pem and trust_root.pem: the layout of shared/attestation/README.md, no quote.dat.
  [[nodiscard]] attestation::Collateral collateral() const;
  // The test root, the only anchor these chains verify under.
  [[nodiscard]] attestation::TrustAnchors anchors() const;
  // The PCK CA's CRL (pckcrl.der), revoking the PCK certificate when `revoke_pck`.
  [[nodiscard]] attestation::Bytes pck_crl(bool revoke_pck) const;
  // A time inside every certificate's and document's validity; the end of the collateral's.
  [[nodiscard]] std::int64_t valid_at() const;
  [[nodiscard]] std::int64_t not_after() const;

 private:
  struct Impl;
  explicit TdxTestSigner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rvenc::test
