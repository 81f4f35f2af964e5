#include "rvenc/common/hex.hpp"

#include <sodium.h>

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

}  // namespace

std::string to_hex(std::span<const std::uint8_t> bytes) {
  if (bytes.empty()) return {};
  std::string out(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), bytes.data(), bytes.size());
  out.pop_back();
  return out;
}

Result<std::vector<std::uint8_t>> from_hex(std::string_view hex, std::string_view field) {
  if (hex.size() % 2 != 0) return std::unexpected(odd_error(field).error());
  std::vector<std::uint8_t> out(hex.size() / 2);
  if (auto ok = decode(hex, out, field); !ok) return std::unexpected(ok.error());
  return out;
}

Status from_hex_into(std::string_view hex, std::span<std::uint8_t> out, std::string_view field) {
  if (hex.size() % 2 != 0) return odd_error(field);
  if (hex.size() != out.size() * 2) {
    return fail(Errc::invalid_request, std::string(field) + " must be " + std::to_string(out.size()) + " bytes (" +
                                           std::to_string(out.size() * 2) + " hex digits)");
  }
  return decode(hex, out, field);
}

}  // namespace rvenc
