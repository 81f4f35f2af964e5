// Lowercase hex encoding; decoding accepts upper case and checks exact lengths.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rvenc/common/error.hpp"

namespace rvenc {

[[nodiscard]] std::string to_hex(std::span<const std::uint8_t> bytes);
// The same digits for values anyone on the path sees anyway (ciphertexts): sixteen bytes a step in
// variable time, about twice as fast as libsodium's constant-time encoder `to_hex` uses.
[[nodiscard]] std::string to_public_hex(std::span<const std::uint8_t> bytes);
// The same digits appended to `out` (a sealed event written where it goes, no copy).
void append_public_hex(std::string& out, std::span<const std::uint8_t> bytes);

// Any even-length hex string. `field` names the value in the error message.
[[nodiscard]] Result<std::vector<std::uint8_t>> from_hex(std::string_view hex, std::string_view field);

// Exactly N bytes (2N hex digits), else invalid_request naming `field` and the expected length.
[[nodiscard]] Status from_hex_into(std::string_view hex, std::span<std::uint8_t> out, std::string_view field);

// The same for values anyone on the path sees anyway (ciphertexts, nonces, key ids): a table
// lookup, several times faster than the constant-time decoder the two above use for secrets.
[[nodiscard]] Result<std::vector<std::uint8_t>> from_public_hex(std::string_view hex, std::string_view field);
[[nodiscard]] Status from_public_hex_into(std::string_view hex, std::span<std::uint8_t> out, std::string_view field);
// Only the checks of those two (even length, `bytes` bytes when given, hex digits), nothing decoded.
[[nodiscard]] Status check_public_hex(std::string_view hex, std::string_view field,
                                      std::optional<std::size_t> bytes = std::nullopt);

template <std::size_t N>
[[nodiscard]] Result<std::array<std::uint8_t, N>> from_hex_exact(std::string_view hex, std::string_view field) {
  std::array<std::uint8_t, N> out{};
  if (auto ok = from_hex_into(hex, out, field); !ok) return std::unexpected(ok.error());
  return out;
}

}  // namespace rvenc
