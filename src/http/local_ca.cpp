// The local test CA (local_ca.hpp) on OpenSSL 3's X509 and EVP APIs.
#include "rvenc/http/local_ca.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <memory>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace rvenc::http {
namespace {

namespace fs = std::filesystem;

struct Free {
  void operator()(X509* p) const { X509_free(p); }
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(FILE* p) const { std::fclose(p); }
  void operator()(BIGNUM* p) const { BN_free(p); }
};
using X509Ptr = std::unique_ptr<X509, Free>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Free>;

constexpr int kSerialBytes = 16;
// A server certificate closer than this to its end is issued anew.
constexpr std::chrono::hours kRenewBefore{24 * 30};
constexpr std::chrono::hours kCaValidity{24 * 3650};

std::string openssl_reason() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  char text[256];
  ERR_error_string_n(code, text, sizeof text);
  return text;
}

// `what` failed: internal_error with OpenSSL's reason.
std::unexpected<Error> ssl_fail(const std::string& what) { return fail(Errc::internal_error, what + ": " + openssl_reason()); }

Status add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return ssl_fail("certificate extension " + value);
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (ok != 1) return ssl_fail("certificate extension " + value);
  return {};
}

// A certificate for `key` named CN=`name`, valid as `request` says, with a random serial (not signed yet).
Result<X509Ptr> new_certificate(EVP_PKEY* key, const std::string& name, std::chrono::seconds not_before_offset,
                                std::chrono::seconds valid_for) {
  X509Ptr cert(X509_new());
  unsigned char serial_bytes[kSerialBytes];
  if (!cert || RAND_bytes(serial_bytes, sizeof serial_bytes) != 1) return ssl_fail("new certificate");
  serial_bytes[0] &= 0x7F;  // a positive serial
  std::unique_ptr<BIGNUM, Free> serial(BN_bin2bn(serial_bytes, sizeof serial_bytes, nullptr));
  if (!serial || BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr)
    return ssl_fail("certificate serial");
  X509_set_version(cert.get(), 2);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), static_cast<long>(not_before_offset.count()));
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>((not_before_offset + valid_for).count()));
  X509_set_pubkey(cert.get(), key);
  X509_NAME* subject = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("rvenc local test"), -1,
                             -1, 0);
  if (X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(name.c_str()),
                                 -1, -1, 0) != 1)
    return ssl_fail("certificate name " + name);
  return cert;
}

// Writes `write(FILE*)` to `path` through a temporary file of mode `mode`, then renames it.
template <class Write>
Status write_pem(const fs::path& path, mode_t mode, Write write) {
  const fs::path temporary = path.string() + ".tmp";
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return fail(Errc::internal_error, "cannot write " + path.string());
  std::unique_ptr<FILE, Free> file(::fdopen(fd, "w"));
  if (!file) {
    ::close(fd);
    return fail(Errc::internal_error, "cannot write " + path.string());
  }
  const bool written = write(file.get()) == 1;
  const bool closed = std::fclose(file.release()) == 0;
  std::error_code ec;
  if (written && closed) fs::rename(temporary, path, ec);
  if (!written || !closed || ec) {
    fs::remove(temporary, ec);
    return written ? fail(Errc::internal_error, "cannot write " + path.string()) : ssl_fail("cannot write " + path.string());
  }
  return {};
}

// Signs `cert` with `key` and writes both files.
Status sign_and_write(X509* cert, EVP_PKEY* signer, EVP_PKEY* key, const fs::path& cert_file, const fs::path& key_file) {
  if (X509_sign(cert, signer, EVP_sha256()) <= 0) return ssl_fail("signing " + cert_file.string());
  if (auto ok = write_pem(key_file, 0600, [key](FILE* f) {
        return PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
      });
      !ok)
    return ok;
  return write_pem(cert_file, 0644, [cert](FILE* f) { return PEM_write_X509(f, cert); });
}

Result<X509Ptr> read_cert(const fs::path& path) {
  std::unique_ptr<FILE, Free> file(std::fopen(path.c_str(), "r"));
  if (!file) return fail(Errc::internal_error, "cannot read " + path.string());
  X509Ptr cert(PEM_read_X509(file.get(), nullptr, nullptr, nullptr));
  if (!cert) return ssl_fail(path.string() + " holds no certificate");
  return cert;
}

Result<KeyPtr> read_key(const fs::path& path) {
  std::unique_ptr<FILE, Free> file(std::fopen(path.c_str(), "r"));
  if (!file) return fail(Errc::internal_error, "cannot read " + path.string());
  KeyPtr key(PEM_read_PrivateKey(file.get(), nullptr, nullptr, nullptr));
  if (!key) return ssl_fail(path.string() + " holds no private key");
  return key;
}

// Whether `cert` is still valid `margin` from now.
bool valid_for_at_least(X509* cert, std::chrono::seconds margin) {
  time_t then = std::time(nullptr) + static_cast<time_t>(margin.count());
  return X509_cmp_time(X509_get0_notAfter(cert), &then) > 0;
}

// The server certificate in `cert_file` is usable: signed by `ca`, not expiring soon.
bool server_cert_usable(const fs::path& cert_file, const fs::path& key_file, X509* ca) {
  if (!fs::exists(key_file)) return false;
  auto cert = read_cert(cert_file);
  if (!cert) return false;
  KeyPtr ca_public(X509_get_pubkey(ca));
  return ca_public && X509_verify(cert->get(), ca_public.get()) == 1 && valid_for_at_least(cert->get(), kRenewBefore);
}

}  // namespace

Status make_local_ca(const fs::path& cert_file, const fs::path& key_file, const std::string& name,
                     std::chrono::seconds valid_for) {
  KeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return ssl_fail("CA key");
  auto cert = new_certificate(key.get(), name, std::chrono::seconds(-60), valid_for);
  if (!cert) return std::unexpected(cert.error());
  X509* x = cert->get();
  X509_set_issuer_name(x, X509_get_subject_name(x));
  for (auto [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                            std::pair{NID_key_usage, "critical,keyCertSign,cRLSign"},
                            std::pair{NID_subject_key_identifier, "hash"}}) {
    if (auto ok = add_extension(x, x, nid, value); !ok) return ok;
  }
  return sign_and_write(x, key.get(), key.get(), cert_file, key_file);
}

Status issue_server_certificate(const fs::path& ca_cert_file, const fs::path& ca_key_file, const fs::path& cert_file,
                                const fs::path& key_file, const CertificateRequest& request) {
  auto ca = read_cert(ca_cert_file);
  if (!ca) return std::unexpected(ca.error());
  auto ca_key = read_key(ca_key_file);
  if (!ca_key) return std::unexpected(ca_key.error());
  KeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return ssl_fail("server key");
  auto cert = new_certificate(key.get(), request.common_name, request.not_before_offset, request.valid_for);
  if (!cert) return std::unexpected(cert.error());
  X509* x = cert->get();
  X509_set_issuer_name(x, X509_get_subject_name(ca->get()));
  std::string names;
  for (const auto& dns : request.dns_names) names += (names.empty() ? "" : ",") + std::string("DNS:") + dns;
  for (const auto& ip : request.ip_addresses) names += (names.empty() ? "" : ",") + std::string("IP:") + ip;
  std::vector<std::pair<int, std::string>> extensions{{NID_basic_constraints, "critical,CA:FALSE"},
                                                      {NID_key_usage, "critical,digitalSignature"},
                                                      {NID_ext_key_usage, "serverAuth"},
                                                      {NID_authority_key_identifier, "keyid:always"}};
  if (!names.empty()) extensions.emplace_back(NID_subject_alt_name, names);
  for (const auto& [nid, value] : extensions) {
    if (auto ok = add_extension(x, ca->get(), nid, value); !ok) return ok;
  }
  return sign_and_write(x, ca_key->get(), key.get(), cert_file, key_file);
}

Result<LocalTlsFiles> ensure_local_tls(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return fail(Errc::internal_error, "cannot create " + dir.string() + ": " + ec.message());
  fs::permissions(dir, fs::perms::owner_all, ec);
  LocalTlsFiles files{dir / "ca.pem", dir / "server.pem", dir / "server.key", false};
  const fs::path ca_key = dir / "ca.key";
  auto ca = fs::exists(ca_key) ? read_cert(files.ca_cert) : Result<X509Ptr>(fail(Errc::internal_error, "no CA"));
  if (!ca || !valid_for_at_least(ca->get(), kRenewBefore)) {
    if (auto made = make_local_ca(files.ca_cert, ca_key, "rvenc local test CA", kCaValidity); !made)
      return std::unexpected(made.error());
    files.new_ca = true;
    ca = read_cert(files.ca_cert);
    if (!ca) return std::unexpected(ca.error());
  }
  if (!server_cert_usable(files.cert, files.key, ca->get())) {
    if (auto issued = issue_server_certificate(files.ca_cert, ca_key, files.cert, files.key, CertificateRequest{});
        !issued)
      return std::unexpected(issued.error());
  }
  return files;
}

}  // namespace rvenc::http
