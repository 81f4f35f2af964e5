// API keys as the gateway sees them: generation (sk_live_/sk_test_ + unbiased base62 from
// libsodium), hashing (only SHA-256 hashes are ever stored), masking for logs, and the parsing
// of "Authorization: Bearer <key>".
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "rvenc/crypto/crypto.hpp"

namespace rvenc::store {

inline constexpr std::string_view kLiveKeyPrefix = "sk_live_";
inline constexpr std::string_view kTestKeyPrefix = "sk_test_";
// 43 base62 characters carry 256 bits of randomness.
inline constexpr std::size_t kApiKeyRandomChars = 43;
// Anything longer in an Authorization header is refused without hashing it.
inline constexpr std::size_t kMaxApiKeyBytes = 128;

enum class KeyEnv { live, test };
[[nodiscard]] std::string_view env_name(KeyEnv env) noexcept;  // "live" | "test"
[[nodiscard]] std::optional<KeyEnv> env_from_name(std::string_view name) noexcept;

using KeyHash = crypto::Sha256Digest;

// A new key: prefix + kApiKeyRandomChars base62 characters (rejection sampling, no modulo bias).
[[nodiscard]] std::string generate_api_key(KeyEnv env);
// SHA-256 of the key text.
[[nodiscard]] KeyHash hash_api_key(std::string_view key);
// True when `key` has a known prefix followed by 32..kMaxApiKeyBytes base62 characters.
[[nodiscard]] bool is_well_formed_api_key(std::string_view key) noexcept;
// The environment a well-formed key's prefix names.
[[nodiscard]] std::optional<KeyEnv> key_env_of(std::string_view key) noexcept;
// Masking for logs and listings, and the Bearer parser: rvenc::mask_secret and rvenc::bearer_token
// (common/auth.hpp), the same for every service.

}  // namespace rvenc::store
