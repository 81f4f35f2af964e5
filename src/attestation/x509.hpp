// The module's OpenSSL 3 helpers (private to src/attestation/, never installed): owning
// handles for X509 / X509_CRL / EVP_PKEY, certificate and CRL parsing, chain verification at a
// given time against the given anchors only, raw ECDSA (r, s) verification, EC public keys from
// raw coordinates, certificate extensions by OID, SHA-384, and small DER decoders for extension
// values. Shared by the SEV-SNP and TDX verifiers.
//
// Design: every function is pure (no clock, no global store, no network) and returns
// `Outcome<T>`; a failure names its check (verifier.hpp) and the certificate it concerns
// (subject CN, or `what` given by the caller), and OpenSSL's error queue is cleared before
// returning so one failure never leaks into the next call. Decisions on the chain:
//  - Only the anchors are trusted: intermediates are untrusted input, and a root carried in the
//    collateral (ask_ark.pem's ARK) is just another untrusted certificate: the chain must end at a
//    certificate equal to an anchor (X509_V_FLAG_PARTIAL_CHAIN is never set).
//  - An anchor must be a self-issued root (subject = issuer, key identifiers agreeing when
//    present): pinning an intermediate would silently widen what is trusted, so parse_anchors
//    refuses it (malformed). The root's self-signature is not re-verified on every call (a root is
//    trusted because it is pinned, not because it signed itself; OpenSSL skips it too), which
//    saves three RSA-4096 verifications per SEV-SNP report.
//  - The leaf must be an end-entity certificate: a CA certificate (basicConstraints CA:TRUE) as a
//    leaf fails at cert_chain, so an ASK cannot stand in for a VCEK.
//  - The verification time is the caller's (X509_VERIFY_PARAM_set_time), never the system clock;
//    not-yet-valid and expired certificates or CRLs fail at `expired` (OpenSSL's rule: valid from
//    notBefore inclusive until notAfter exclusive).
//  - With CRLs, every certificate below the anchor is checked against its issuer's CRL
//    (X509_V_FLAG_CRL_CHECK_ALL); CrlPolicy::where_issued accepts a certificate whose issuer
//    publishes no CRL (AMD's ARK publishes one for the ASKs, the ASK none for the VCEKs).
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rvenc/attestation/verifier.hpp"

namespace rvenc::attestation::x509 {

struct X509Free {
  void operator()(X509* cert) const noexcept { X509_free(cert); }
};
struct CrlFree {
  void operator()(X509_CRL* crl) const noexcept { X509_CRL_free(crl); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* key) const noexcept { EVP_PKEY_free(key); }
};
using CertPtr = std::unique_ptr<X509, X509Free>;
using CrlPtr = std::unique_ptr<X509_CRL, CrlFree>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using Certs = std::vector<CertPtr>;
using Crls = std::vector<CrlPtr>;

using Sha384Digest = std::array<std::uint8_t, 48>;

// Every certificate of a PEM bundle, in order. Malformed when a block does not parse or there is
// none; text outside the blocks is ignored (as PEM allows).
[[nodiscard]] Outcome<Certs> parse_pem_certs(std::span<const std::uint8_t> pem, std::string_view what);
// One DER certificate, with no trailing bytes.
[[nodiscard]] Outcome<CertPtr> parse_der_cert(std::span<const std::uint8_t> der, std::string_view what);
// One CRL, DER or PEM (by its first bytes).
[[nodiscard]] Outcome<CrlPtr> parse_crl(std::span<const std::uint8_t> bytes, std::string_view what);
// The anchors' certificates; malformed when one does not parse or is not a self-issued root.
[[nodiscard]] Outcome<Certs> parse_anchors(const TrustAnchors& anchors);

enum class CrlPolicy {
  every_issuer,   // each certificate below the anchor needs its issuer's CRL (TDX: PCK CA, root)
  where_issued,   // a certificate whose issuer has no CRL among `crls` is accepted (AMD)
};
struct ChainInput {
  X509* leaf = nullptr;
  std::span<const CertPtr> intermediates;  // untrusted, any order
  std::span<const CertPtr> anchors;        // from parse_anchors
  std::span<const CrlPtr> crls;            // empty: no revocation check
  CrlPolicy crl_policy = CrlPolicy::every_issuer;
  std::int64_t at = 0;                     // Unix seconds
  std::string_view what;                   // names the chain in messages ("VCEK chain")
};
// The verified chain, leaf first, anchor last. Fails at cert_chain (no path to an anchor, a bad
// signature, a CA as leaf, ...), expired (a certificate or CRL not valid at `at`) or crl (revoked,
// CRL missing where required, CRL signature or issuer wrong); the message names the certificate's
// subject CN and OpenSSL's reason.
[[nodiscard]] Outcome<Certs> verify_chain(const ChainInput& input);

// ECDSA over `message` with digest `md` (EVP_sha256(), EVP_sha384()) from big-endian r and s
// (leading zero bytes ignored, then at most 66 bytes each; zero is refused). Fails at signature.
[[nodiscard]] Outcome<void> verify_ecdsa_raw(EVP_PKEY* key, const EVP_MD* md, std::span<const std::uint8_t> message,
                                             std::span<const std::uint8_t> r_be, std::span<const std::uint8_t> s_be,
                                             std::string_view what);
// The EC public key on `curve_nid` (NID_X9_62_prime256v1, NID_secp384r1) of raw x ‖ y (each the
// curve's field size, big-endian). Malformed when the size is wrong or the point is not on the curve.
[[nodiscard]] Outcome<PkeyPtr> ec_public_key_from_xy(int curve_nid, std::span<const std::uint8_t> xy,
                                                     std::string_view what);

[[nodiscard]] Sha384Digest sha384(std::span<const std::uint8_t> data);

// Subject CN ("?" when none), for messages.
[[nodiscard]] std::string subject_cn(const X509* cert);
// notAfter / notBefore / CRL nextUpdate as Unix seconds; nullopt when absent or unreadable.
[[nodiscard]] std::optional<std::int64_t> cert_not_after(const X509* cert);
[[nodiscard]] std::optional<std::int64_t> cert_not_before(const X509* cert);
[[nodiscard]] std::optional<std::int64_t> crl_next_update(const X509_CRL* crl);
// The contents of the extnValue OCTET STRING of the extension `oid` (dotted), nullopt when the
// certificate has none (or more than one).
[[nodiscard]] std::optional<std::vector<std::uint8_t>> extension_by_oid(const X509* cert, std::string_view oid);

// DER decoders for extension values: a non-negative INTEGER that fits 64 bits, an IA5String;
// nullopt on anything else (wrong tag, trailing bytes, negative, too large).
[[nodiscard]] std::optional<std::uint64_t> der_uint(std::span<const std::uint8_t> der);
[[nodiscard]] std::optional<std::string> der_ia5_string(std::span<const std::uint8_t> der);

}  // namespace rvenc::attestation::x509
