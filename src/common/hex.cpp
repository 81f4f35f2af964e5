#include "rvenc/common/hex.hpp"

#include <sodium.h>

#include <array>

namespace rvenc {

namespace {

Status odd_error(std::string_view field) {
  return fail(Errc::invalid_request, std::string(field) + " has an odd number of hex digits");
}

// sodium_hex2bin validates as it decodes (constant time); a stop before the end means a non-hex digit.
Status decode(std::string_view hex, std::span<std::uint8_t> out, std::string_view field) {
  if (hex.empty()) return {};
  std::size_t written = 0;
  const char* end = nullptr;
  if (sodium_hex2bin(out.data(), out.size(), hex.data(), hex.size(), nullptr, &written, &end) != 0 ||
      written != out.size() || end != hex.data() + hex.size()) {
    return fail(Errc::invalid_request, std::string(field) + " is not valid hex");
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

// Variable time: only for public values.
Status decode_public(std::string_view hex, std::span<std::uint8_t> out, std::string_view field) {
  std::uint8_t bad = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const std::uint8_t high = kDigit[static_cast<unsigned char>(hex[2 * i])];
    const std::uint8_t low = kDigit[static_cast<unsigned char>(hex[2 * i + 1])];
    bad |= static_cast<std::uint8_t>((high | low) & 0xf0);
    out[i] = static_cast<std::uint8_t>((high << 4) | (low & 0x0f));
  }
  if (bad != 0) return fail(Errc::invalid_request, std::string(field) + " is not valid hex");
  return {};
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
  if (hex.size() != out.size() * 2) {
    return fail(Errc::invalid_request, std::string(field) + " must be " + std::to_string(out.size()) + " bytes (" +
                                           std::to_string(out.size() * 2) + " hex digits)");
  }
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

}  // namespace rvenc
