// Test-only Intel TDX signer (tdx_signer.hpp).
#include "support/tdx_signer.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <stdexcept>
#include <string>
#include <vector>

#include "attestation/x509.hpp"
#include "support/x509_signer.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/crypto/crypto.hpp"

namespace rvenc::test {
namespace {

using attestation::Bytes;
using attestation::x509::CertPtr;
using attestation::x509::CrlPtr;
using attestation::x509::PkeyPtr;
namespace tdx = attestation::tdx;

constexpr std::int64_t kDay = 86400;
const std::array<std::uint8_t, 32> kQeMrsigner = {0xdc, 0x9e, 0x2a, 0x7c};

using x509_signer::add_extension;
using x509_signer::add_raw_extension;
using x509_signer::to_pem;

void check(bool ok, const char* what) { x509_signer::check(ok, "tdx_signer", what); }

PkeyPtr p256_key() {
  PkeyPtr key(EVP_EC_gen("P-256"));
  check(key != nullptr, "P-256 key generation");
  return key;
}

// ---- DER for the SGX extension ----------------------------------------------------------------

Bytes tlv(std::uint8_t tag, const Bytes& content) {
  Bytes out{tag};
  if (content.size() < 0x80) {
    out.push_back(static_cast<std::uint8_t>(content.size()));
  } else {
    out.push_back(0x82);
    out.push_back(static_cast<std::uint8_t>(content.size() >> 8U));
    out.push_back(static_cast<std::uint8_t>(content.size()));
  }
  out.insert(out.end(), content.begin(), content.end());
  return out;
}
Bytes seq(const std::vector<Bytes>& items) {
  Bytes content;
  for (const auto& i : items) content.insert(content.end(), i.begin(), i.end());
  return tlv(0x30, content);
}
Bytes oid(const std::string& dotted) {
  std::unique_ptr<ASN1_OBJECT, decltype(&ASN1_OBJECT_free)> obj(OBJ_txt2obj(dotted.c_str(), 1), ASN1_OBJECT_free);
  check(obj != nullptr, "OID");
  const int n = i2d_ASN1_OBJECT(obj.get(), nullptr);
  Bytes out(static_cast<std::size_t>(n));
  unsigned char* p = out.data();
  i2d_ASN1_OBJECT(obj.get(), &p);
  return out;
}
Bytes integer(unsigned value) {
  Bytes content;
  do {
    content.insert(content.begin(), static_cast<std::uint8_t>(value & 0xFFU));
    value >>= 8U;
  } while (value != 0);
  if ((content.front() & 0x80U) != 0) content.insert(content.begin(), 0);
  return tlv(0x02, content);
}
Bytes octets(std::span<const std::uint8_t> b) { return tlv(0x04, Bytes(b.begin(), b.end())); }

Bytes sgx_extension(const TdxSignerOptions& o) {
  const std::string base = "1.2.840.113741.1.13.1";
  std::vector<Bytes> tcb;
  for (unsigned i = 0; i < 16; ++i)
    tcb.push_back(seq({oid(base + ".2." + std::to_string(i + 1)), integer(o.cpu_svn_components[i])}));
  tcb.push_back(seq({oid(base + ".2.17"), integer(o.pce_svn)}));
  tcb.push_back(seq({oid(base + ".2.18"), octets(o.cpu_svn_components)}));
  const std::array<std::uint8_t, 16> ppid = {0x11, 0x22};
  const std::array<std::uint8_t, 2> pce_id{};
  return seq({seq({oid(base + ".1"), octets(ppid)}), seq({oid(base + ".2"), seq(tcb)}),
              seq({oid(base + ".3"), octets(pce_id)}), seq({oid(base + ".4"), octets(o.fmspc)}),
              seq({oid(base + ".5"), tlv(0x0a, {0})})});
}

// ---- certificates and CRLs -------------------------------------------------------------------

struct CertSpec {
  std::string cn;
  EVP_PKEY* key = nullptr;     // the subject's
  X509* issuer = nullptr;      // nullptr: self-signed
  EVP_PKEY* issuer_key = nullptr;
  long serial = 1;
  bool ca = false;
  std::int64_t not_before = 0, not_after = 0;
  const Bytes* sgx_extension = nullptr;
};

CertPtr make_cert(const CertSpec& s) {
  CertPtr cert(X509_new());
  check(cert != nullptr && X509_set_version(cert.get(), 2) == 1, "X509_new");
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), s.serial);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(s.cn.c_str()), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("rvenc tests"), -1, -1, 0);
  check(X509_set_issuer_name(cert.get(), s.issuer ? X509_get_subject_name(s.issuer) : name) == 1, "issuer name");
  time_t from = static_cast<time_t>(s.not_before), to = static_cast<time_t>(s.not_after);
  check(X509_time_adj_ex(X509_getm_notBefore(cert.get()), 0, 0, &from) != nullptr &&
            X509_time_adj_ex(X509_getm_notAfter(cert.get()), 0, 0, &to) != nullptr,
        "validity");
  check(X509_set_pubkey(cert.get(), s.key) == 1, "public key");
  X509* issuer = s.issuer ? s.issuer : cert.get();
  add_extension(cert.get(), issuer, NID_basic_constraints, s.ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  add_extension(cert.get(), issuer, NID_key_usage, s.ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
  add_extension(cert.get(), issuer, NID_subject_key_identifier, "hash");
  add_extension(cert.get(), issuer, NID_authority_key_identifier, "keyid:always");
  if (s.sgx_extension != nullptr) add_raw_extension(cert.get(), "1.2.840.113741.1.13.1", *s.sgx_extension);
  check(X509_sign(cert.get(), s.issuer_key ? s.issuer_key : s.key, EVP_sha256()) > 0, "certificate signing");
  return cert;
}

Bytes crl_der(X509* issuer, EVP_PKEY* key, std::int64_t last, std::int64_t next, const X509* revoked) {
  CrlPtr crl(X509_CRL_new());
  check(crl && X509_CRL_set_version(crl.get(), 1) == 1 &&
            X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(issuer)) == 1,
        "CRL");
  std::unique_ptr<ASN1_TIME, decltype(&ASN1_TIME_free)> t1(ASN1_TIME_set(nullptr, static_cast<time_t>(last)),
                                                           ASN1_TIME_free);
  std::unique_ptr<ASN1_TIME, decltype(&ASN1_TIME_free)> t2(ASN1_TIME_set(nullptr, static_cast<time_t>(next)),
                                                           ASN1_TIME_free);
  check(t1 && t2 && X509_CRL_set1_lastUpdate(crl.get(), t1.get()) == 1 &&
            X509_CRL_set1_nextUpdate(crl.get(), t2.get()) == 1,
        "CRL times");
  if (revoked != nullptr) {
    X509_REVOKED* entry = X509_REVOKED_new();
    check(entry != nullptr && X509_REVOKED_set_serialNumber(entry, const_cast<ASN1_INTEGER*>(X509_get0_serialNumber(revoked))) == 1 &&
              X509_REVOKED_set_revocationDate(entry, t1.get()) == 1 && X509_CRL_add0_revoked(crl.get(), entry) == 1,
          "CRL entry");
  }
  check(X509_CRL_sort(crl.get()) == 1 && X509_CRL_sign(crl.get(), key, EVP_sha256()) > 0, "CRL signing");
  const int n = i2d_X509_CRL(crl.get(), nullptr);
  Bytes out(static_cast<std::size_t>(n));
  unsigned char* p = out.data();
  i2d_X509_CRL(crl.get(), &p);
  return out;
}

// ---- raw signatures and JSON -----------------------------------------------------------------

std::array<std::uint8_t, 64> sign_raw(EVP_PKEY* key, std::span<const std::uint8_t> message) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  std::size_t size = 0;
  check(ctx && EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) == 1 &&
            EVP_DigestSign(ctx.get(), nullptr, &size, message.data(), message.size()) == 1,
        "ECDSA setup");
  Bytes der(size);
  check(EVP_DigestSign(ctx.get(), der.data(), &size, message.data(), message.size()) == 1, "ECDSA signing");
  const unsigned char* p = der.data();
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(size)),
                                                            ECDSA_SIG_free);
  std::array<std::uint8_t, 64> out{};
  check(sig && BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), out.data(), 32) == 32 &&
            BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), out.data() + 32, 32) == 32,
        "ECDSA r/s");
  return out;
}

std::array<std::uint8_t, 64> public_xy(EVP_PKEY* key) {
  std::array<std::uint8_t, 65> point{};
  std::size_t n = 0;
  check(EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size(), &n) == 1 &&
            n == 65 && point[0] == 0x04,
        "public key x||y");
  std::array<std::uint8_t, 64> out{};
  std::copy(point.begin() + 1, point.end(), out.begin());
  return out;
}

std::string iso_time(std::int64_t t) {
  const auto seconds = static_cast<time_t>(t);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string components(std::span<const std::uint8_t> svns) {
  std::string out = "[";
  for (std::size_t i = 0; i < svns.size(); ++i) out += (i ? "," : "") + std::string("{\"svn\":") + std::to_string(svns[i]) + "}";
  return out + "]";
}

Bytes signed_json(std::string_view member, const std::string& body, EVP_PKEY* key) {
  const auto sig = sign_raw(key, std::span(reinterpret_cast<const std::uint8_t*>(body.data()), body.size()));
  const std::string text = "{\"" + std::string(member) + "\":" + body + ",\"signature\":\"" + to_hex(sig) + "\"}";
  return Bytes(text.begin(), text.end());
}

template <class T>
void put_le(Bytes& out, T value) {
  for (std::size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<std::uint8_t>(value >> (8U * i)));
}
void put(Bytes& out, std::span<const std::uint8_t> b) { out.insert(out.end(), b.begin(), b.end()); }

}  // namespace

struct TdxTestSigner::Impl {
  TdxSignerOptions options;
  PkeyPtr root_key, ca_key, pck_key, tcb_key;
  CertPtr root, ca, pck, tcb_signer;
  std::int64_t doc_not_after = 0;

  Bytes qe_report(const std::array<std::uint8_t, 64>& attestation_key, std::span<const std::uint8_t> auth) const {
    Bytes r;
    put(r, options.cpu_svn_components);                 // CPUSVN
    put_le<std::uint32_t>(r, 0);                         // MISCSELECT
    r.resize(48, 0);                                     // reserved, ISVEXTPRODID
    r.push_back(0x11);                                   // ATTRIBUTES (INIT | MODE64BIT)
    r.resize(128, 0);                                    // MRENCLAVE, reserved
    put(r, kQeMrsigner);                                 // MRSIGNER
    r.resize(256, 0);                                    // reserved, CONFIGID
    put_le<std::uint16_t>(r, 2);                         // ISVPRODID
    put_le<std::uint16_t>(r, 4);                         // ISVSVN
    r.resize(320, 0);
    Bytes key_and_auth(attestation_key.begin(), attestation_key.end());
    put(key_and_auth, auth);
    put(r, crypto::sha256(key_and_auth));                // REPORTDATA
    r.resize(tdx::kQeReportSize, 0);
    return r;
  }
};

TdxTestSigner::TdxTestSigner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TdxTestSigner::TdxTestSigner(TdxTestSigner&&) noexcept = default;
TdxTestSigner& TdxTestSigner::operator=(TdxTestSigner&&) noexcept = default;
TdxTestSigner::~TdxTestSigner() = default;

TdxTestSigner TdxTestSigner::create(const TdxSignerOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  auto& o = impl->options;
  if (o.not_before == 0) o.not_before = static_cast<std::int64_t>(std::time(nullptr)) - kDay;
  if (o.not_after == 0) o.not_after = o.not_before + 730 * kDay;
  impl->doc_not_after = o.not_after - kDay;
  impl->root_key = p256_key();
  impl->ca_key = p256_key();
  impl->pck_key = p256_key();
  impl->tcb_key = p256_key();
  impl->root = make_cert({"rvenc test SGX Root CA", impl->root_key.get(), nullptr, nullptr, 1, true, o.not_before,
                          o.not_after + kDay});
  impl->ca = make_cert({"rvenc test SGX PCK Platform CA", impl->ca_key.get(), impl->root.get(), impl->root_key.get(),
                        2, true, o.not_before, o.not_after});
  const Bytes ext = sgx_extension(o);
  impl->pck = make_cert({"rvenc test SGX PCK Certificate", impl->pck_key.get(), impl->ca.get(), impl->ca_key.get(), 3,
                         false, o.not_before, o.not_after, &ext});
  impl->tcb_signer = make_cert({"rvenc test SGX TCB Signing", impl->tcb_key.get(), impl->root.get(),
                                impl->root_key.get(), 4, false, o.not_before, o.not_after});
  return TdxTestSigner(std::move(impl));
}

attestation::Bytes TdxTestSigner::quote(const std::array<std::uint8_t, 64>& report_data,
                                        const TdxQuoteOptions& o) const {
  Bytes q;
  put_le<std::uint16_t>(q, o.version);
  put_le<std::uint16_t>(q, tdx::kAttestationKeyEcdsaP256);
  put_le<std::uint32_t>(q, tdx::kTeeTypeTdx);
  q.resize(12, 0);
  const std::array<std::uint8_t, 16> intel_qe_vendor = {0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9,
                                                        0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07};
  put(q, intel_qe_vendor);
  q.resize(tdx::kHeaderSize, 0);  // user data
  if (o.version == 5) {
    put_le<std::uint16_t>(q, 3);  // TD report 1.5
    put_le<std::uint32_t>(q, static_cast<std::uint32_t>(tdx::kTdReport15Size));
  }
  put(q, o.tee_tcb_svn);
  put(q, o.mrseam);
  q.resize(q.size() + 48 + 8, 0);  // MRSIGNERSEAM (Intel's: zero), SEAMATTRIBUTES
  put(q, o.td_attributes);
  put(q, o.xfam);
  put(q, o.mrtd);
  q.resize(q.size() + 3 * 48, 0);  // MRCONFIGID, MROWNER, MROWNERCONFIG
  for (const auto& r : o.rtmr) put(q, r);
  put(q, report_data);
  if (o.version == 5) {
    put(q, o.tee_tcb_svn);           // TEE_TCB_SVN2
    q.resize(q.size() + 48, 0);      // MRSERVICETD
  }
  const PkeyPtr attestation_key = p256_key();
  const auto signature = sign_raw(attestation_key.get(), q);
  const auto xy = public_xy(attestation_key.get());
  const Bytes auth(32, 0xa5);
  const Bytes qe = impl_->qe_report(xy, auth);
  const auto qe_signature = sign_raw(impl_->pck_key.get(), qe);
  const std::string chain = to_pem(impl_->pck.get()) + to_pem(impl_->ca.get()) + to_pem(impl_->root.get());
  Bytes cert;  // certification data type 6
  put(cert, qe);
  put(cert, qe_signature);
  put_le<std::uint16_t>(cert, static_cast<std::uint16_t>(auth.size()));
  put(cert, auth);
  put_le<std::uint16_t>(cert, tdx::kCertDataPckChain);
  put_le<std::uint32_t>(cert, static_cast<std::uint32_t>(chain.size()));
  cert.insert(cert.end(), chain.begin(), chain.end());
  Bytes sig_data;
  put(sig_data, signature);
  put(sig_data, xy);
  put_le<std::uint16_t>(sig_data, tdx::kCertDataQeReport);
  put_le<std::uint32_t>(sig_data, static_cast<std::uint32_t>(cert.size()));
  put(sig_data, cert);
  put_le<std::uint32_t>(q, static_cast<std::uint32_t>(sig_data.size()));
  put(q, sig_data);
  return q;
}

attestation::Collateral TdxTestSigner::collateral() const {
  const auto& o = impl_->options;
  const std::string issued = iso_time(o.not_before), next = iso_time(impl_->doc_not_after);
  const std::string zero48(96, '0');
  const std::string tcb_info =
      "{\"id\":\"TDX\",\"version\":3,\"issueDate\":\"" + issued + "\",\"nextUpdate\":\"" + next +
      "\",\"fmspc\":\"" + to_hex(o.fmspc) + "\",\"pceId\":\"0000\",\"tcbType\":0,\"tcbEvaluationDataNumber\":17," +
      "\"tdxModule\":{\"mrsigner\":\"" + zero48 + "\",\"attributes\":\"0000000000000000\",\"attributesMask\":" +
      "\"FFFFFFFFFFFFFFFF\"},\"tcbLevels\":[{\"tcb\":{\"sgxtcbcomponents\":" + components(o.cpu_svn_components) +
      ",\"pcesvn\":" + std::to_string(o.pce_svn) + ",\"tdxtcbcomponents\":" + components(o.min_tee_tcb_svn) +
      "},\"tcbDate\":\"" + issued + "\",\"tcbStatus\":\"" + o.tcb_status + "\"}]}";
  const std::string qe_identity =
      "{\"id\":\"TD_QE\",\"version\":2,\"issueDate\":\"" + issued + "\",\"nextUpdate\":\"" + next +
      "\",\"tcbEvaluationDataNumber\":17,\"miscselect\":\"00000000\",\"miscselectMask\":\"FFFFFFFF\"," +
      "\"attributes\":\"11000000000000000000000000000000\",\"attributesMask\":\"FBFFFFFFFFFFFFFF0000000000000000\"," +
      "\"mrsigner\":\"" + to_hex(kQeMrsigner) + "\",\"isvprodid\":2,\"tcbLevels\":[{\"tcb\":{\"isvsvn\":4}," +
      "\"tcbDate\":\"" + issued + "\",\"tcbStatus\":\"" + o.qe_status + "\"}]}";
  const std::string tcb_chain = to_pem(impl_->tcb_signer.get()) + to_pem(impl_->root.get());
  const std::string ca_chain = to_pem(impl_->ca.get()) + to_pem(impl_->root.get());
  const std::string pck_chain = to_pem(impl_->pck.get()) + to_pem(impl_->ca.get());
  const std::string root = to_pem(impl_->root.get());
  attestation::Collateral c;
  c.files["tcbinfo.json"] = signed_json("tcbInfo", tcb_info, impl_->tcb_key.get());
  c.files["qeidentity.json"] = signed_json("enclaveIdentity", qe_identity, impl_->tcb_key.get());
  c.files["tcbinfo_issuer_chain.pem"] = Bytes(tcb_chain.begin(), tcb_chain.end());
  c.files["qeidentity_issuer_chain.pem"] = Bytes(tcb_chain.begin(), tcb_chain.end());
  c.files["pckcrl_issuer_chain.pem"] = Bytes(ca_chain.begin(), ca_chain.end());
  c.files["pck_chain.pem"] = Bytes(pck_chain.begin(), pck_chain.end());
  c.files["trust_root.pem"] = Bytes(root.begin(), root.end());
  c.files["pckcrl.der"] = pck_crl(false);
  c.files["rootcrl.der"] =
      crl_der(impl_->root.get(), impl_->root_key.get(), o.not_before, impl_->doc_not_after, nullptr);
  return c;
}

attestation::TrustAnchors TdxTestSigner::anchors() const { return {{to_pem(impl_->root.get())}}; }

attestation::Bytes TdxTestSigner::pck_crl(bool revoke_pck) const {
  return crl_der(impl_->ca.get(), impl_->ca_key.get(), impl_->options.not_before, impl_->doc_not_after,
                 revoke_pck ? impl_->pck.get() : nullptr);
}

std::int64_t TdxTestSigner::valid_at() const { return impl_->options.not_before + kDay; }
std::int64_t TdxTestSigner::not_after() const { return impl_->doc_not_after; }

}  // namespace rvenc::test
