// NVIDIA Hopper (H100/H200) GPU evidence verified offline: the SPDM 1.1 GET_MEASUREMENTS request
// and response the GPU's driver returns (the "attestation report"), its certificate chain to the
// NVIDIA Device Identity CA, the nonce, and the comparison of its measurements with NVIDIA's
// reference integrity manifests (RIMs, SWID tags). docs/gpu-attestation.md says what each check
// protects against and what is left.
//
// Design: the same shape as verify_tdx / verify_sev_snp — one pure function of (evidence,
// certificate chain, trust anchors, expected nonce, verification time) → GpuVerified or a Failure
// naming the first failed Check (verifier.hpp). Parsing is a bounds-checked walk of the SPDM
// layout (DSP0274 1.1: request 37 bytes, response header, measurement blocks, responder nonce,
// opaque data, a 96-byte P-384 r ‖ s signature) that copies into plain values; anything that does
// not fit is `malformed`. The signature covers SHA-384 of request ‖ response-without-signature
// (as NVIDIA's local verifier does) and is checked with the chain's leaf after the chain itself
// verified to a pinned root at the caller's time (x509.hpp: only the anchors are trusted). A RIM is
// read with libxml2; verify_rim first checks its XMLDSig signature with libxmlsec1 (never a
// hand-written canonicalization) and its signer's chain to the pinned CoRIM root. Measurement
// indices are NVIDIA's, from 0: SPDM block index − 1, as the RIMs and nvtrust number them.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rvenc/attestation/verifier.hpp"

namespace rvenc::attestation {

inline constexpr std::size_t kSpdmRequestBytes = 37;  // version, code, param1, param2, nonce, slot
inline constexpr std::size_t kSpdmNonceBytes = 32;
inline constexpr std::size_t kSpdmSignatureBytes = 96;  // ECDSA P-384 r ‖ s, big-endian
inline constexpr std::size_t kMaxGpuEvidenceBytes = 1 << 16;
using SpdmNonce = std::array<std::uint8_t, kSpdmNonceBytes>;

// NVIDIA's opaque-data field types (little-endian u16 type, u16 size, value).
enum class NvOpaqueField : std::uint16_t {
  driver_version = 3,  // NUL-terminated ASCII ("550.90.07")
  vbios_version = 6,   // 8 bytes, printed "96.00.9F.00.01"
  chip_sku = 15,
  project = 17,
  project_sku = 18,
  fwid = 20,
};

struct SpdmMeasurementBlock {
  std::uint8_t value_type = 0;  // DMTF measurement value type
  Bytes value;
};

struct SpdmMeasurements {
  // GET_MEASUREMENTS request.
  std::uint8_t request_param1 = 0, request_param2 = 0, slot_id = 0;
  SpdmNonce request_nonce{};
  // MEASUREMENTS response.
  std::uint8_t spdm_version = 0;
  std::map<unsigned, SpdmMeasurementBlock> blocks;  // by NVIDIA index (SPDM block index − 1)
  SpdmNonce responder_nonce{};
  std::map<std::uint16_t, Bytes> opaque;  // by NvOpaqueField value
  std::array<std::uint8_t, kSpdmSignatureBytes> signature{};
  std::size_t signed_bytes = 0;  // request ‖ response up to the signature

  [[nodiscard]] std::string driver_version() const;  // "" when absent
  [[nodiscard]] std::string vbios_version() const;   // "" when absent or not 8 bytes
};

// request ‖ response as the driver returns them; malformed on any bound, count or code error.
[[nodiscard]] Outcome<SpdmMeasurements> parse_spdm_measurements(std::span<const std::uint8_t> evidence);

struct GpuVerified {
  std::map<unsigned, std::string> measurements;  // NVIDIA index → lowercase hex
  std::string driver_version, vbios_version;
  std::string leaf_cn;  // "GH100 A01 GSP FMC LF"
  SpdmNonce nonce{};
  std::int64_t valid_until = 0;  // the chain's earliest notAfter
};

struct GpuVerifyInput {
  std::span<const std::uint8_t> evidence;        // SPDM request ‖ response
  std::span<const std::uint8_t> cert_chain_pem;  // the GPU's chain, leaf first (root optional)
  const TrustAnchors& anchors;                   // nvidia_device_roots() unless on purpose
  std::int64_t at = 0;                           // verification time, Unix seconds
  std::optional<SpdmNonce> expected_nonce;       // the request's nonce must equal it (report_data)
};
// Checks in order: parse (malformed), chain to an anchor at `at` (cert_chain / expired), the leaf
// is P-384 and its signature over SHA-384(request ‖ response-without-signature) (signature), the
// nonce (report_data).
[[nodiscard]] Outcome<GpuVerified> verify_nvidia_gpu(const GpuVerifyInput& input);

// The NVIDIA Device Identity CA pinned in the library.
[[nodiscard]] TrustAnchors nvidia_device_roots();

// One GPU of NVIDIA's evidence JSON (the PPCIe / nvattest list: [{"nonce","evidence","certificate",
// ...}], evidence = base64 SPDM, certificate = base64 PEM chain).
struct GpuEvidence {
  SpdmNonce nonce{};
  Bytes evidence;
  Bytes cert_chain_pem;
};
inline constexpr std::size_t kMaxGpusPerEvidence = 64;
[[nodiscard]] Outcome<std::vector<GpuEvidence>> parse_gpu_evidence_json(std::string_view json);

// A RIM's golden values (SWID tag: Meta/@colloquialVersion, Payload/Resource measurements).
struct RimMeasurement {
  std::string name;
  bool active = true;
  std::size_t size = 0;                   // bytes
  std::vector<std::string> alternatives;  // lowercase hex
};
struct Rim {
  std::string colloquial_version;  // "96.00.5E.00.01" / "550.90.07", lowercase
  std::string product;
  std::map<unsigned, RimMeasurement> measurements;  // by NVIDIA index
};
inline constexpr std::size_t kMaxRimBytes = 1 << 20;
// Malformed when the XML does not parse, has no Meta / Payload, or a Resource is incomplete or
// repeats an index. The XMLDSig signature is not verified: use verify_rim for a RIM from anywhere.
[[nodiscard]] Outcome<Rim> parse_rim(std::string_view xml);

struct RimVerifyInput {
  std::string_view xml;         // the .swidtag as NVIDIA's RIM service serves it
  const TrustAnchors& anchors;  // nvidia_rim_roots() unless on purpose
  std::int64_t at = 0;          // verification time, Unix seconds
};
// parse_rim after its enveloped XMLDSig signature verified: the document's one ds:Signature (a
// child of the root) with C14N 1.1, ECDSA-SHA384 and one Reference URI="" (enveloped-signature,
// C14N 1.1, SHA-384) — nothing else is accepted; the signer is the first ds:X509Certificate of its
// KeyInfo, whose chain (the other certificates there) must lead to an anchor at `at`. Fails at
// malformed, cert_chain, expired or signature. libxmlsec1 (OpenSSL backend) does the
// canonicalization and the signature check; the chain is x509.hpp's.
[[nodiscard]] Outcome<Rim> verify_rim(const RimVerifyInput& input);

// The NVIDIA CoRIM signing Root CA pinned in the library.
[[nodiscard]] TrustAnchors nvidia_rim_roots();

// Every active golden measurement of the RIMs (a driver RIM and a VBIOS RIM, which must not both
// have an active value at one index) must have its index in `gpu` with a value among its
// alternatives, of its size; the RIMs' versions must be the GPU's driver / VBIOS versions.
// Fails at `measurement` naming the version or the mismatched indices.
[[nodiscard]] Outcome<void> compare_with_rims(const GpuVerified& gpu, std::span<const Rim> rims);

}  // namespace rvenc::attestation
