// Test-only SEV-SNP signer (snp_signer.hpp).
#include "support/snp_signer.hpp"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <ctime>
#include <stdexcept>
#include <string>
#include <vector>

#include "attestation/x509.hpp"
#include "support/x509_signer.hpp"

namespace rvenc::test {
namespace {

using attestation::Bytes;
using attestation::SnpProduct;
using attestation::SnpSigningKey;
using attestation::x509::CertPtr;
using attestation::x509::PkeyPtr;
using x509_signer::add_extension;
using x509_signer::add_raw_extension;
using x509_signer::to_der;
using x509_signer::to_pem;

void check(bool ok, const char* what) { x509_signer::check(ok, "snp_signer", what); }

// Signs with RSA-PSS, SHA-384, MGF1-SHA-384, 48-byte salt: AMD's ARK/ASK signature scheme.
template <class Sign>
void sign_pss(EVP_PKEY* key, Sign&& sign) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_PKEY_CTX* pkey_ctx = nullptr;
  check(ctx && EVP_DigestSignInit(ctx.get(), &pkey_ctx, EVP_sha384(), nullptr, key) == 1 &&
            EVP_PKEY_CTX_set_rsa_padding(pkey_ctx, RSA_PKCS1_PSS_PADDING) == 1 &&
            EVP_PKEY_CTX_set_rsa_pss_saltlen(pkey_ctx, 48) == 1 &&
            EVP_PKEY_CTX_set_rsa_mgf1_md(pkey_ctx, EVP_sha384()) == 1,
        "RSA-PSS setup");
  check(sign(ctx.get()) > 0, "RSA-PSS signing");
}

Bytes der_integer(std::uint8_t value) { return {0x02, 0x01, value}; }  // values < 0x80 in these tests

Bytes der_ia5(const std::string& text) {
  Bytes out(text.size() + 2);
  out[0] = 0x16;
  out[1] = static_cast<std::uint8_t>(text.size());
  std::copy(text.begin(), text.end(), out.begin() + 2);
  return out;
}

CertPtr make_cert(const std::string& cn, EVP_PKEY* key, X509* issuer, long serial, std::int64_t not_before,
                  std::int64_t not_after) {
  CertPtr cert(X509_new());
  check(cert != nullptr, "X509_new");
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  check(ASN1_TIME_set(X509_getm_notBefore(cert.get()), static_cast<time_t>(not_before)) != nullptr &&
            ASN1_TIME_set(X509_getm_notAfter(cert.get()), static_cast<time_t>(not_after)) != nullptr,
        "setting validity");
  X509_set_pubkey(cert.get(), key);
  X509_NAME* subject = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>("Advanced Micro Devices (rvenc test)"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1,
                             -1, 0);
  X509_set_issuer_name(cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : subject);
  return cert;
}

void store_le32(Bytes& out, std::size_t offset, std::uint32_t value) {
  for (std::size_t i = 0; i < 4; ++i) out[offset + i] = static_cast<std::uint8_t>(value >> (8 * i));
}
void store_le64(Bytes& out, std::size_t offset, std::uint64_t value) {
  for (std::size_t i = 0; i < 8; ++i) out[offset + i] = static_cast<std::uint8_t>(value >> (8 * i));
}
template <std::size_t N>
void store(Bytes& out, std::size_t offset, const std::array<std::uint8_t, N>& value) {
  std::memcpy(out.data() + offset, value.data(), N);
}

std::array<std::uint8_t, 2> cpuid_of(SnpProduct product) {
  switch (product) {
    case SnpProduct::milan: return {0x19, 0x01};
    case SnpProduct::genoa: return {0x19, 0x11};
    case SnpProduct::turin: return {0x1a, 0x02};
  }
  return {0x19, 0x01};
}

}  // namespace

struct SnpTestSigner::Impl {
  SnpSignerOptions options;
  PkeyPtr ark_key, ask_key, leaf_key;
  CertPtr ark, ask, leaf;
};

SnpTestSigner::SnpTestSigner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SnpTestSigner::SnpTestSigner(SnpTestSigner&&) noexcept = default;
SnpTestSigner& SnpTestSigner::operator=(SnpTestSigner&&) noexcept = default;
SnpTestSigner::~SnpTestSigner() = default;

SnpTestSigner SnpTestSigner::create(const SnpSignerOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  auto& o = impl->options;
  if (o.not_before == 0) o.not_before = static_cast<std::int64_t>(std::time(nullptr)) - 86400;
  if (o.not_after == 0) o.not_after = o.not_before + 2 * 365 * 86400;
  const std::string product(attestation::snp_product_name(o.product));
  const bool vlek = o.signing_key == SnpSigningKey::vlek;
  impl->ark_key.reset(EVP_RSA_gen(2048));
  impl->ask_key.reset(EVP_RSA_gen(2048));
  impl->leaf_key.reset(EVP_EC_gen("secp384r1"));
  check(impl->ark_key && impl->ask_key && impl->leaf_key, "key generation");

  impl->ark = make_cert("ARK-" + product, impl->ark_key.get(), nullptr, 1, o.not_before, o.not_after);
  add_extension(impl->ark.get(), impl->ark.get(), NID_basic_constraints, "critical,CA:TRUE");
  add_extension(impl->ark.get(), impl->ark.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  sign_pss(impl->ark_key.get(), [&](EVP_MD_CTX* ctx) { return X509_sign_ctx(impl->ark.get(), ctx); });

  impl->ask = make_cert((vlek ? "SEV-VLEK-" : "SEV-") + product, impl->ask_key.get(), impl->ark.get(), 2,
                        o.not_before, o.not_after);
  add_extension(impl->ask.get(), impl->ark.get(), NID_basic_constraints, "critical,CA:TRUE");
  add_extension(impl->ask.get(), impl->ark.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  sign_pss(impl->ark_key.get(), [&](EVP_MD_CTX* ctx) { return X509_sign_ctx(impl->ask.get(), ctx); });

  impl->leaf = make_cert(vlek ? "SEV-VLEK" : "SEV-VCEK", impl->leaf_key.get(), impl->ask.get(), 3, o.not_before,
                         o.not_after);
  X509* leaf = impl->leaf.get();
  const auto tcb = attestation::decode_snp_tcb(o.tcb, o.product);
  add_raw_extension(leaf, "1.3.6.1.4.1.3704.1.1", der_integer(0));
  add_raw_extension(leaf, "1.3.6.1.4.1.3704.1.2", der_ia5(o.product == SnpProduct::milan ? "Milan-B0" : product));
  add_raw_extension(leaf, "1.3.6.1.4.1.3704.1.3.1", der_integer(tcb.bootloader));
  add_raw_extension(leaf, "1.3.6.1.4.1.3704.1.3.2", der_integer(tcb.tee));
  add_raw_extension(leaf, "1.3.6.1.4.1.3704.1.3.3", der_integer(tcb.snp));
  add_raw_extension(leaf, "1.3.6.1.4.1.3704.1.3.8", der_integer(tcb.microcode));
  if (tcb.fmc) add_raw_extension(leaf, "1.3.6.1.4.1.3704.1.3.9", der_integer(*tcb.fmc));
  if (!vlek) {
    const std::size_t hwid_bytes = o.product == SnpProduct::turin ? 8 : 64;
    add_raw_extension(leaf, "1.3.6.1.4.1.3704.1.4", Bytes(o.chip_id.begin(), o.chip_id.begin() + hwid_bytes));
  }
  sign_pss(impl->ask_key.get(), [&](EVP_MD_CTX* ctx) { return X509_sign_ctx(leaf, ctx); });
  return SnpTestSigner(std::move(impl));
}

Bytes SnpTestSigner::report(const std::array<std::uint8_t, 64>& report_data, const SnpReportOptions& options) const {
  const auto& o = impl_->options;
  Bytes out(attestation::kSnpReportBytes, 0);
  store_le32(out, 0x00, options.version);
  store_le64(out, 0x08, options.policy);
  store_le32(out, 0x34, attestation::kSnpSignatureAlgoEcdsaP384Sha384);
  store(out, 0x38, o.tcb);  // CURRENT_TCB
  store_le32(out, 0x48, o.signing_key == SnpSigningKey::vlek ? (1U << 2) : 0U);
  store(out, 0x50, report_data);
  store(out, 0x90, options.measurement);
  store(out, 0xC0, options.host_data);
  store(out, 0xE0, options.id_key_digest);
  store(out, 0x110, options.author_key_digest);
  store(out, 0x180, options.reported_tcb.value_or(o.tcb));
  if (options.version >= 3) {
    const auto cpuid = cpuid_of(o.product);
    out[0x188] = cpuid[0];
    out[0x189] = cpuid[1];
  }
  auto chip_id = options.chip_id.value_or(o.chip_id);
  if (!options.chip_id && o.product == SnpProduct::turin) std::fill(chip_id.begin() + 8, chip_id.end(), 0);
  store(out, 0x1A0, chip_id);
  store(out, 0x1E0, o.tcb);  // COMMITTED_TCB
  store(out, 0x1F0, o.tcb);  // LAUNCH_TCB

  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  std::size_t der_size = 0;
  check(ctx && EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha384(), nullptr, impl_->leaf_key.get()) == 1 &&
            EVP_DigestSign(ctx.get(), nullptr, &der_size, out.data(), attestation::kSnpSignedBytes) == 1,
        "report signing setup");
  Bytes der(der_size);
  check(EVP_DigestSign(ctx.get(), der.data(), &der_size, out.data(), attestation::kSnpSignedBytes) == 1,
        "report signing");
  const unsigned char* cursor = der.data();
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> sig(
      d2i_ECDSA_SIG(nullptr, &cursor, static_cast<long>(der_size)), ECDSA_SIG_free);
  check(sig != nullptr, "decoding the report signature");
  const int scalar = static_cast<int>(attestation::kSnpSignatureScalarBytes);
  check(BN_bn2lebinpad(ECDSA_SIG_get0_r(sig.get()), out.data() + 0x2A0, scalar) == scalar &&
            BN_bn2lebinpad(ECDSA_SIG_get0_s(sig.get()), out.data() + 0x2E8, scalar) == scalar,
        "writing r and s");
  return out;
}

attestation::Collateral SnpTestSigner::collateral() const {
  attestation::Collateral out;
  const bool vlek = impl_->options.signing_key == SnpSigningKey::vlek;
  out.files.emplace(vlek ? "vlek.der" : "vcek.der", to_der(impl_->leaf.get()));
  const std::string pem = to_pem(impl_->ask.get()) + to_pem(impl_->ark.get());
  out.files.emplace("ask_ark.pem", Bytes(pem.begin(), pem.end()));
  return out;
}

attestation::TrustAnchors SnpTestSigner::anchors() const { return {{to_pem(impl_->ark.get())}}; }

Bytes SnpTestSigner::crl(bool revoke_ask) const {
  std::unique_ptr<X509_CRL, decltype(&X509_CRL_free)> crl(X509_CRL_new(), X509_CRL_free);
  std::unique_ptr<ASN1_TIME, decltype(&ASN1_TIME_free)> last(ASN1_TIME_set(nullptr, impl_->options.not_before),
                                                             ASN1_TIME_free);
  std::unique_ptr<ASN1_TIME, decltype(&ASN1_TIME_free)> next(ASN1_TIME_set(nullptr, impl_->options.not_after),
                                                             ASN1_TIME_free);
  check(crl && last && next && X509_CRL_set_version(crl.get(), 1) == 1 &&
            X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(impl_->ark.get())) == 1 &&
            X509_CRL_set1_lastUpdate(crl.get(), last.get()) == 1 &&
            X509_CRL_set1_nextUpdate(crl.get(), next.get()) == 1,
        "building the CRL");
  if (revoke_ask) {
    X509_REVOKED* revoked = X509_REVOKED_new();
    check(revoked != nullptr &&
              X509_REVOKED_set_serialNumber(revoked, X509_get_serialNumber(impl_->ask.get())) == 1 &&
              X509_REVOKED_set_revocationDate(revoked, last.get()) == 1 &&
              X509_CRL_add0_revoked(crl.get(), revoked) == 1,
          "revoking the ASK");
    X509_CRL_sort(crl.get());
  }
  sign_pss(impl_->ark_key.get(), [&](EVP_MD_CTX* ctx) { return X509_CRL_sign_ctx(crl.get(), ctx); });
  const int size = i2d_X509_CRL(crl.get(), nullptr);
  check(size > 0, "encoding the CRL");
  Bytes out(static_cast<std::size_t>(size));
  unsigned char* cursor = out.data();
  i2d_X509_CRL(crl.get(), &cursor);
  return out;
}

std::int64_t SnpTestSigner::valid_at() const { return impl_->options.not_before + 3600; }
std::int64_t SnpTestSigner::not_after() const { return impl_->options.not_after; }

}  // namespace rvenc::test
