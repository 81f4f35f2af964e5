// Test-only X.509 building blocks of the attestation test signers (x509_signer.hpp).
#include "support/x509_signer.hpp"

#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <memory>
#include <stdexcept>

namespace rvenc::test::x509_signer {

void check(bool ok, std::string_view who, std::string_view what) {
  if (!ok) {
    ERR_clear_error();
    throw std::runtime_error(std::string(who) + ": " + std::string(what) + " failed");
  }
}

void add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &context, nid, value);
  check(extension != nullptr && X509_add_ext(cert, extension, -1) == 1, "x509_signer", "adding an extension");
  X509_EXTENSION_free(extension);
}

void add_raw_extension(X509* cert, const char* oid, const attestation::Bytes& value) {
  std::unique_ptr<ASN1_OBJECT, decltype(&ASN1_OBJECT_free)> object(OBJ_txt2obj(oid, 1), ASN1_OBJECT_free);
  std::unique_ptr<ASN1_OCTET_STRING, decltype(&ASN1_OCTET_STRING_free)> data(ASN1_OCTET_STRING_new(),
                                                                             ASN1_OCTET_STRING_free);
  check(object && data && ASN1_OCTET_STRING_set(data.get(), value.data(), static_cast<int>(value.size())) == 1,
        "x509_signer", std::string("building extension ") + oid);
  X509_EXTENSION* extension = X509_EXTENSION_create_by_OBJ(nullptr, object.get(), 0, data.get());
  check(extension != nullptr && X509_add_ext(cert, extension, -1) == 1, "x509_signer",
        std::string("adding extension ") + oid);
  X509_EXTENSION_free(extension);
}

attestation::Bytes to_der(X509* cert) {
  const int size = i2d_X509(cert, nullptr);
  check(size > 0, "x509_signer", "encoding a certificate");
  attestation::Bytes out(static_cast<std::size_t>(size));
  unsigned char* cursor = out.data();
  i2d_X509(cert, &cursor);
  return out;
}

std::string to_pem(X509* cert) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  check(bio && PEM_write_bio_X509(bio.get(), cert) == 1, "x509_signer", "PEM encoding");
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(size));
}

}  // namespace rvenc::test::x509_signer
