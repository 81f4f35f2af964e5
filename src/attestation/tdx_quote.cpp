// The TDX quote parser (tdx.hpp): header, TD report body, signature data, certification data.
// Layout: Intel TDX DCAP Quoting Library API, "Quote Format" (v4: header ‖ body ‖ u32 size ‖
// signature data; v5: header ‖ u16 body type ‖ u32 body size ‖ body ‖ u32 size ‖ signature data).
#include <algorithm>
#include <cstring>
#include <string>

#include "rvenc/attestation/tdx.hpp"
#include "rvenc/attestation/bytes.hpp"

namespace rvenc::attestation::tdx {
namespace {

using Reader = ByteReader;

std::unexpected<Failure> bad(std::string_view what) { return fail(Check::malformed, "TDX quote: " + std::string(what)); }

bool read_body(Reader& r, std::size_t size, TdReport& b) {
  bool ok = r.take(b.tee_tcb_svn) && r.take(b.mrseam) && r.take(b.mrsignerseam) && r.take(b.seam_attributes) &&
            r.take(b.td_attributes) && r.take(b.xfam) && r.take(b.mrtd) && r.take(b.mrconfigid) &&
            r.take(b.mrowner) && r.take(b.mrownerconfig);
  for (auto& rtmr : b.rtmr) ok = ok && r.take(rtmr);
  ok = ok && r.take(b.report_data);
  if (ok && size == kTdReport15Size) {
    b.tee_tcb_svn2.emplace();
    b.mrservicetd.emplace();
    ok = r.take(*b.tee_tcb_svn2) && r.take(*b.mrservicetd);
  }
  return ok;
}

bool read_qe_report(std::span<const std::uint8_t> raw, QeReport& q) {
  Reader r(raw);
  std::span<const std::uint8_t> skip;
  std::array<std::uint8_t, 16> ext_prod_id{};
  return r.take(q.cpu_svn) && r.le(q.miscselect) && r.take(12, skip) && r.take(ext_prod_id) &&
         r.take(q.attributes) && r.take(q.mrenclave) && r.take(32, skip) && r.take(q.mrsigner) &&
         r.take(96, skip) && r.le(q.isv_prod_id) && r.le(q.isv_svn) && r.take(60, skip) && r.take(q.report_data);
}

// Header and body: fills version, body_type, body and signed_bytes.
Outcome<void> read_header_and_body(Reader& r, std::span<const std::uint8_t> bytes, Quote& q) {
  std::uint16_t key_type = 0;
  std::uint32_t tee_type = 0;
  std::span<const std::uint8_t> rest;
  if (!r.le(q.version) || !r.le(key_type) || !r.le(tee_type) || !r.take(kHeaderSize - 8, rest))
    return bad("shorter than its 48-byte header (" + std::to_string(bytes.size()) + " bytes)");
  if (q.version != 4 && q.version != 5) return bad("version " + std::to_string(q.version) + " (4 or 5 expected)");
  if (key_type != kAttestationKeyEcdsaP256)
    return bad("attestation key type " + std::to_string(key_type) + " (2, ECDSA P-256, expected)");
  if (tee_type != kTeeTypeTdx) return bad("TEE type " + std::to_string(tee_type) + " (0x81, TDX, expected)");
  std::size_t body_size = kTdReport10Size;
  if (q.version == 5) {
    std::uint32_t size = 0;
    if (!r.le(q.body_type) || !r.le(size)) return bad("truncated v5 body descriptor");
    if (q.body_type != 2 && q.body_type != 3)
      return bad("v5 body type " + std::to_string(q.body_type) + " (2 or 3, a TD report, expected)");
    body_size = q.body_type == 2 ? kTdReport10Size : kTdReport15Size;
    if (size != body_size) return bad("v5 body size " + std::to_string(size) + " does not match its type");
  }
  if (!read_body(r, body_size, q.body)) return bad("truncated TD report body");
  q.signed_bytes = bytes.first(r.offset());
  return {};
}

// Certification data type 6: QE report ‖ signature ‖ auth data ‖ inner certification data (type 5).
Outcome<void> read_qe_certification(Reader& r, Quote& q) {
  if (!r.take(kQeReportSize, q.qe_report_bytes) || !read_qe_report(q.qe_report_bytes, q.qe_report))
    return bad("truncated QE report");
  std::uint16_t auth_size = 0;
  if (!r.take(q.qe_report_signature) || !r.le(auth_size) || !r.take(auth_size, q.qe_auth_data))
    return bad("truncated QE report signature or QE authentication data");
  std::uint16_t type = 0;
  std::uint32_t size = 0;
  if (!r.le(type) || !r.le(size)) return bad("truncated PCK certification data header");
  if (type != kCertDataPckChain)
    return bad("QE certification data type " + std::to_string(type) + " (5, PCK chain, expected)");
  if (!r.take(size, q.pck_chain) || size == 0) return bad("PCK chain size " + std::to_string(size) + " out of bounds");
  if (r.remaining() != 0) return bad("bytes after the PCK chain inside the certification data");
  return {};
}

}  // namespace

Outcome<Quote> parse_quote(std::span<const std::uint8_t> bytes) {
  Quote q;
  Reader r(bytes);
  if (auto ok = read_header_and_body(r, bytes, q); !ok) return std::unexpected(ok.error());
  std::uint32_t sig_size = 0;
  std::span<const std::uint8_t> sig_data;
  if (!r.le(sig_size) || !r.take(sig_size, sig_data))
    return bad("signature data size " + std::to_string(sig_size) + " exceeds the quote");
  Reader s(sig_data);
  std::uint16_t cert_type = 0;
  std::uint32_t cert_size = 0;
  std::span<const std::uint8_t> cert_data;
  if (!s.take(q.signature) || !s.take(q.attestation_key) || !s.le(cert_type) || !s.le(cert_size))
    return bad("truncated signature data");
  if (cert_type != kCertDataQeReport)
    return bad("certification data type " + std::to_string(cert_type) + " (6, QE report, expected)");
  if (!s.take(cert_size, cert_data) || s.remaining() != 0)
    return bad("certification data size " + std::to_string(cert_size) + " does not match the signature data");
  Reader c(cert_data);
  if (auto ok = read_qe_certification(c, q); !ok) return std::unexpected(ok.error());
  return q;
}

}  // namespace rvenc::attestation::tdx
