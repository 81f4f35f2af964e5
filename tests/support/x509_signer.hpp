// Test-only X.509 building blocks shared by the attestation test signers (tdx_signer, snp_signer):
// extensions from OpenSSL's config syntax or as raw extnValue bytes, PEM/DER encoding of a
// certificate, and the error check they all use.
//
// Design: thin wrappers over OpenSSL 3 that throw std::runtime_error naming the step (test code
// only; never linked into a production target), so a signer reads as the list of what it makes.
#pragma once

#include <openssl/x509.h>

#include <string>
#include <string_view>

#include "rvenc/attestation/verifier.hpp"

namespace rvenc::test::x509_signer {

// Throws std::runtime_error("<who>: <what> failed") (and clears OpenSSL's error queue) unless ok.
void check(bool ok, std::string_view who, std::string_view what);
// A standard extension (NID_basic_constraints, "critical,CA:TRUE", ...) on `cert`, issued by `issuer`.
void add_extension(X509* cert, X509* issuer, int nid, const char* value);
// An extension `oid` (dotted) whose extnValue holds `value` as is (DER or raw bytes).
void add_raw_extension(X509* cert, const char* oid, const attestation::Bytes& value);
[[nodiscard]] attestation::Bytes to_der(X509* cert);
[[nodiscard]] std::string to_pem(X509* cert);

}  // namespace rvenc::test::x509_signer
