// NVIDIA Hopper GPU evidence (nvidia.hpp): SPDM GET_MEASUREMENTS parsing, the signature and
// certificate chain, the nonce. RIMs: nvidia_rim.cpp. The pinned root: nvidia_root.cpp.
#include "rvenc/attestation/nvidia.hpp"

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <limits>

#include "rvenc/attestation/bytes.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/crypto/secret.hpp"
#include "rvenc/protocol/attestation.hpp"
#include "x509.hpp"

namespace rvenc::attestation {
namespace {

constexpr std::uint8_t kSpdmVersion11 = 0x11;
constexpr std::uint8_t kGetMeasurements = 0xE0;
constexpr std::uint8_t kMeasurements = 0x60;
constexpr std::uint8_t kDmtfMeasurementSpec = 1;
constexpr std::uint8_t kRequestSignature = 1;  // param1 bit 0: the response carries a signature

using Reader = ByteReader;

std::unexpected<Failure> truncated(std::string_view what, const Reader& reader) {
  return fail(Check::malformed, "SPDM evidence ends inside the " + std::string(what) + " (offset " +
                                    std::to_string(reader.offset()) + ")");
}

Outcome<void> parse_request(Reader& reader, SpdmMeasurements& out) {
  const auto head = reader.take(4);
  if (!head) return truncated("GET_MEASUREMENTS request", reader);
  if ((*head)[0] != kSpdmVersion11 || (*head)[1] != kGetMeasurements)
    return fail(Check::malformed,
                "SPDM request is not a version 1.1 GET_MEASUREMENTS (" + to_hex(head->first(2)) + ")");
  out.request_param1 = (*head)[2];
  out.request_param2 = (*head)[3];
  if ((out.request_param1 & kRequestSignature) == 0)
    return fail(Check::malformed, "SPDM request does not ask for a signed response");
  const auto nonce = reader.take(kSpdmNonceBytes);
  const auto slot = reader.le_n(1);
  if (!nonce || !slot) return truncated("GET_MEASUREMENTS request", reader);
  std::ranges::copy(*nonce, out.request_nonce.begin());
  out.slot_id = static_cast<std::uint8_t>(*slot);
  return {};
}

Outcome<void> parse_block(Reader& record, SpdmMeasurements& out) {
  const auto index = record.le_n(1), spec = record.le_n(1), size = record.le_n(2);
  if (!index || !spec || !size) return truncated("measurement record", record);
  const auto body = record.take(*size);
  if (!body) return truncated("measurement block", record);
  if (*spec != kDmtfMeasurementSpec || *index == 0)
    return fail(Check::malformed, "measurement block " + std::to_string(*index) + " is not a DMTF measurement");
  Reader dmtf(*body);
  const auto type = dmtf.le_n(1), value_size = dmtf.le_n(2);
  const auto value = value_size ? dmtf.take(*value_size) : std::nullopt;
  if (!type || !value || dmtf.remaining() != 0)
    return fail(Check::malformed, "measurement block " + std::to_string(*index) + " has a wrong value size");
  const auto [_, inserted] = out.blocks.try_emplace(
      *index - 1, SpdmMeasurementBlock{static_cast<std::uint8_t>(*type), Bytes(value->begin(), value->end())});
  if (!inserted) return fail(Check::malformed, "measurement block " + std::to_string(*index) + " appears twice");
  return {};
}

Outcome<void> parse_opaque(std::span<const std::uint8_t> data, SpdmMeasurements& out) {
  Reader reader(data);
  while (reader.remaining() > 0) {
    const auto type = reader.le_n(2), size = reader.le_n(2);
    if (!type || !size) return truncated("opaque data", reader);
    const auto value = reader.take(*size);
    if (!value) return truncated("opaque data", reader);
    const auto [_, inserted] =
        out.opaque.try_emplace(static_cast<std::uint16_t>(*type), Bytes(value->begin(), value->end()));
    if (!inserted) return fail(Check::malformed, "opaque data field " + std::to_string(*type) + " appears twice");
  }
  return {};
}

Outcome<void> parse_response(Reader& reader, SpdmMeasurements& out) {
  const auto head = reader.take(4);
  const auto count = reader.le_n(1), record_size = reader.le_n(3);
  if (!head || !count || !record_size) return truncated("MEASUREMENTS response header", reader);
  out.spdm_version = (*head)[0];
  if ((*head)[0] != kSpdmVersion11 || (*head)[1] != kMeasurements)
    return fail(Check::malformed, "SPDM response is not a version 1.1 MEASUREMENTS (" + to_hex(head->first(2)) + ")");
  if (*count == 0) return fail(Check::malformed, "SPDM response has no measurement block");
  const auto record = reader.take(*record_size);
  if (!record) return truncated("measurement record", reader);
  Reader blocks(*record);
  for (std::uint32_t i = 0; i < *count; ++i)
    if (auto ok = parse_block(blocks, out); !ok) return ok;
  if (blocks.remaining() != 0) return fail(Check::malformed, "measurement record is longer than its blocks");
  const auto nonce = reader.take(kSpdmNonceBytes);
  const auto opaque_size = reader.le_n(2);
  if (!nonce || !opaque_size) return truncated("MEASUREMENTS response", reader);
  std::ranges::copy(*nonce, out.responder_nonce.begin());
  const auto opaque = reader.take(*opaque_size);
  if (!opaque) return truncated("opaque data", reader);
  return parse_opaque(*opaque, out);
}

std::string ascii_field(const Bytes& raw) {
  std::string out(raw.begin(), std::ranges::find(raw, std::uint8_t{0}));
  const bool printable = std::ranges::all_of(out, [](char c) { return c > 0x20 && c < 0x7F; });
  return printable ? out : std::string{};
}

Outcome<void> verify_signature(const SpdmMeasurements& spdm, std::span<const std::uint8_t> evidence, X509* leaf) {
  const x509::PkeyPtr key(X509_get_pubkey(leaf));
  if (!key || EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_EC || EVP_PKEY_get_bits(key.get()) != 384)
    return fail(Check::cert_chain, "GPU leaf " + x509::subject_cn(leaf) + " has no P-384 key");
  const std::span<const std::uint8_t> sig(spdm.signature);
  return x509::verify_ecdsa_raw(key.get(), EVP_sha384(), evidence.first(spdm.signed_bytes), sig.first(48),
                                sig.subspan(48), "SPDM MEASUREMENTS response");
}

}  // namespace

std::string SpdmMeasurements::driver_version() const {
  const auto it = opaque.find(static_cast<std::uint16_t>(NvOpaqueField::driver_version));
  return it == opaque.end() ? std::string{} : ascii_field(it->second);
}

std::string SpdmMeasurements::vbios_version() const {
  const auto it = opaque.find(static_cast<std::uint16_t>(NvOpaqueField::vbios_version));
  if (it == opaque.end() || it->second.size() != 8) return {};
  const auto& b = it->second;  // little-endian: printed as bytes 3.2.1.0.4
  std::string out;
  for (const std::size_t i : {3, 2, 1, 0, 4}) {
    if (!out.empty()) out += '.';
    out += to_hex(std::span(b).subspan(i, 1));
  }
  std::ranges::transform(out, out.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return out;
}

Outcome<SpdmMeasurements> parse_spdm_measurements(std::span<const std::uint8_t> evidence) {
  if (evidence.size() > kMaxGpuEvidenceBytes)
    return fail(Check::malformed, "SPDM evidence is over " + std::to_string(kMaxGpuEvidenceBytes) + " bytes");
  SpdmMeasurements out;
  Reader reader(evidence);
  if (auto ok = parse_request(reader, out); !ok) return std::unexpected(ok.error());
  if (auto ok = parse_response(reader, out); !ok) return std::unexpected(ok.error());
  out.signed_bytes = reader.offset();
  const auto signature = reader.take(kSpdmSignatureBytes);
  if (!signature) return truncated("signature", reader);
  if (reader.remaining() != 0)
    return fail(Check::malformed, "SPDM evidence has " + std::to_string(reader.remaining()) + " bytes after the signature");
  std::ranges::copy(*signature, out.signature.begin());
  return out;
}

Outcome<GpuVerified> verify_nvidia_gpu(const GpuVerifyInput& input) {
  auto spdm = parse_spdm_measurements(input.evidence);
  if (!spdm) return std::unexpected(spdm.error());
  auto chain = x509::parse_pem_certs(input.cert_chain_pem, "GPU certificate chain");
  if (!chain) return std::unexpected(chain.error());
  auto anchors = x509::parse_anchors(input.anchors);
  if (!anchors) return std::unexpected(anchors.error());
  const std::span<const x509::CertPtr> intermediates = std::span(*chain).subspan(1);
  auto verified_chain = x509::verify_chain({.leaf = chain->front().get(),
                                            .intermediates = intermediates,
                                            .anchors = *anchors,
                                            .at = input.at,
                                            .what = "GPU chain"});
  if (!verified_chain) return std::unexpected(verified_chain.error());
  if (auto ok = verify_signature(*spdm, input.evidence, chain->front().get()); !ok) return std::unexpected(ok.error());
  if (input.expected_nonce &&
      !crypto::constant_time_equal(std::span<const std::uint8_t>(spdm->request_nonce), *input.expected_nonce))
    return fail(Check::report_data, "the GPU's SPDM request nonce is not the expected nonce");

  GpuVerified out{.driver_version = spdm->driver_version(),
                  .vbios_version = spdm->vbios_version(),
                  .leaf_cn = x509::subject_cn(chain->front().get()),
                  .nonce = spdm->request_nonce};
  for (const auto& [index, block] : spdm->blocks) out.measurements.emplace(index, to_hex(block.value));
  out.valid_until = std::numeric_limits<std::int64_t>::max();
  for (const auto& cert : *verified_chain)
    out.valid_until = std::min(out.valid_until, x509::cert_not_after(cert.get()).value_or(0));
  return out;
}

namespace {

Outcome<SpdmNonce> json_nonce(const boost::json::object& gpu, std::size_t i) {
  const auto* nonce = gpu.if_contains("nonce");
  if (nonce == nullptr || !nonce->is_string())
    return fail(Check::malformed, "GPU evidence " + std::to_string(i) + ": \"nonce\" is missing or not a string");
  auto bytes = from_hex_exact<kSpdmNonceBytes>(std::string_view(nonce->get_string()), "nonce");
  if (!bytes) return fail(Check::malformed, "GPU evidence " + std::to_string(i) + ": \"nonce\" is not 64 hex digits");
  return *bytes;
}

Outcome<Bytes> json_base64(const boost::json::object& gpu, std::string_view key, std::size_t i) {
  const auto* text = gpu.if_contains(key);
  if (text == nullptr || !text->is_string())
    return fail(Check::malformed,
                "GPU evidence " + std::to_string(i) + ": \"" + std::string(key) + "\" is missing or not a string");
  auto bytes = protocol::base64_decode(std::string_view(text->get_string()), key);
  if (!bytes)
    return fail(Check::malformed, "GPU evidence " + std::to_string(i) + ": \"" + std::string(key) + "\" is not base64");
  return std::move(*bytes);
}

}  // namespace

Outcome<std::vector<GpuEvidence>> parse_gpu_evidence_json(std::string_view json) {
  boost::system::error_code ec;
  const auto value = boost::json::parse(json, ec);
  if (ec || !value.is_array()) return fail(Check::malformed, "GPU evidence is not a JSON array");
  const auto& list = value.get_array();
  if (list.empty() || list.size() > kMaxGpusPerEvidence)
    return fail(Check::malformed, "GPU evidence must list 1 to " + std::to_string(kMaxGpusPerEvidence) + " GPUs");
  std::vector<GpuEvidence> out;
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (!list[i].is_object()) return fail(Check::malformed, "GPU evidence " + std::to_string(i) + " is not an object");
    const auto& gpu = list[i].get_object();
    auto nonce = json_nonce(gpu, i);
    if (!nonce) return std::unexpected(nonce.error());
    auto evidence = json_base64(gpu, "evidence", i);
    if (!evidence) return std::unexpected(evidence.error());
    auto chain = json_base64(gpu, "certificate", i);
    if (!chain) return std::unexpected(chain.error());
    out.push_back({*nonce, std::move(*evidence), std::move(*chain)});
  }
  return out;
}

}  // namespace rvenc::attestation
