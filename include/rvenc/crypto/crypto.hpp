// Thin, typed wrappers over libsodium: X-Wing, XChaCha20-Poly1305, HKDF-SHA256, SHA-2,
// Ed25519, ISO/IEC 7816-4 padding, randomness. No primitive is implemented here.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rvenc/common/error.hpp"
#include "rvenc/crypto/secret.hpp"

namespace rvenc::crypto {

// Sizes from libsodium's constants (static_asserts in crypto.cpp keep them in step).
inline constexpr std::size_t kXWingPublicKeyBytes = 1216;
inline constexpr std::size_t kXWingCipherTextBytes = 1120;
inline constexpr std::size_t kXWingSharedSecretBytes = 32;
inline constexpr std::size_t kXWingSeedBytes = 32;
inline constexpr std::size_t kXWingEncapsSeedBytes = 64;
inline constexpr std::size_t kKeyIdBytes = 8;
inline constexpr std::size_t kAeadKeyBytes = 32;
inline constexpr std::size_t kAeadNonceBytes = 24;
inline constexpr std::size_t kAeadTagBytes = 16;
inline constexpr std::size_t kEd25519SeedBytes = 32;
inline constexpr std::size_t kEd25519PublicKeyBytes = 32;
inline constexpr std::size_t kEd25519SignatureBytes = 64;
inline constexpr std::size_t kPadBlockBytes = 64;

using XWingPublicKey = std::array<std::uint8_t, kXWingPublicKeyBytes>;
using XWingCipherText = std::array<std::uint8_t, kXWingCipherTextBytes>;
using XWingSeed = Secret<kXWingSeedBytes>;
using SharedSecret = Secret<kXWingSharedSecretBytes>;
using AeadKey = Secret<kAeadKeyBytes>;
using Nonce = std::array<std::uint8_t, kAeadNonceBytes>;
using KeyId = std::array<std::uint8_t, kKeyIdBytes>;
using Sha256Digest = std::array<std::uint8_t, 32>;
using Sha512Digest = std::array<std::uint8_t, 64>;
using Blake2b256Digest = std::array<std::uint8_t, 32>;
using Ed25519Seed = Secret<kEd25519SeedBytes>;
using Ed25519PublicKey = std::array<std::uint8_t, kEd25519PublicKeyBytes>;
using Ed25519Signature = std::array<std::uint8_t, kEd25519SignatureBytes>;

// Calls sodium_init once (thread-safe); every function below calls it, so callers need not.
void ensure_initialized();

void random_bytes(std::span<std::uint8_t> out) noexcept;
template <std::size_t N>
[[nodiscard]] std::array<std::uint8_t, N> random_array() {
  std::array<std::uint8_t, N> out;
  random_bytes(out);
  return out;
}
[[nodiscard]] Nonce random_nonce();

// Keyed (SipHash, random per-process key) hash of byte strings for hash tables, so attacker-chosen
// nonces, ciphertexts or API keys cannot flood one bucket.
struct KeyedBytesHash {
  [[nodiscard]] std::size_t operator()(std::span<const std::uint8_t> bytes) const noexcept;
  template <std::size_t N>
  [[nodiscard]] std::size_t operator()(const std::array<std::uint8_t, N>& bytes) const noexcept {
    return (*this)(std::span<const std::uint8_t>(bytes));
  }
};

// A keyed 128-bit fingerprint (SipHash-128, random per-process key) of a byte string: a
// compact stand-in for the string in sets that only ask "seen before?" (collisions: 2^-128 per
// pair, and without the key no one can aim for one).
inline constexpr std::size_t kFingerprintBytes = 16;
using Fingerprint = std::array<std::uint8_t, kFingerprintBytes>;
[[nodiscard]] Fingerprint keyed_fingerprint(std::span<const std::uint8_t> bytes) noexcept;

// --- X-Wing KEM -------------------------------------------------------------------------
struct XWingKeyPair {
  XWingPublicKey public_key;
  XWingSeed seed;  // the secret key is its 32-byte seed
};
struct Encapsulation {
  XWingCipherText cipher_text;
  SharedSecret shared_secret;
};

[[nodiscard]] XWingKeyPair xwing_keypair_from_seed(const XWingSeed& seed);
[[nodiscard]] XWingKeyPair xwing_generate_keypair();
[[nodiscard]] Result<Encapsulation> xwing_encapsulate(const XWingPublicKey& public_key);
// Deterministic, for test vectors only.
[[nodiscard]] Result<Encapsulation> xwing_encapsulate_deterministic(const XWingPublicKey& public_key,
                                                                    std::span<const std::uint8_t, kXWingEncapsSeedBytes> seed);
[[nodiscard]] Result<SharedSecret> xwing_decapsulate(const XWingCipherText& cipher_text, const XWingSeed& seed);

// keyId = first 8 bytes of SHA-256(publicKey).
[[nodiscard]] KeyId key_id(const XWingPublicKey& public_key);

// --- XChaCha20-Poly1305 (IETF) ----------------------------------------------------------
// ciphertext ‖ 16-byte tag.
[[nodiscard]] std::vector<std::uint8_t> aead_seal(std::span<const std::uint8_t, kAeadKeyBytes> key, const Nonce& nonce,
                                                  std::span<const std::uint8_t> ad,
                                                  std::span<const std::uint8_t> plaintext);
// decryption_failed when the tag does not verify (or the input is shorter than a tag).
[[nodiscard]] Result<SecureBytes> aead_open(std::span<const std::uint8_t, kAeadKeyBytes> key,
                                                          const Nonce& nonce, std::span<const std::uint8_t> ad,
                                                          std::span<const std::uint8_t> ciphertext);

// --- HKDF-SHA256 (RFC 5869) -------------------------------------------------------------
[[nodiscard]] Secret<32> hkdf_extract(std::span<const std::uint8_t> salt, std::span<const std::uint8_t> ikm);
void hkdf_expand(const Secret<32>& prk, std::string_view info, std::span<std::uint8_t> out);

// --- Hashes and signatures ----------------------------------------------------------------
[[nodiscard]] Sha256Digest sha256(std::span<const std::uint8_t> data);
[[nodiscard]] Sha512Digest sha512(std::span<const std::uint8_t> data);
// BLAKE2b with a 32-byte output (crypto_generichash): as collision-resistant as SHA-256 and several
// times faster here, for digests no protocol fixes (the enclave's cache key of a cipherText).
[[nodiscard]] Blake2b256Digest blake2b_256(std::span<const std::uint8_t> data);

struct Ed25519KeyPair {
  Ed25519PublicKey public_key;
  Secret<64> secret_key;
};
[[nodiscard]] Ed25519KeyPair ed25519_keypair_from_seed(const Ed25519Seed& seed);
[[nodiscard]] Ed25519Signature ed25519_sign(const Ed25519KeyPair& key, std::span<const std::uint8_t> message);
[[nodiscard]] bool ed25519_verify(const Ed25519PublicKey& public_key, std::span<const std::uint8_t> message,
                                  const Ed25519Signature& signature);

// --- Padding (ISO/IEC 7816-4 via sodium_pad) ------------------------------------------------
[[nodiscard]] std::vector<std::uint8_t> pad(std::span<const std::uint8_t> data, std::size_t block = kPadBlockBytes);
// Returns the unpadded length; decryption_failed on bad padding (it only follows authenticated data).
[[nodiscard]] Result<std::size_t> unpadded_size(std::span<const std::uint8_t> padded, std::size_t block = kPadBlockBytes);

// Helpers for the std::string / byte-span boundary.
[[nodiscard]] inline std::span<const std::uint8_t> as_bytes(std::string_view s) noexcept {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
[[nodiscard]] inline std::string_view as_chars(std::span<const std::uint8_t> b) noexcept {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

}  // namespace rvenc::crypto
