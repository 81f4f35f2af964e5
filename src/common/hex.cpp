#include "rvenc/common/hex.hpp"

#include <sodium.h>

#include <array>
#include <bit>
#include <cstring>

namespace rvenc {

namespace {

Status odd_error(std::string_view field) {
  return fail(Errc::invalid_request, std::string(field) + " has an odd number of hex digits");
}

Status not_hex_error(std::string_view field) {
  return fail(Errc::invalid_request, std::string(field) + " is not valid hex");
}

Status length_error(std::string_view field, std::size_t bytes) {
  return fail(Errc::invalid_request, std::string(field) + " must be " + std::to_string(bytes) + " bytes (" +
                                         std::to_string(bytes * 2) + " hex digits)");
}

// sodium_hex2bin validates as it decodes (constant time); a stop before the end means a non-hex digit.
Status decode(std::string_view hex, std::span<std::uint8_t> out, std::string_view field) {
  if (hex.empty()) return {};
  std::size_t written = 0;
  const char* end = nullptr;
  if (sodium_hex2bin(out.data(), out.size(), hex.data(), hex.size(), nullptr, &written, &end) != 0 ||
      written != out.size() || end != hex.data() + hex.size()) {
    return not_hex_error(field);
  }
  return {};
}

constexpr std::uint8_t kNotHex = 0xff;

constexpr std::array<std::uint8_t, 256> make_digit_table() {
  std::array<std::uint8_t, 256> table{};
  table.fill(kNotHex);
  for (int c = 0; c < 10; ++c) table['0' + c] = static_cast<std::uint8_t>(c);
  for (int c = 0; c < 6; ++c) {
    table['a' + c] = static_cast<std::uint8_t>(10 + c);
    table['A' + c] = static_cast<std::uint8_t>(10 + c);
  }
  return table;
}
constexpr auto kDigit = make_digit_table();

// SWAR over eight ASCII characters in a little-endian word (a sealed answer is hundreds of KiB of
// hex, so these run eight characters a step). For ASCII bytes, adding 0x80 - lo sets a byte's top
// bit iff it is >= lo, and adding 0x7f - hi iff it is > hi; no carries cross bytes.
constexpr std::uint64_t kOnes = 0x0101010101010101;
constexpr std::uint64_t kTop = 0x80 * kOnes;

bool hex_word(std::uint64_t w) {
  const auto in_range = [](std::uint64_t v, std::uint8_t lo, std::uint8_t hi) {
    return (v + (0x80 - lo) * kOnes) & ~(v + (0x7f - hi) * kOnes) & kTop;
  };
  if ((w & kTop) != 0) return false;
  const std::uint64_t folded = w | (0x20 * kOnes);  // 'A'-'F' to 'a'-'f'
  return (in_range(w, '0', '9') | in_range(folded, 'a', 'f')) == kTop;
}

// Eight valid hex digits to four bytes: a digit's value is its low nibble, plus 9 for a letter
// (bit 6 set); then the high/low nibble pairs are joined and the four 16-bit lanes packed.
std::uint32_t hex_word_value(std::uint64_t w) {
  const std::uint64_t nibbles = (w & (0x0f * kOnes)) + ((w >> 6) & kOnes) * 9;
  constexpr std::uint64_t kEven = 0x00ff00ff00ff00ff;
  std::uint64_t x = ((nibbles & kEven) << 4) | ((nibbles >> 8) & kEven);
  x = (x | (x >> 8)) & 0x0000ffff0000ffff;
  x = (x | (x >> 16)) & 0x00000000ffffffff;
  return static_cast<std::uint32_t>(x);
}

// Variable time: only for public values. Little-endian words (x86-64, arm64 as built here).
Status decode_public(std::string_view hex, std::span<std::uint8_t> out, std::string_view field) {
  static_assert(std::endian::native == std::endian::little);
  std::size_t i = 0;
  for (; i + 4 <= out.size(); i += 4) {
    std::uint64_t w;
    std::memcpy(&w, hex.data() + 2 * i, sizeof w);
    if (!hex_word(w)) return not_hex_error(field);
    const std::uint32_t bytes = hex_word_value(w);
    std::memcpy(out.data() + i, &bytes, sizeof bytes);
  }
  std::uint8_t bad = 0;
  for (; i < out.size(); ++i) {
    const std::uint8_t high = kDigit[static_cast<unsigned char>(hex[2 * i])];
    const std::uint8_t low = kDigit[static_cast<unsigned char>(hex[2 * i + 1])];
    bad |= static_cast<std::uint8_t>((high | low) & 0xf0);
    out[i] = static_cast<std::uint8_t>((high << 4) | (low & 0x0f));
  }
  if (bad != 0) return not_hex_error(field);
  return {};
}

bool all_hex_digits(std::string_view hex) {
  std::size_t i = 0;
  for (; i + 8 <= hex.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, hex.data() + i, sizeof w);
    if (!hex_word(w)) return false;
  }
  std::uint8_t bad = 0;
  for (; i < hex.size(); ++i) bad |= kDigit[static_cast<unsigned char>(hex[i])];
  return (bad & 0xf0) == 0;
}

// Sixteen bytes to their 32 lowercase digits, with the compiler's portable vector types (SSE2 on
// x86-64, NEON on arm64): the high and low nibbles interleaved in digit order, then a nibble n
// becomes '0' + n, plus 39 ('a' - '0' - 10) where n > 9. No lane leaves its byte (at most 102).
using Bytes16 = std::uint8_t __attribute__((vector_size(16)));
using SignedBytes16 = std::int8_t __attribute__((vector_size(16)));

Bytes16 nibble_digits(Bytes16 n) {
  const auto letter = std::bit_cast<Bytes16>(std::bit_cast<SignedBytes16>(n) > 9);  // 0xff or 0
  return n + static_cast<std::uint8_t>('0') + (letter & static_cast<std::uint8_t>('a' - '0' - 10));
}

void hex_digits_of_16(const std::uint8_t* in, char* out) {
  Bytes16 v;
  std::memcpy(&v, in, sizeof v);
  const Bytes16 high = v >> 4;
  const Bytes16 low = v & 0x0f;
  const Bytes16 first = __builtin_shufflevector(high, low, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const Bytes16 second = __builtin_shufflevector(high, low, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const Bytes16 digits[2] = {nibble_digits(first), nibble_digits(second)};
  std::memcpy(out, digits, sizeof digits);
}

using Decoder = Status (*)(std::string_view hex, std::span<std::uint8_t> out, std::string_view field);

Result<std::vector<std::uint8_t>> decode_any(std::string_view hex, std::string_view field, Decoder decoder) {
  if (hex.size() % 2 != 0) return std::unexpected(odd_error(field).error());
  std::vector<std::uint8_t> out(hex.size() / 2);
  if (auto ok = decoder(hex, out, field); !ok) return std::unexpected(ok.error());
  return out;
}

Status decode_exact(std::string_view hex, std::span<std::uint8_t> out, std::string_view field, Decoder decoder) {
  if (hex.size() % 2 != 0) return odd_error(field);
  if (hex.size() != out.size() * 2) return length_error(field, out.size());
  return decoder(hex, out, field);
}

}  // namespace

std::string to_hex(std::span<const std::uint8_t> bytes) {
  if (bytes.empty()) return {};
  std::string out(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), bytes.data(), bytes.size());
  out.pop_back();
  return out;
}

std::string to_public_hex(std::span<const std::uint8_t> bytes) {
  std::string out;
  append_public_hex(out, bytes);
  return out;
}

void append_public_hex(std::string& out, std::span<const std::uint8_t> bytes) {
  constexpr std::string_view kDigits = "0123456789abcdef";
  const std::size_t start = out.size();
  out.resize(start + bytes.size() * 2);
  char* const to = out.data() + start;
  std::size_t i = 0;
  for (; i + 16 <= bytes.size(); i += 16) hex_digits_of_16(bytes.data() + i, to + 2 * i);
  for (; i < bytes.size(); ++i) {
    to[2 * i] = kDigits[bytes[i] >> 4];
    to[2 * i + 1] = kDigits[bytes[i] & 0x0f];
  }
}

Result<std::vector<std::uint8_t>> from_hex(std::string_view hex, std::string_view field) {
  return decode_any(hex, field, decode);
}

Status from_hex_into(std::string_view hex, std::span<std::uint8_t> out, std::string_view field) {
  return decode_exact(hex, out, field, decode);
}

Result<std::vector<std::uint8_t>> from_public_hex(std::string_view hex, std::string_view field) {
  return decode_any(hex, field, decode_public);
}

Status from_public_hex_into(std::string_view hex, std::span<std::uint8_t> out, std::string_view field) {
  return decode_exact(hex, out, field, decode_public);
}

Status check_public_hex(std::string_view hex, std::string_view field, std::optional<std::size_t> bytes) {
  if (hex.size() % 2 != 0) return odd_error(field);
  if (bytes && hex.size() != *bytes * 2) return length_error(field, *bytes);
  if (!all_hex_digits(hex)) return not_hex_error(field);
  return {};
}

}  // namespace rvenc
