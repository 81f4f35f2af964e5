// Offline verification of hardware attestation evidence (Intel TDX quotes, AMD SEV-SNP
// reports): the types every verifier shares — the named checks, the collateral files, the trust
// anchors, the measurement policy and what a successful verification tells.
//
// Design: each verifier is one pure function of (evidence, collateral, trust anchors, policy,
// verification time) → Verified or Failure; nothing reads a clock, a network or a global store,
// so the same call gives the same answer in the SDK, the proxy, `rvenc attest verify` and the
// tests. A Failure names the first check that failed (`Check`), and its message starts with that
// name. Vendor roots are pinned in the library (`pinned_roots`); a caller passes other anchors
// only on purpose (tests, `--trust-root`), never silently. X.509, CRL and ECDSA work is done by
// OpenSSL 3 inside src/attestation/ only: this header has no OpenSSL type, and rvenc_core stays
// without OpenSSL.
#pragma once

#include <array>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rvenc::attestation {

using Bytes = std::vector<std::uint8_t>;

// The checks of issue 21, in the words a failure message starts with.
enum class Check {
  signature,    // a signature over the evidence, a QE report, TCB Info or QE Identity
  cert_chain,   // a certificate does not chain to the trust anchor (or is not what it must be)
  crl,          // a certificate is revoked, or a CRL does not verify
  expired,      // a certificate, CRL or collateral document is not valid at the verification time
  tcb_status,   // the platform's TCB level is unknown or below the policy's minimum
  qe_identity,  // the TDX quoting enclave is not Intel's (MRSIGNER, ISVPRODID, attributes, ISVSVN)
  debug,        // the TEE runs in debug mode and the policy does not allow it
  measurement,  // a measured value matches none of the policy's accepted values
  report_data,  // REPORT_DATA is not the binding the caller expects
  malformed,    // evidence or collateral that cannot be parsed, or collateral that is missing
};
[[nodiscard]] std::string_view check_name(Check check) noexcept;

struct Failure {
  Check check = Check::malformed;
  std::string message;  // "<check name>: what failed", never secret
};
template <class T>
using Outcome = std::expected<T, Failure>;
// A failure whose message is "<check name>: <detail>".
[[nodiscard]] std::unexpected<Failure> fail(Check check, std::string_view detail);

enum class Provider { tdx, sev_snp };
[[nodiscard]] std::string_view provider_name(Provider provider) noexcept;  // "tdx" / "sev-snp"
[[nodiscard]] std::optional<Provider> provider_from_name(std::string_view name) noexcept;

// Collateral files by their names in the layout of shared/attestation/README.md ("quote.dat",
// "tcbinfo.json", "pckcrl.der", "vcek.der", "ask_ark.pem", ...). Bounded: at most kMaxCollateralFiles
// files of at most kMaxCollateralFileBytes each.
inline constexpr std::size_t kMaxCollateralFiles = 32;
inline constexpr std::size_t kMaxCollateralFileBytes = 1 << 20;
struct Collateral {
  std::map<std::string, Bytes, std::less<>> files;

  // nullptr when absent.
  [[nodiscard]] const Bytes* find(std::string_view name) const;
  // Every regular file of `dir` (not recursive); malformed when the directory cannot be read or a
  // file is over the bounds.
  [[nodiscard]] static Outcome<Collateral> load_dir(const std::filesystem::path& dir);
};

// Trust anchors as PEM certificates. The defaults are the vendors' roots pinned in the library:
// Intel SGX Root CA for TDX; AMD's ARKs (Milan, Genoa, Turin) for SEV-SNP.
struct TrustAnchors {
  std::vector<std::string> pem_roots;
};
[[nodiscard]] TrustAnchors pinned_roots(Provider provider);

// One evidence or collateral file of at most kMaxCollateralFileBytes (malformed naming the file).
[[nodiscard]] Outcome<Bytes> load_file(const std::filesystem::path& file);
// Other trust anchors, given on purpose (tests, `--trust-root PEM`, the SDK's trust_anchors): the
// PEM certificates of a text / file, at most kMaxTrustRoots; malformed when there is none.
inline constexpr std::size_t kMaxTrustRoots = 16;
[[nodiscard]] Outcome<TrustAnchors> parse_trust_anchors(std::string_view pem);
[[nodiscard]] Outcome<TrustAnchors> load_trust_anchors(const std::filesystem::path& file);
// One DER certificate as a PEM block (parsed and re-encoded by OpenSSL); malformed when it does not
// parse as exactly one certificate.
[[nodiscard]] Outcome<std::string> certificate_pem(std::span<const std::uint8_t> der);

// The measurement policy of `--attestation-policy FILE` (docs/attestation.md). An empty list
// accepts any value; a non-empty list must contain the measured value (else Check::measurement).
struct Policy {
  std::vector<std::string> providers = {"tdx", "sev-snp"};
  bool allow_debug = false;
  struct Tdx {
    std::vector<Bytes> mrtd, rtmr0, rtmr1, rtmr2, rtmr3, mrseam, xfam;
    // "UpToDate" (default) | "SWHardeningNeeded" | "ConfigurationNeeded" |
    // "ConfigurationAndSWHardeningNeeded" | "OutOfDate" | ...: the lowest TCB status accepted.
    std::string min_tcb_status = "UpToDate";
  } tdx;
  struct SevSnp {
    std::vector<Bytes> measurement, host_data, id_key_digest, author_key_digest;
    std::optional<std::uint64_t> min_tcb;  // the 8-byte reported TCB, compared per component
    bool allow_smt = true;
    bool allow_migration_agent = false;
  } sev_snp;
};

// The policy file (docs/attestation.md): {"providers", "allowDebug", "tdx": {"mrtd", "rtmr0".."rtmr3",
// "mrseam", "xfam", "minTcbStatus"}, "sevSnp": {"measurement", "hostData", "idKeyDigest",
// "authorKeyDigest", "minTcb", "allowSmt", "allowMigrationAgent"}}, every key optional. Unknown keys,
// values of the wrong length and duplicate keys are malformed, the message naming the key (a typo
// must not silently accept everything). "minTcb" is 16 hex digits, the reported TCB's bytes in
// report order (min_tcb holds them as the little-endian integer the report stores).
inline constexpr std::size_t kMaxPolicyBytes = 64 * 1024;
inline constexpr std::size_t kMaxPolicyValues = 64;  // values of one list
[[nodiscard]] Outcome<Policy> parse_policy(std::string_view json);
// parse_policy of a file (malformed naming the file when it cannot be read).
[[nodiscard]] Outcome<Policy> load_policy(const std::filesystem::path& file);
// Canonical JSON of a policy (every key, fixed order): parse_policy(serialize_policy(p)) == p.
[[nodiscard]] std::string serialize_policy(const Policy& policy);

// What a successful verification tells (printed by `rvenc attest verify`, kept by the clients).
struct Verified {
  Provider provider = Provider::tdx;
  Bytes measurement;          // TDX: MRTD (48); SEV-SNP: MEASUREMENT (48)
  std::string tcb_status;     // TDX: TCB Info's status of the matched level; SEV-SNP: "UpToDate"
                              // when the reported TCB equals the VCEK's TCB
  bool debug = false;
  std::array<std::uint8_t, 64> report_data{};
  // The earliest end of validity of what was verified (certificates, CRLs, collateral):
  // a client may cache the result until min(this, the key's notAfter).
  std::int64_t valid_until = 0;
  // Other measured fields by name ("rtmr0", "mrseam", "xfam", "host_data", "chip_id", "fmspc",
  // "reported_tcb", ...) as lowercase hex, for printing and pinning.
  std::map<std::string, std::string, std::less<>> fields;
};

struct VerifyInput {
  std::span<const std::uint8_t> evidence;  // quote.dat / report.bin
  const Collateral& collateral;
  const TrustAnchors& anchors;
  const Policy& policy;
  std::int64_t at = 0;  // verification time, Unix seconds
  // When set, REPORT_DATA must equal it (Check::report_data).
  std::optional<std::array<std::uint8_t, 64>> expected_report_data;
};

// The verifiers (src/attestation/tdx.cpp, sev_snp.cpp) and the dispatcher over them (verify.cpp).
// Collateral file names: shared/attestation/README.md. Checks run in a fixed order (parse,
// signatures and chains, validity, revocation, TCB, identity, debug, measurements, report data);
// the first failure is returned.
[[nodiscard]] Outcome<Verified> verify_tdx(const VerifyInput& input);
[[nodiscard]] Outcome<Verified> verify_sev_snp(const VerifyInput& input);
[[nodiscard]] Outcome<Verified> verify(Provider provider, const VerifyInput& input);

}  // namespace rvenc::attestation
