#include "rvenc/store/api_key.hpp"

#include <algorithm>
#include <array>
#include <cctype>

namespace rvenc::store {
namespace {

constexpr std::string_view kBase62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
// Bytes >= 248 (= 4 * 62) are rejected so that `byte % 62` is uniform.
constexpr unsigned kBase62RejectFrom = 248;
constexpr std::size_t kMinApiKeyRandomChars = 32;

bool is_base62(char c) noexcept { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

}  // namespace

std::string_view env_name(KeyEnv env) noexcept { return env == KeyEnv::test ? "test" : "live"; }

std::optional<KeyEnv> env_from_name(std::string_view name) noexcept {
  if (name == "live") return KeyEnv::live;
  if (name == "test") return KeyEnv::test;
  return std::nullopt;
}

std::string generate_api_key(KeyEnv env) {
  std::string key(env == KeyEnv::test ? kTestKeyPrefix : kLiveKeyPrefix);
  std::array<std::uint8_t, 64> pool{};
  while (key.size() < kLiveKeyPrefix.size() + kApiKeyRandomChars) {
    crypto::random_bytes(pool);
    for (std::uint8_t b : pool) {
      if (b >= kBase62RejectFrom) continue;
      key.push_back(kBase62[b % kBase62.size()]);
      if (key.size() == kLiveKeyPrefix.size() + kApiKeyRandomChars) break;
    }
  }
  crypto::secure_wipe(pool.data(), pool.size());
  return key;
}

KeyHash hash_api_key(std::string_view key) { return crypto::sha256(crypto::as_bytes(key)); }

std::optional<KeyEnv> key_env_of(std::string_view key) noexcept {
  if (key.starts_with(kLiveKeyPrefix)) return KeyEnv::live;
  if (key.starts_with(kTestKeyPrefix)) return KeyEnv::test;
  return std::nullopt;
}

bool is_well_formed_api_key(std::string_view key) noexcept {
  if (key.size() > kMaxApiKeyBytes || !key_env_of(key)) return false;
  const std::string_view rest = key.substr(kLiveKeyPrefix.size());
  return rest.size() >= kMinApiKeyRandomChars && std::all_of(rest.begin(), rest.end(), is_base62);
}

}  // namespace rvenc::store
