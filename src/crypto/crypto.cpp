#include "rvenc/crypto/crypto.hpp"

#include <sodium.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <tuple>

namespace rvenc::crypto {

static_assert(kXWingPublicKeyBytes == crypto_kem_xwing_PUBLICKEYBYTES);
static_assert(kXWingCipherTextBytes == crypto_kem_xwing_CIPHERTEXTBYTES);
static_assert(kXWingSharedSecretBytes == crypto_kem_xwing_SHAREDSECRETBYTES);
static_assert(kXWingSeedBytes == crypto_kem_xwing_SEEDBYTES);
static_assert(kXWingSeedBytes == crypto_kem_xwing_SECRETKEYBYTES);
static_assert(kAeadKeyBytes == crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
static_assert(kAeadNonceBytes == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
static_assert(kAeadTagBytes == crypto_aead_xchacha20poly1305_ietf_ABYTES);
static_assert(kEd25519SeedBytes == crypto_sign_ed25519_SEEDBYTES);
static_assert(kEd25519PublicKeyBytes == crypto_sign_ed25519_PUBLICKEYBYTES);
static_assert(kEd25519SignatureBytes == crypto_sign_ed25519_BYTES);
static_assert(64 == crypto_sign_ed25519_SECRETKEYBYTES);
static_assert(32 == crypto_kdf_hkdf_sha256_KEYBYTES);
static_assert(std::tuple_size_v<Sha256Digest> == crypto_hash_sha256_BYTES);
static_assert(std::tuple_size_v<Blake2b256Digest> >= crypto_generichash_BYTES_MIN &&
              std::tuple_size_v<Blake2b256Digest> <= crypto_generichash_BYTES_MAX);
static_assert(std::tuple_size_v<Sha512Digest> == crypto_hash_sha512_BYTES);

namespace {
// A failing libsodium call with valid sizes means a broken library or memory: stop, never continue.
void require(int rc) noexcept {
  if (rc != 0) std::abort();
}
}  // namespace

void ensure_initialized() {
  static const int rc = sodium_init();
  if (rc < 0) std::abort();
}

void secure_wipe(void* data, std::size_t size) noexcept {
  if (data != nullptr && size != 0) sodium_memzero(data, size);
}

bool constant_time_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) noexcept {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

void random_bytes(std::span<std::uint8_t> out) noexcept {
  ensure_initialized();
  if (!out.empty()) randombytes_buf(out.data(), out.size());
}

Nonce random_nonce() { return random_array<kAeadNonceBytes>(); }

namespace {
template <std::size_t N>
struct RandomKey {
  std::array<std::uint8_t, N> key{};
  RandomKey() { random_bytes(key); }
};
const RandomKey<crypto_shorthash_KEYBYTES>& short_hash_key() {
  static const RandomKey<crypto_shorthash_KEYBYTES> key;
  return key;
}
const RandomKey<crypto_shorthash_siphashx24_KEYBYTES>& fingerprint_key() {
  static const RandomKey<crypto_shorthash_siphashx24_KEYBYTES> key;
  return key;
}
}  // namespace

static_assert(kFingerprintBytes == crypto_shorthash_siphashx24_BYTES);

Fingerprint keyed_fingerprint(std::span<const std::uint8_t> bytes) noexcept {
  Fingerprint out{};
  crypto_shorthash_siphashx24(out.data(), bytes.data(), bytes.size(), fingerprint_key().key.data());
  return out;
}

std::size_t KeyedBytesHash::operator()(std::span<const std::uint8_t> bytes) const noexcept {
  std::array<std::uint8_t, crypto_shorthash_BYTES> out{};
  crypto_shorthash(out.data(), bytes.data(), bytes.size(), short_hash_key().key.data());
  std::size_t value = 0;
  std::memcpy(&value, out.data(), sizeof value);
  return value;
}

// --- X-Wing ---------------------------------------------------------------------------------

XWingKeyPair xwing_keypair_from_seed(const XWingSeed& seed) {
  ensure_initialized();
  XWingKeyPair pair;
  require(crypto_kem_xwing_seed_keypair(pair.public_key.data(), pair.seed.data(), seed.data()));
  return pair;
}

XWingKeyPair xwing_generate_keypair() {
  ensure_initialized();
  XWingKeyPair pair;
  require(crypto_kem_xwing_keypair(pair.public_key.data(), pair.seed.data()));
  return pair;
}

Result<Encapsulation> xwing_encapsulate(const XWingPublicKey& public_key) {
  ensure_initialized();
  Encapsulation enc;
  if (crypto_kem_xwing_enc(enc.cipher_text.data(), enc.shared_secret.data(), public_key.data()) != 0) {
    return fail(Errc::invalid_request, "X-Wing public key is not valid");
  }
  return enc;
}

Result<Encapsulation> xwing_encapsulate_deterministic(const XWingPublicKey& public_key,
                                                      std::span<const std::uint8_t, kXWingEncapsSeedBytes> seed) {
  ensure_initialized();
  Encapsulation enc;
  if (crypto_kem_xwing_enc_deterministic(enc.cipher_text.data(), enc.shared_secret.data(), public_key.data(),
                                         seed.data()) != 0) {
    return fail(Errc::invalid_request, "X-Wing public key is not valid");
  }
  return enc;
}

Result<SharedSecret> xwing_decapsulate(const XWingCipherText& cipher_text, const XWingSeed& seed) {
  ensure_initialized();
  SharedSecret shared;
  if (crypto_kem_xwing_dec(shared.data(), cipher_text.data(), seed.data()) != 0) {
    return fail(Errc::decryption_failed, "cipherText does not decapsulate");
  }
  return shared;
}

KeyId key_id(const XWingPublicKey& public_key) {
  const auto digest = sha256(public_key);
  KeyId id;
  std::copy_n(digest.begin(), id.size(), id.begin());
  return id;
}

// --- XChaCha20-Poly1305 ------------------------------------------------------------------------

std::vector<std::uint8_t> aead_seal(std::span<const std::uint8_t, kAeadKeyBytes> key, const Nonce& nonce,
                                    std::span<const std::uint8_t> ad, std::span<const std::uint8_t> plaintext) {
  ensure_initialized();
  std::vector<std::uint8_t> out(plaintext.size() + kAeadTagBytes);
  unsigned long long written = 0;
  require(crypto_aead_xchacha20poly1305_ietf_encrypt(out.data(), &written, plaintext.data(), plaintext.size(),
                                                     ad.data(), ad.size(), nullptr, nonce.data(), key.data()));
  out.resize(static_cast<std::size_t>(written));
  return out;
}

Result<SecureBytes> aead_open(std::span<const std::uint8_t, kAeadKeyBytes> key, const Nonce& nonce,
                              std::span<const std::uint8_t> ad, std::span<const std::uint8_t> ciphertext) {
  ensure_initialized();
  if (ciphertext.size() < kAeadTagBytes) return fail(Errc::decryption_failed, "ciphertext is shorter than its tag");
  // At least one byte so that data() is never null, even for an empty plaintext.
  std::vector<std::uint8_t> out(std::max<std::size_t>(ciphertext.size() - kAeadTagBytes, 1));
  unsigned long long written = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(out.data(), &written, nullptr, ciphertext.data(), ciphertext.size(),
                                                 ad.data(), ad.size(), nonce.data(), key.data()) != 0) {
    return fail(Errc::decryption_failed, "ciphertext does not authenticate");
  }
  SecureBytes result(std::move(out));
  result.truncate(static_cast<std::size_t>(written));
  return result;
}

// --- HKDF-SHA256 ---------------------------------------------------------------------------------

Secret<32> hkdf_extract(std::span<const std::uint8_t> salt, std::span<const std::uint8_t> ikm) {
  ensure_initialized();
  Secret<32> prk;
  static constexpr std::uint8_t kEmpty[1] = {0};
  require(crypto_kdf_hkdf_sha256_extract(prk.data(), salt.data(), salt.size(),
                                         ikm.empty() ? kEmpty : ikm.data(), ikm.size()));
  return prk;
}

void hkdf_expand(const Secret<32>& prk, std::string_view info, std::span<std::uint8_t> out) {
  ensure_initialized();
  if (out.empty()) return;
  require(crypto_kdf_hkdf_sha256_expand(out.data(), out.size(), info.data(), info.size(), prk.data()));
}

// --- Hashes and signatures ---------------------------------------------------------------------

Sha256Digest sha256(std::span<const std::uint8_t> data) {
  ensure_initialized();
  Sha256Digest out;
  require(crypto_hash_sha256(out.data(), data.data(), data.size()));
  return out;
}

Blake2b256Digest blake2b_256(std::span<const std::uint8_t> data) {
  ensure_initialized();
  Blake2b256Digest out;
  require(crypto_generichash(out.data(), out.size(), data.data(), data.size(), nullptr, 0));
  return out;
}

Sha512Digest sha512(std::span<const std::uint8_t> data) {
  ensure_initialized();
  Sha512Digest out;
  require(crypto_hash_sha512(out.data(), data.data(), data.size()));
  return out;
}

Ed25519KeyPair ed25519_keypair_from_seed(const Ed25519Seed& seed) {
  ensure_initialized();
  Ed25519KeyPair pair;
  require(crypto_sign_ed25519_seed_keypair(pair.public_key.data(), pair.secret_key.data(), seed.data()));
  return pair;
}

Ed25519Signature ed25519_sign(const Ed25519KeyPair& key, std::span<const std::uint8_t> message) {
  ensure_initialized();
  Ed25519Signature sig;
  require(crypto_sign_ed25519_detached(sig.data(), nullptr, message.data(), message.size(), key.secret_key.data()));
  return sig;
}

bool ed25519_verify(const Ed25519PublicKey& public_key, std::span<const std::uint8_t> message,
                    const Ed25519Signature& signature) {
  ensure_initialized();
  return crypto_sign_ed25519_verify_detached(signature.data(), message.data(), message.size(), public_key.data()) == 0;
}

// --- Padding -------------------------------------------------------------------------------------

std::vector<std::uint8_t> pad(std::span<const std::uint8_t> data, std::size_t block) {
  ensure_initialized();
  if (block == 0) block = kPadBlockBytes;
  std::vector<std::uint8_t> out(data.size() + block);
  std::copy(data.begin(), data.end(), out.begin());
  std::size_t padded = 0;
  require(sodium_pad(&padded, out.data(), data.size(), block, out.size()));
  out.resize(padded);
  return out;
}

Result<std::size_t> unpadded_size(std::span<const std::uint8_t> padded, std::size_t block) {
  ensure_initialized();
  if (block == 0) block = kPadBlockBytes;
  std::size_t size = 0;
  if (padded.empty() || padded.size() % block != 0 || sodium_unpad(&size, padded.data(), padded.size(), block) != 0) {
    return fail(Errc::decryption_failed, "padding is not valid");
  }
  return size;
}

}  // namespace rvenc::crypto
