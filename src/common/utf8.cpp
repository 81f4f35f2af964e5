#include "rvenc/common/utf8.hpp"

namespace rvenc::utf8 {

std::optional<std::size_t> first_invalid(std::string_view text) noexcept {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    const std::uint8_t needed = continuation_bytes(lead);
    if (needed == 0 || text.size() - i <= needed) return i;
    if (!valid_second(lead, static_cast<unsigned char>(text[i + 1]))) return i;
    for (std::size_t k = 2; k <= needed; ++k) {
      const auto byte = static_cast<unsigned char>(text[i + k]);
      if (byte < 0x80 || byte > 0xbf) return i;
    }
    i += needed + 1U;
  }
  return std::nullopt;
}

}  // namespace rvenc::utf8
