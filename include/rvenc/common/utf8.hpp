// UTF-8 well-formedness (RFC 3629): the byte rules the terminal filter and the JSON error
// messages share, so "is this UTF-8?" has one answer everywhere.
//
// Design: constexpr byte predicates (a lead byte's length, the allowed second byte, which excludes
// overlongs, surrogates and code points above U+10FFFF) and one scanner built from them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace rvenc::utf8 {

// How many continuation bytes a lead byte needs; 0 for a byte that cannot start a multi-byte
// character (ASCII, continuation bytes, overlong leads 0xC0/0xC1, leads beyond U+10FFFF).
[[nodiscard]] constexpr std::uint8_t continuation_bytes(unsigned char lead) noexcept {
  if (lead >= 0xc2 && lead <= 0xdf) return 1;
  if (lead >= 0xe0 && lead <= 0xef) return 2;
  if (lead >= 0xf0 && lead <= 0xf4) return 3;
  return 0;
}

// Whether `byte` may follow `lead` as the second byte (no overlongs, surrogates or > U+10FFFF).
[[nodiscard]] constexpr bool valid_second(unsigned char lead, unsigned char byte) noexcept {
  switch (lead) {
    case 0xe0: return byte >= 0xa0 && byte <= 0xbf;
    case 0xed: return byte >= 0x80 && byte <= 0x9f;
    case 0xf0: return byte >= 0x90 && byte <= 0xbf;
    case 0xf4: return byte >= 0x80 && byte <= 0x8f;
    default: return byte >= 0x80 && byte <= 0xbf;
  }
}

// The offset of the first byte that is not part of a well-formed character; nullopt when `text`
// is valid UTF-8 (a character cut at the end counts as invalid at its lead byte).
[[nodiscard]] std::optional<std::size_t> first_invalid(std::string_view text) noexcept;

}  // namespace rvenc::utf8
