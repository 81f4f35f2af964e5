// OpenSSL 3 helpers of the attestation module (x509.hpp).
#include "x509.hpp"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <climits>
#include <ctime>

namespace rvenc::attestation::x509 {
namespace {

// Clears OpenSSL's thread-local error queue when a helper returns, whatever the path.
struct ClearErrorsOnExit {
  ClearErrorsOnExit() { ERR_clear_error(); }
  ~ClearErrorsOnExit() { ERR_clear_error(); }
  ClearErrorsOnExit(const ClearErrorsOnExit&) = delete;
  ClearErrorsOnExit& operator=(const ClearErrorsOnExit&) = delete;
};

struct BioFree {
  void operator()(BIO* bio) const noexcept { BIO_free(bio); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

// A read-only memory BIO over `bytes`; nullptr when the size does not fit an int.
BioPtr memory_bio(std::span<const std::uint8_t> bytes) {
  if (bytes.size() > static_cast<std::size_t>(INT_MAX)) return nullptr;
  return BioPtr(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
}

bool looks_like_pem(std::span<const std::uint8_t> bytes) {
  constexpr std::string_view kBegin = "-----BEGIN";
  std::size_t i = 0;
  while (i < bytes.size() && (bytes[i] == ' ' || bytes[i] == '\t' || bytes[i] == '\r' || bytes[i] == '\n')) ++i;
  if (bytes.size() - i < kBegin.size()) return false;
  return std::string_view(reinterpret_cast<const char*>(bytes.data() + i), kBegin.size()) == kBegin;
}

std::optional<std::int64_t> asn1_time_seconds(const ASN1_TIME* time) {
  if (time == nullptr) return std::nullopt;
  std::tm tm{};
  if (ASN1_TIME_to_tm(time, &tm) != 1) return std::nullopt;
  return static_cast<std::int64_t>(timegm(&tm));
}

Check check_of_verify_error(int error) {
  switch (error) {
    case X509_V_ERR_CERT_NOT_YET_VALID:
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
    case X509_V_ERR_CRL_HAS_EXPIRED:
      return Check::expired;
    case X509_V_ERR_CERT_REVOKED:
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
    case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
    case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
    case X509_V_ERR_DIFFERENT_CRL_SCOPE:
    case X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION:
    case X509_V_ERR_CRL_PATH_VALIDATION_ERROR:
      return Check::crl;
    default:
      return Check::cert_chain;
  }
}

// Accepts "no CRL for this certificate's issuer" (CrlPolicy::where_issued); every other verdict
// of OpenSSL stands.
int accept_missing_crl(int ok, X509_STORE_CTX* ctx) {
  if (ok == 0 && X509_STORE_CTX_get_error(ctx) == X509_V_ERR_UNABLE_TO_GET_CRL) return 1;
  return ok;
}

struct StoreFree {
  void operator()(X509_STORE* store) const noexcept { X509_STORE_free(store); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* ctx) const noexcept { X509_STORE_CTX_free(ctx); }
};
struct CertStackFree {
  void operator()(STACK_OF(X509) * stack) const noexcept { sk_X509_free(stack); }  // not the certs
};
struct CrlStackFree {
  void operator()(STACK_OF(X509_CRL) * stack) const noexcept { sk_X509_CRL_free(stack); }
};

std::unexpected<Failure> chain_failure(X509_STORE_CTX* ctx, std::string_view what) {
  const int error = X509_STORE_CTX_get_error(ctx);
  const X509* cert = X509_STORE_CTX_get_current_cert(ctx);
  std::string detail(what);
  detail += ": certificate '";
  detail += cert != nullptr ? subject_cn(cert) : std::string("?");
  detail += "' (depth " + std::to_string(X509_STORE_CTX_get_error_depth(ctx)) + "): ";
  detail += X509_verify_cert_error_string(error);
  return fail(check_of_verify_error(error), detail);
}

}  // namespace

Outcome<Certs> parse_pem_certs(std::span<const std::uint8_t> pem, std::string_view what) {
  ClearErrorsOnExit clear;
  const auto bio = memory_bio(pem);
  if (!bio) return fail(Check::malformed, std::string(what) + ": cannot read the PEM bundle");
  Certs certs;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) certs.emplace_back(cert);
  const unsigned long error = ERR_peek_last_error();
  const bool clean_end =
      error == 0 || (ERR_GET_LIB(error) == ERR_LIB_PEM && ERR_GET_REASON(error) == PEM_R_NO_START_LINE);
  if (!clean_end) return fail(Check::malformed, std::string(what) + ": a PEM certificate does not parse");
  if (certs.empty()) return fail(Check::malformed, std::string(what) + ": no PEM certificate");
  return certs;
}

Outcome<CertPtr> parse_der_cert(std::span<const std::uint8_t> der, std::string_view what) {
  ClearErrorsOnExit clear;
  if (der.empty() || der.size() > static_cast<std::size_t>(INT_MAX)) {
    return fail(Check::malformed, std::string(what) + ": empty or oversized DER certificate");
  }
  const unsigned char* cursor = der.data();
  CertPtr cert(d2i_X509(nullptr, &cursor, static_cast<long>(der.size())));
  if (!cert) return fail(Check::malformed, std::string(what) + ": the DER certificate does not parse");
  if (cursor != der.data() + der.size()) {
    return fail(Check::malformed, std::string(what) + ": trailing bytes after the DER certificate");
  }
  return cert;
}

Outcome<CrlPtr> parse_crl(std::span<const std::uint8_t> bytes, std::string_view what) {
  ClearErrorsOnExit clear;
  if (bytes.empty() || bytes.size() > static_cast<std::size_t>(INT_MAX)) {
    return fail(Check::malformed, std::string(what) + ": empty or oversized CRL");
  }
  CrlPtr crl;
  if (looks_like_pem(bytes)) {
    const auto bio = memory_bio(bytes);
    if (bio) crl.reset(PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
  } else {
    const unsigned char* cursor = bytes.data();
    crl.reset(d2i_X509_CRL(nullptr, &cursor, static_cast<long>(bytes.size())));
    if (crl && cursor != bytes.data() + bytes.size()) {
      return fail(Check::malformed, std::string(what) + ": trailing bytes after the DER CRL");
    }
  }
  if (!crl) return fail(Check::malformed, std::string(what) + ": the CRL does not parse");
  return crl;
}

Outcome<Certs> parse_anchors(const TrustAnchors& anchors) {
  Certs out;
  for (const auto& pem : anchors.pem_roots) {
    auto certs = parse_pem_certs(
        std::span(reinterpret_cast<const std::uint8_t*>(pem.data()), pem.size()), "trust anchor");
    if (!certs) return std::unexpected(certs.error());
    for (auto& cert : *certs) {
      ClearErrorsOnExit clear;
      if (X509_self_signed(cert.get(), 0) != 1) {
        return fail(Check::malformed, "trust anchor '" + subject_cn(cert.get()) + "' is not a self-issued root");
      }
      out.push_back(std::move(cert));
    }
  }
  if (out.empty()) return fail(Check::malformed, "no trust anchor given");
  return out;
}

Outcome<Certs> verify_chain(const ChainInput& input) {
  ClearErrorsOnExit clear;
  if (input.leaf == nullptr) return fail(Check::malformed, std::string(input.what) + ": no leaf certificate");
  if (X509_check_ca(input.leaf) != 0) {
    return fail(Check::cert_chain,
                std::string(input.what) + ": the leaf '" + subject_cn(input.leaf) + "' is a CA certificate");
  }
  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> ctx(X509_STORE_CTX_new());
  std::unique_ptr<STACK_OF(X509), CertStackFree> untrusted(sk_X509_new_null());
  std::unique_ptr<STACK_OF(X509_CRL), CrlStackFree> crls(sk_X509_CRL_new_null());
  if (!store || !ctx || !untrusted || !crls) return fail(Check::cert_chain, "out of memory");
  for (const auto& anchor : input.anchors) {
    if (X509_STORE_add_cert(store.get(), anchor.get()) != 1) return fail(Check::cert_chain, "cannot add an anchor");
  }
  for (const auto& cert : input.intermediates) {
    if (sk_X509_push(untrusted.get(), cert.get()) <= 0) return fail(Check::cert_chain, "out of memory");
  }
  for (const auto& crl : input.crls) {
    if (sk_X509_CRL_push(crls.get(), crl.get()) <= 0) return fail(Check::cert_chain, "out of memory");
  }
  if (X509_STORE_CTX_init(ctx.get(), store.get(), input.leaf, untrusted.get()) != 1) {
    return fail(Check::cert_chain, "cannot start chain verification");
  }
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_time(param, static_cast<time_t>(input.at));
  if (!input.crls.empty()) {
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    X509_STORE_CTX_set0_crls(ctx.get(), crls.get());
    if (input.crl_policy == CrlPolicy::where_issued) X509_STORE_CTX_set_verify_cb(ctx.get(), accept_missing_crl);
  }
  if (X509_verify_cert(ctx.get()) != 1) return chain_failure(ctx.get(), input.what);
  Certs chain;
  STACK_OF(X509)* verified = X509_STORE_CTX_get0_chain(ctx.get());
  for (int i = 0; i < sk_X509_num(verified); ++i) {
    X509* cert = sk_X509_value(verified, i);
    X509_up_ref(cert);
    chain.emplace_back(cert);
  }
  return chain;
}

Outcome<void> verify_ecdsa_raw(EVP_PKEY* key, const EVP_MD* md, std::span<const std::uint8_t> message,
                               std::span<const std::uint8_t> r_be, std::span<const std::uint8_t> s_be,
                               std::string_view what) {
  ClearErrorsOnExit clear;
  constexpr std::size_t kMaxScalar = 66;  // P-521
  if (key == nullptr || EVP_PKEY_get_base_id(key) != EVP_PKEY_EC) {
    return fail(Check::signature, std::string(what) + ": the signing key is not an EC key");
  }
  const auto strip = [](std::span<const std::uint8_t> v) {
    while (!v.empty() && v.front() == 0) v = v.subspan(1);
    return v;
  };
  r_be = strip(r_be);
  s_be = strip(s_be);
  if (r_be.empty() || s_be.empty() || r_be.size() > kMaxScalar || s_be.size() > kMaxScalar) {
    return fail(Check::signature, std::string(what) + ": r or s has a wrong size");
  }
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> sig(ECDSA_SIG_new(), ECDSA_SIG_free);
  BIGNUM* r = BN_bin2bn(r_be.data(), static_cast<int>(r_be.size()), nullptr);
  BIGNUM* s = BN_bin2bn(s_be.data(), static_cast<int>(s_be.size()), nullptr);
  if (!sig || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return fail(Check::signature, std::string(what) + ": cannot build the ECDSA signature");
  }
  const int der_size = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (der_size <= 0) return fail(Check::signature, std::string(what) + ": cannot encode the ECDSA signature");
  std::vector<unsigned char> der(static_cast<std::size_t>(der_size));
  unsigned char* out = der.data();
  i2d_ECDSA_SIG(sig.get(), &out);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md_ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!md_ctx || EVP_DigestVerifyInit(md_ctx.get(), nullptr, md, nullptr, key) != 1 ||
      EVP_DigestVerify(md_ctx.get(), der.data(), der.size(), message.data(), message.size()) != 1) {
    return fail(Check::signature, std::string(what) + ": the ECDSA signature does not verify");
  }
  return {};
}

Outcome<PkeyPtr> ec_public_key_from_xy(int curve_nid, std::span<const std::uint8_t> xy, std::string_view what) {
  ClearErrorsOnExit clear;
  const std::size_t field = curve_nid == NID_X9_62_prime256v1 ? 32 : curve_nid == NID_secp384r1 ? 48 : 0;
  if (field == 0) return fail(Check::malformed, std::string(what) + ": unsupported curve");
  if (xy.size() != 2 * field) {
    return fail(Check::malformed, std::string(what) + ": an EC public key of " + std::to_string(xy.size()) +
                                      " bytes (expected " + std::to_string(2 * field) + ")");
  }
  std::vector<unsigned char> point(1 + xy.size());
  point[0] = POINT_CONVERSION_UNCOMPRESSED;
  std::copy(xy.begin(), xy.end(), point.begin() + 1);
  std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> build(OSSL_PARAM_BLD_new(), OSSL_PARAM_BLD_free);
  if (!build ||
      OSSL_PARAM_BLD_push_utf8_string(build.get(), OSSL_PKEY_PARAM_GROUP_NAME, OBJ_nid2sn(curve_nid), 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(build.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) != 1) {
    return fail(Check::malformed, std::string(what) + ": cannot build the EC key");
  }
  std::unique_ptr<OSSL_PARAM, decltype(&OSSL_PARAM_free)> params(OSSL_PARAM_BLD_to_param(build.get()), OSSL_PARAM_free);
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr),
                                                                  EVP_PKEY_CTX_free);
  EVP_PKEY* raw = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return fail(Check::malformed, std::string(what) + ": the EC public key is not a point of the curve");
  }
  PkeyPtr key(raw);
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> check(EVP_PKEY_CTX_new_from_pkey(nullptr, raw, nullptr),
                                                                    EVP_PKEY_CTX_free);
  if (!check || EVP_PKEY_public_check(check.get()) != 1) {
    return fail(Check::malformed, std::string(what) + ": the EC public key is not a point of the curve");
  }
  return key;
}

Sha384Digest sha384(std::span<const std::uint8_t> data) {
  Sha384Digest digest{};
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), digest.data(), &size, EVP_sha384(), nullptr) != 1 ||
      size != digest.size()) {
    ERR_clear_error();
    digest.fill(0);  // never reached with OpenSSL's default provider; a zero digest verifies nothing
  }
  return digest;
}

std::string subject_cn(const X509* cert) {
  const X509_NAME* name = X509_get_subject_name(cert);
  const int index = name == nullptr ? -1 : X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (index < 0) return "?";
  const ASN1_STRING* value = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
  const unsigned char* data = ASN1_STRING_get0_data(value);
  const int length = ASN1_STRING_length(value);
  std::string out;
  constexpr int kMaxShown = 64;
  for (int i = 0; i < length && i < kMaxShown; ++i) {
    const auto c = static_cast<char>(data[i]);
    out += (c >= 0x20 && c < 0x7f) ? c : '?';  // never control characters into logs
  }
  return out.empty() ? "?" : out;
}

std::optional<std::int64_t> cert_not_after(const X509* cert) { return asn1_time_seconds(X509_get0_notAfter(cert)); }
std::optional<std::int64_t> cert_not_before(const X509* cert) { return asn1_time_seconds(X509_get0_notBefore(cert)); }
std::optional<std::int64_t> crl_next_update(const X509_CRL* crl) {
  return asn1_time_seconds(X509_CRL_get0_nextUpdate(crl));
}

std::optional<std::vector<std::uint8_t>> extension_by_oid(const X509* cert, std::string_view oid) {
  ClearErrorsOnExit clear;
  std::unique_ptr<ASN1_OBJECT, decltype(&ASN1_OBJECT_free)> object(OBJ_txt2obj(std::string(oid).c_str(), 1),
                                                                   ASN1_OBJECT_free);
  if (!object) return std::nullopt;
  const int index = X509_get_ext_by_OBJ(cert, object.get(), -1);
  if (index < 0 || X509_get_ext_by_OBJ(cert, object.get(), index) >= 0) return std::nullopt;
  const ASN1_OCTET_STRING* data = X509_EXTENSION_get_data(X509_get_ext(cert, index));
  if (data == nullptr) return std::nullopt;
  const unsigned char* bytes = ASN1_STRING_get0_data(data);
  return std::vector<std::uint8_t>(bytes, bytes + ASN1_STRING_length(data));
}

std::optional<std::uint64_t> der_uint(std::span<const std::uint8_t> der) {
  ClearErrorsOnExit clear;
  if (der.empty() || der.size() > 32) return std::nullopt;
  const unsigned char* cursor = der.data();
  std::unique_ptr<ASN1_INTEGER, decltype(&ASN1_INTEGER_free)> value(
      d2i_ASN1_INTEGER(nullptr, &cursor, static_cast<long>(der.size())), ASN1_INTEGER_free);
  std::uint64_t out = 0;
  if (!value || cursor != der.data() + der.size() || ASN1_INTEGER_get_uint64(&out, value.get()) != 1) {
    return std::nullopt;
  }
  return out;
}

std::optional<std::string> der_ia5_string(std::span<const std::uint8_t> der) {
  ClearErrorsOnExit clear;
  if (der.empty() || der.size() > 4096) return std::nullopt;
  const unsigned char* cursor = der.data();
  std::unique_ptr<ASN1_IA5STRING, decltype(&ASN1_IA5STRING_free)> value(
      d2i_ASN1_IA5STRING(nullptr, &cursor, static_cast<long>(der.size())), ASN1_IA5STRING_free);
  if (!value || cursor != der.data() + der.size()) return std::nullopt;
  const unsigned char* bytes = ASN1_STRING_get0_data(value.get());
  return std::string(reinterpret_cast<const char*>(bytes), static_cast<std::size_t>(ASN1_STRING_length(value.get())));
}

}  // namespace rvenc::attestation::x509

namespace rvenc::attestation {

Outcome<std::string> certificate_pem(std::span<const std::uint8_t> der) {
  auto cert = x509::parse_der_cert(der, "certificate");
  if (!cert) return std::unexpected(cert.error());
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  char* data = nullptr;
  if (!bio || PEM_write_bio_X509(bio.get(), cert->get()) != 1) {
    ERR_clear_error();
    return fail(Check::malformed, "certificate: PEM encoding failed");
  }
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(size));
}

}  // namespace rvenc::attestation
