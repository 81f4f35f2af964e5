// The attestation document of GET /rvenc/attestation (PROTOCOL.md section 1) and its binding.
//
// Design: the binding (reportData, what hardware puts in REPORT_DATA and the simulated provider
// signs) is versioned. Binding 1 = SHA-512("rvenc-attest-v1" ‖ publicKey ‖ challenge) leaves
// notAfter outside, so whoever relays a document can change it. Binding 2 (the document member
// "binding": 2; absent means 1) = SHA-512("rvenc-attest-v2" ‖ keyId ‖ publicKey ‖ u64be(notAfter)
// ‖ challenge) covers the key's whole identity and its end of life. The version is inside the
// hashed label, so a binding-2 reportData never verifies as binding 1: stripping the member makes
// the check fail, and a client requires binding 2 unless told to accept older enclaves
// (AttestationPolicy::min_binding). expected_report_data is the one place the binding is computed:
// the enclave, the clients, the gateway and the hardware verifiers all call it
// (docs/key-rotation.md).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rvenc/common/error.hpp"
#include "rvenc/crypto/crypto.hpp"

namespace rvenc::protocol {

inline constexpr std::size_t kChallengeBytes = 32;
inline constexpr std::size_t kReportDataBytes = 64;
using Challenge = std::array<std::uint8_t, kChallengeBytes>;
using ReportData = crypto::Sha512Digest;

// The challenge of "GET /rvenc/attestation?challenge=<hex>" from the query string (without '?'):
// invalid_request when it is missing or not 64 hex digits.
[[nodiscard]] Result<Challenge> challenge_from_query(std::string_view query);

// Versions of the attested binding (see the top of this file).
enum class Binding : std::uint8_t { v1 = 1, v2 = 2 };
// What an enclave of this release emits.
inline constexpr Binding kCurrentBinding = Binding::v2;

// Binding 1: SHA-512("rvenc-attest-v1" ‖ publicKey ‖ challenge) (enclaves of older releases).
[[nodiscard]] ReportData report_data(const crypto::XWingPublicKey& public_key, const Challenge& challenge);
// Binding 2: SHA-512("rvenc-attest-v2" ‖ keyId ‖ publicKey ‖ u64be(notAfter) ‖ challenge), keyId
// = crypto::key_id(publicKey). notAfter must be non-negative (documents never carry another).
[[nodiscard]] ReportData report_data_v2(const crypto::XWingPublicKey& public_key, std::int64_t not_after,
                                        const Challenge& challenge);
// The binding of `version` for this key, notAfter and challenge.
[[nodiscard]] ReportData report_data(Binding version, const crypto::XWingPublicKey& public_key,
                                     std::int64_t not_after, const Challenge& challenge);

// A key the enclave rotated away from but still decrypts (PROTOCOL.md section 7).
struct PreviousKey {
  crypto::KeyId key_id{};
  std::int64_t not_after = 0;
};

// Longest model name and most models / previous keys a document may list (parse_attestation).
inline constexpr std::size_t kMaxModelNameBytes = 256;
inline constexpr std::size_t kMaxListedModels = 1024;
inline constexpr std::size_t kMaxPreviousKeys = 64;
// Collateral carried with hardware evidence ("collateral", docs/attestation.md): at most this many
// files, of these names (1-64 of [A-Za-z0-9._-], not starting with '.'), this many bytes in all
// (decoded). Enclaves refuse a --collateral directory beyond it; clients refuse such documents.
inline constexpr std::size_t kMaxCollateralFiles = 32;
inline constexpr std::size_t kMaxCollateralNameBytes = 64;
inline constexpr std::size_t kMaxCollateralBytes = 256 * 1024;
using CollateralFiles = std::map<std::string, std::vector<std::uint8_t>, std::less<>>;
// invalid_request naming the rule `files` breaks (a name, the count, the total size).
[[nodiscard]] Status check_collateral(const CollateralFiles& files);

struct AttestationDocument {
  crypto::KeyId key_id{};
  std::string kem = "X-Wing";
  crypto::XWingPublicKey public_key{};
  std::int64_t not_after = 0;
  std::string provider;  // "simulated" | "sev-snp" | "tdx"
  // The binding reportData was made with: "binding" in JSON, absent (older enclaves) = v1.
  Binding binding = Binding::v1;
  ReportData report_data{};
  std::vector<std::uint8_t> evidence;     // decoded from base64
  std::vector<std::uint8_t> measurement;  // decoded from hex
  // Informational, outside reportData (PROTOCOL.md section 7); absent in older documents.
  std::vector<std::string> models;             // the models this enclave serves
  std::optional<std::int64_t> capacity;        // its --max-streams; nullopt: unlimited (null)
  std::vector<PreviousKey> previous_keys;      // keys it still decrypts after a rotation
  // What a client needs to verify hardware evidence offline, by the file names of
  // shared/attestation/README.md ("vcek.der", "ask_ark.pem", "tcbinfo.json", "pckcrl.der", ...):
  // {"collateral": {"name": "<base64>", ...}}, outside reportData (collateral is authenticated by
  // its own signatures up to the vendor's root). Optional (absent: none), bounded (check_collateral).
  CollateralFiles collateral;
};

// The reportData `doc` must carry for `challenge` under its own binding version (doc.binding,
// doc.public_key, doc.not_after): what a client, the gateway and a hardware verifier's
// REPORT_DATA check compare with.
[[nodiscard]] ReportData expected_report_data(const AttestationDocument& doc, const Challenge& challenge);

// "binding" is written only for binding 2 and later (a binding-1 document keeps its old shape).
[[nodiscard]] std::string serialize_attestation(const AttestationDocument& doc);
// invalid_request on malformed JSON, missing fields, bad hex/base64, wrong lengths. "models",
// "capacity" and "previousKeys" are optional (older enclaves send none) but checked when present;
// "binding" is optional (absent: 1) and must be 1 or 2 when present.
[[nodiscard]] Result<AttestationDocument> parse_attestation(std::string_view json);

// The message the simulated provider signs: reportData ‖ measurement.
[[nodiscard]] std::vector<std::uint8_t> simulated_signed_message(const AttestationDocument& doc);

// Verifies the hardware evidence (sev-snp, tdx) of a document whose other checks passed, against
// the vendor's roots and a measurement policy; returns until when that verification holds (Unix
// seconds: the earliest end of validity of the certificates and collateral). rvenc_core has no
// verifier (no X.509 in it): the client library installs one (rvenc_attestation's).
using HardwareVerifier = std::function<Result<std::int64_t>(const AttestationDocument&)>;

struct AttestationPolicy {
  std::vector<std::string> allowed_providers = {"sev-snp", "tdx"};
  std::optional<std::vector<std::uint8_t>> expected_measurement;
  // Trust "simulated" documents signed by this platform key (never by default).
  std::optional<crypto::Ed25519PublicKey> simulated_platform_key;
  // Without it hardware documents fail (attestation_failed: no verifier).
  HardwareVerifier hardware_verifier;
  // What decides the hardware verifier's answers (its policy and trust anchors, canonical text):
  // part of what keys are trusted under (proxy::trust_digest). Empty without a verifier.
  std::string hardware_trust;
  // The oldest binding accepted. Binding 1 does not cover notAfter (a relaying host can extend a
  // key's life), so only binding 2 by default; v1 only for enclaves of older releases, on purpose.
  Binding min_binding = Binding::v2;
};

// Checks the document against the policy and our fresh challenge: keyId matches the public
// key, its binding version is at least policy.min_binding, reportData is expected_report_data
// (key, notAfter from binding 2 on, challenge), notAfter is still in the future (system clock),
// measurement as required, and for "simulated" (accepted only when simulated_platform_key is
// set, listed in allowed_providers or not) the Ed25519 signature. Other providers must be in
// allowed_providers and verified by policy.hardware_verifier (attestation_failed without one).
// All failures: attestation_failed.
[[nodiscard]] Status verify_attestation(const AttestationDocument& doc, const Challenge& challenge,
                                        const AttestationPolicy& policy);
// The same, returning until when the trust holds: min(notAfter, the hardware verifier's answer).
[[nodiscard]] Result<std::int64_t> verify_attestation_until(const AttestationDocument& doc, const Challenge& challenge,
                                                            const AttestationPolicy& policy);

[[nodiscard]] std::string base64_encode(std::span<const std::uint8_t> bytes);
[[nodiscard]] Result<std::vector<std::uint8_t>> base64_decode(std::string_view text, std::string_view field);

}  // namespace rvenc::protocol
