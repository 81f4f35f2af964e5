#include "rvenc/common/auth.hpp"

namespace rvenc {
namespace {

constexpr std::string_view kScheme = "bearer";

bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

bool is_token68_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~' || c == '+' || c == '/';
}

// token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
bool is_token68(std::string_view token) noexcept {
  std::size_t i = 0;
  while (i < token.size() && is_token68_char(token[i])) ++i;
  if (i == 0) return false;
  while (i < token.size() && token[i] == '=') ++i;
  return i == token.size();
}

bool scheme_matches(std::string_view value) noexcept {
  if (value.size() < kScheme.size()) return false;
  for (std::size_t i = 0; i < kScheme.size(); ++i) {
    const char c = value[i];
    const char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    if (lower != kScheme[i]) return false;
  }
  return true;
}

}  // namespace

std::optional<std::string_view> bearer_token(std::string_view authorization) noexcept {
  while (!authorization.empty() && is_ows(authorization.front())) authorization.remove_prefix(1);
  while (!authorization.empty() && is_ows(authorization.back())) authorization.remove_suffix(1);
  if (!scheme_matches(authorization)) return std::nullopt;
  std::string_view rest = authorization.substr(kScheme.size());
  if (rest.empty() || rest.front() != ' ') return std::nullopt;
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  if (!is_token68(rest)) return std::nullopt;
  return rest;
}

std::string mask_secret(std::string_view secret) {
  if (secret.size() <= kMaskedChars) return "…";
  return "…" + std::string(secret.substr(secret.size() - kMaskedChars));
}

}  // namespace rvenc
