// The Intel TDX verifier (verifier.hpp verify_tdx, tdx.hpp check_quote), in Intel QVL's order:
// quote authenticity (PCK chain, QE report, quote signature), then the collateral (CRLs, TCB Info,
// QE Identity: chains, signatures over their raw bytes, validity), the TCB level, the QE identity,
// and last what the policy and the caller ask (debug, measurements, REPORT_DATA).
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <limits>
#include <string>

#include "rvenc/attestation/tdx.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "x509.hpp"

namespace rvenc::attestation::tdx {
namespace {

constexpr std::string_view kSgxExtensionOid = "1.2.840.113741.1.13.1";

template <class T>
std::unexpected<Failure> pass_on(const Outcome<T>& outcome) {
  return std::unexpected(outcome.error());
}

// Concatenated DER certificates (QVL's synthetic quotes carry these instead of PEM).
Outcome<x509::Certs> parse_der_certs(std::span<const std::uint8_t> der) {
  x509::Certs certs;
  while (!der.empty()) {
    // SEQUENCE with a long-form length of 1 or 2 bytes (certificates are 128 B .. 64 KiB).
    if (der.size() < 4 || der[0] != 0x30 || (der[1] != 0x81 && der[1] != 0x82))
      return fail(Check::malformed, "TDX quote: the PCK chain is neither PEM nor DER certificates");
    const std::size_t header = der[1] == 0x81 ? 3 : 4;
    const std::size_t length = der[1] == 0x81 ? der[2] : (std::size_t{der[2]} << 8U) | der[3];
    if (header + length > der.size()) return fail(Check::malformed, "TDX quote: a PCK chain certificate is truncated");
    auto cert = x509::parse_der_cert(der.first(header + length), "PCK chain certificate");
    if (!cert) return pass_on(cert);
    certs.push_back(std::move(*cert));
    der = der.subspan(header + length);
  }
  return certs;
}

Outcome<x509::Certs> quote_certs(std::span<const std::uint8_t> chain) {
  const std::string_view text(reinterpret_cast<const char*>(chain.data()), chain.size());
  if (text.find("-----BEGIN CERTIFICATE-----") != std::string_view::npos)
    return x509::parse_pem_certs(chain, "PCK chain");
  return parse_der_certs(chain);
}

std::int64_t earliest_not_after(const x509::Certs& certs) {
  std::int64_t out = std::numeric_limits<std::int64_t>::max();
  for (const auto& c : certs) out = std::min(out, x509::cert_not_after(c.get()).value_or(0));
  return out;
}

// The leaf (the certificate with the SGX extensions) apart from the others (untrusted intermediates).
Outcome<x509::CertPtr> take_leaf(x509::Certs& certs) {
  const auto leaf = std::find_if(certs.begin(), certs.end(), [](const x509::CertPtr& c) {
    return x509::extension_by_oid(c.get(), kSgxExtensionOid).has_value();
  });
  if (leaf == certs.end()) return fail(Check::cert_chain, "the quote's PCK chain has no PCK certificate");
  x509::CertPtr out = std::move(*leaf);
  certs.erase(leaf);
  return out;
}

Outcome<void> check_signatures(const Quote& q, X509* pck) {
  const auto& s = q.qe_report_signature;
  if (auto ok = x509::verify_ecdsa_raw(X509_get0_pubkey(pck), EVP_sha256(), q.qe_report_bytes,
                                       std::span(s).first(32), std::span(s).last(32), "QE report (by the PCK)");
      !ok)
    return ok;
  Bytes key_and_auth(q.attestation_key.begin(), q.attestation_key.end());
  key_and_auth.insert(key_and_auth.end(), q.qe_auth_data.begin(), q.qe_auth_data.end());
  const auto digest = crypto::sha256(key_and_auth);
  const auto& rd = q.qe_report.report_data;
  if (!std::equal(digest.begin(), digest.end(), rd.begin()) ||
      !std::all_of(rd.begin() + 32, rd.end(), [](std::uint8_t b) { return b == 0; }))
    return fail(Check::signature, "QE report data is not SHA-256(attestation key || QE authentication data)");
  auto key = x509::ec_public_key_from_xy(NID_X9_62_prime256v1, q.attestation_key, "attestation key");
  if (!key) return pass_on(key);
  return x509::verify_ecdsa_raw(key->get(), EVP_sha256(), q.signed_bytes, std::span(q.signature).first(32),
                                std::span(q.signature).last(32), "quote (by the attestation key)");
}

// The quote's PCK chain (plus `more` untrusted certificates) to `roots` at `at`, with `crls` when
// given; then the QE report, its report data and the quote signature.
Outcome<QuoteCheck> check_quote_with(std::span<const std::uint8_t> evidence, const x509::Certs& roots,
                                     std::span<const x509::CrlPtr> crls, x509::Certs more, std::int64_t at) {
  auto quote = parse_quote(evidence);
  if (!quote) return pass_on(quote);
  auto certs = quote_certs(quote->pck_chain);
  if (!certs) return pass_on(certs);
  auto leaf = take_leaf(*certs);
  if (!leaf) return pass_on(leaf);
  for (auto& c : more) certs->push_back(std::move(c));
  const auto chain =
      x509::verify_chain({leaf->get(), *certs, roots, crls, x509::CrlPolicy::every_issuer, at, "PCK chain"});
  if (!chain) return pass_on(chain);
  if (auto ok = check_signatures(*quote, leaf->get()); !ok) return pass_on(ok);
  const auto ext = x509::extension_by_oid(leaf->get(), kSgxExtensionOid);
  auto pck = parse_pck_extensions(ext ? std::span<const std::uint8_t>(*ext) : std::span<const std::uint8_t>());
  if (!pck) return pass_on(pck);
  return QuoteCheck{*quote, *pck, earliest_not_after(*chain)};
}

}  // namespace

Outcome<QuoteCheck> check_quote(std::span<const std::uint8_t> evidence, const TrustAnchors& anchors,
                                std::int64_t at) {
  if (auto quote = parse_quote(evidence); !quote) return pass_on(quote);
  const auto roots = x509::parse_anchors(anchors);
  if (!roots) return pass_on(roots);
  return check_quote_with(evidence, *roots, {}, {}, at);
}

// ---- verify_tdx -----------------------------------------------------------------------------

namespace {

struct Context {
  const VerifyInput& in;
  x509::Certs roots;
  x509::Crls crls;  // pckcrl.der, rootcrl.der
  std::int64_t valid_until = std::numeric_limits<std::int64_t>::max();
};

Outcome<const Bytes*> require(const Collateral& collateral, std::string_view name) {
  const Bytes* file = collateral.find(name);
  if (file == nullptr) return fail(Check::malformed, "TDX collateral file " + std::string(name) + " is missing");
  return file;
}

Outcome<void> load_crls(Context& cx) {
  for (const std::string_view name : {"pckcrl.der", "rootcrl.der"}) {
    const auto file = require(cx.in.collateral, name);
    if (!file) return pass_on(file);
    auto crl = x509::parse_crl(**file, name);
    if (!crl) return pass_on(crl);
    cx.valid_until = std::min(cx.valid_until, x509::crl_next_update(crl->get()).value_or(0));
    cx.crls.push_back(std::move(*crl));
  }
  return {};
}

// The quote checked with both CRLs (and pckcrl_issuer_chain.pem's certificates, if given).
Outcome<QuoteCheck> check_quote_revocation(Context& cx) {
  x509::Certs more;
  if (const Bytes* extra = cx.in.collateral.find("pckcrl_issuer_chain.pem")) {
    auto certs = x509::parse_pem_certs(*extra, "pckcrl_issuer_chain.pem");
    if (!certs) return pass_on(certs);
    more = std::move(*certs);
  }
  return check_quote_with(cx.in.evidence, cx.roots, cx.crls, std::move(more), cx.in.at);
}

// The signing certificate of a collateral document, its chain verified to the anchors at `at`
// with the root CRL. It is the end-entity certificate of the file (PCS sends it first, QVL's
// samples the root first).
Outcome<x509::CertPtr> collateral_signer(Context& cx, std::string_view chain_name) {
  const auto chain_file = require(cx.in.collateral, chain_name);
  if (!chain_file) return pass_on(chain_file);
  auto certs = x509::parse_pem_certs(**chain_file, chain_name);
  if (!certs) return pass_on(certs);
  const auto it =
      std::find_if(certs->begin(), certs->end(), [](const x509::CertPtr& c) { return X509_check_ca(c.get()) == 0; });
  if (it == certs->end()) return fail(Check::cert_chain, std::string(chain_name) + " has no signing certificate");
  x509::CertPtr signer = std::move(*it);
  certs->erase(it);
  const std::span<const x509::CrlPtr> root_crl(&cx.crls.back(), 1);
  const auto chain = x509::verify_chain(
      {signer.get(), *certs, cx.roots, root_crl, x509::CrlPolicy::every_issuer, cx.in.at, chain_name});
  if (!chain) return pass_on(chain);
  cx.valid_until = std::min(cx.valid_until, earliest_not_after(*chain));
  return signer;
}

// A signed collateral document: its signer (collateral_signer), the ECDSA P-256 signature over
// the raw bytes of its body, and its issueDate .. nextUpdate window.
Outcome<void> check_signed_json(Context& cx, std::string_view doc, const Bytes& file, const SignedJson& signed_json,
                                std::string_view chain_name) {
  const auto signer = collateral_signer(cx, chain_name);
  if (!signer) return pass_on(signer);
  const auto body = std::span(file).subspan(signed_json.body_offset, signed_json.body_size);
  const auto& sig = signed_json.signature;
  if (auto ok = x509::verify_ecdsa_raw(X509_get0_pubkey(signer->get()), EVP_sha256(), body, std::span(sig).first(32),
                                       std::span(sig).last(32), doc);
      !ok)
    return ok;
  if (cx.in.at < signed_json.issue_date || cx.in.at >= signed_json.next_update)
    return fail(Check::expired, std::string(doc) + " is valid from " + std::to_string(signed_json.issue_date) +
                                    " to " + std::to_string(signed_json.next_update) + " (Unix seconds), not at " +
                                    std::to_string(cx.in.at));
  cx.valid_until = std::min(cx.valid_until, signed_json.next_update);
  return {};
}

// A signed collateral document `name`, parsed by `parse` and checked (check_signed_json).
template <class Doc>
Outcome<Doc> load_signed(Context& cx, std::string_view name, std::string_view chain,
                         Outcome<Doc> (*parse)(std::span<const std::uint8_t>)) {
  const auto file = require(cx.in.collateral, name);
  if (!file) return pass_on(file);
  auto doc = parse(**file);
  if (!doc) return doc;
  if (auto ok = check_signed_json(cx, name, **file, doc->signed_json, chain); !ok) return pass_on(ok);
  return doc;
}

// The platform's TCB status, refused when Revoked, unknown or below the policy's minimum.
Outcome<std::string> check_tcb(const TcbInfo& info, const QuoteCheck& qc, const Policy& policy) {
  if (info.fmspc != qc.pck.fmspc || info.pce_id != qc.pck.pce_id)
    return fail(Check::tcb_status, "the TCB Info is for FMSPC " + to_hex(info.fmspc) + " / PCE-ID " +
                                       to_hex(info.pce_id) + ", the PCK certificate says " + to_hex(qc.pck.fmspc) +
                                       " / " + to_hex(qc.pck.pce_id));
  const auto& body = qc.quote.body;
  auto status = match_tcb_level(info, qc.pck, body);
  if (!status) return status;
  const auto rank = tcb_status_rank(*status);
  const auto min = tcb_status_rank(policy.tdx.min_tcb_status);
  if (!min) return fail(Check::malformed, "policy minTcbStatus \"" + policy.tdx.min_tcb_status + "\" is unknown");
  if (!rank || *status == "Revoked" || *rank < *min)
    return fail(Check::tcb_status, "the platform's TCB status is " + *status + ", the policy asks at least " +
                                       policy.tdx.min_tcb_status);
  return status;
}

Outcome<void> check_qe_identity(const QeIdentity& id, const QeReport& qe) {
  if (qe.mrsigner != id.mrsigner)
    return fail(Check::qe_identity, "QE MRSIGNER " + to_hex(qe.mrsigner) + " is not Intel's " + to_hex(id.mrsigner));
  if (qe.isv_prod_id != id.isv_prod_id)
    return fail(Check::qe_identity, "QE ISVPRODID " + std::to_string(qe.isv_prod_id) + " is not " +
                                        std::to_string(id.isv_prod_id));
  if ((qe.miscselect & id.miscselect_mask) != id.miscselect)
    return fail(Check::qe_identity, "QE MISCSELECT does not match under its mask");
  for (std::size_t i = 0; i < qe.attributes.size(); ++i)
    if ((qe.attributes[i] & id.attributes_mask[i]) != id.attributes[i])
      return fail(Check::qe_identity, "QE ATTRIBUTES do not match under their mask");
  const auto level = std::find_if(id.levels.begin(), id.levels.end(),
                                  [&](const IsvsvnLevel& l) { return qe.isv_svn >= l.isvsvn; });
  if (level == id.levels.end())
    return fail(Check::qe_identity, "no QE Identity level matches the QE's ISVSVN " + std::to_string(qe.isv_svn));
  if (!tcb_status_rank(level->status) || level->status == "Revoked" || level->status.starts_with("OutOfDate"))
    return fail(Check::qe_identity, "the QE's ISVSVN " + std::to_string(qe.isv_svn) + " is " + level->status);
  return {};
}

bool listed(const std::vector<Bytes>& accepted, std::span<const std::uint8_t> value) {
  return accepted.empty() || std::any_of(accepted.begin(), accepted.end(), [&](const Bytes& b) {
           return std::equal(b.begin(), b.end(), value.begin(), value.end());
         });
}

Outcome<void> check_policy(const VerifyInput& in, const TdReport& body) {
  if (body.debug() && !in.policy.allow_debug)
    return fail(Check::debug, "the TD runs in debug mode (TD_ATTRIBUTES.TUD.DEBUG) and the policy does not allow it");
  const auto& p = in.policy.tdx;
  const std::array<std::pair<std::string_view, std::pair<const std::vector<Bytes>*, std::span<const std::uint8_t>>>, 7>
      fields{{{"mrtd", {&p.mrtd, body.mrtd}},
              {"rtmr0", {&p.rtmr0, body.rtmr[0]}},
              {"rtmr1", {&p.rtmr1, body.rtmr[1]}},
              {"rtmr2", {&p.rtmr2, body.rtmr[2]}},
              {"rtmr3", {&p.rtmr3, body.rtmr[3]}},
              {"mrseam", {&p.mrseam, body.mrseam}},
              {"xfam", {&p.xfam, body.xfam}}}};
  for (const auto& [name, field] : fields)
    if (!listed(*field.first, field.second))
      return fail(Check::measurement, std::string(name) + " " + to_hex(field.second) + " is not in the policy");
  if (in.expected_report_data && !std::equal(in.expected_report_data->begin(), in.expected_report_data->end(),
                                             body.report_data.begin()))
    return fail(Check::report_data, "REPORTDATA " + to_hex(body.report_data) + " is not the expected binding");
  return {};
}

Verified verified(const QuoteCheck& qc, std::string status, std::int64_t valid_until) {
  const auto& b = qc.quote.body;
  Verified v;
  v.provider = Provider::tdx;
  v.measurement.assign(b.mrtd.begin(), b.mrtd.end());
  v.tcb_status = std::move(status);
  v.debug = b.debug();
  v.report_data = b.report_data;
  v.valid_until = valid_until;
  for (std::size_t i = 0; i < 4; ++i) v.fields.emplace("rtmr" + std::to_string(i), to_hex(b.rtmr[i]));
  v.fields.emplace("mrseam", to_hex(b.mrseam));
  v.fields.emplace("xfam", to_hex(b.xfam));
  v.fields.emplace("td_attributes", to_hex(b.td_attributes));
  v.fields.emplace("fmspc", to_hex(qc.pck.fmspc));
  v.fields.emplace("tee_tcb_svn", to_hex(b.tee_tcb_svn));
  v.fields.emplace("quote_version", std::to_string(qc.quote.version));
  return v;
}

}  // namespace

}  // namespace rvenc::attestation::tdx

namespace rvenc::attestation {

Outcome<Verified> verify_tdx(const VerifyInput& in) {
  using namespace tdx;
  if (auto quote = parse_quote(in.evidence); !quote) return pass_on(quote);
  auto roots = x509::parse_anchors(in.anchors);
  if (!roots) return pass_on(roots);
  Context cx{in, std::move(*roots), {}};
  if (auto ok = load_crls(cx); !ok) return pass_on(ok);
  auto qc = check_quote_revocation(cx);
  if (!qc) return pass_on(qc);
  cx.valid_until = std::min(cx.valid_until, qc->pck_chain_not_after);
  auto info = load_signed(cx, "tcbinfo.json", "tcbinfo_issuer_chain.pem", &parse_tcb_info);
  if (!info) return pass_on(info);
  auto identity = load_signed(cx, "qeidentity.json", "qeidentity_issuer_chain.pem", &parse_qe_identity);
  if (!identity) return pass_on(identity);
  auto status = check_tcb(*info, *qc, in.policy);
  if (!status) return pass_on(status);
  if (auto ok = check_qe_identity(*identity, qc->quote.qe_report); !ok) return pass_on(ok);
  if (auto ok = check_policy(in, qc->quote.body); !ok) return pass_on(ok);
  return verified(*qc, std::move(*status), cx.valid_until);
}

}  // namespace rvenc::attestation
