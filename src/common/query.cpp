#include "rvenc/common/query.hpp"

#include <cstdint>
#include <span>

#include "rvenc/common/hex.hpp"

namespace rvenc {

std::vector<QueryParameter> split_query(std::string_view query) {
  std::vector<QueryParameter> out;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    out.push_back({pair.substr(0, eq), eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1)});
  }
  return out;
}

Result<std::string> percent_decode(std::string_view text, std::string_view parameter) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    std::uint8_t byte = 0;
    if (text.size() - i < 3 || !from_hex_into(text.substr(i + 1, 2), std::span(&byte, 1), parameter))
      return fail(Errc::invalid_request, "the " + std::string(parameter) + " query parameter has a malformed % escape");
    out += static_cast<char>(byte);
    i += 2;
  }
  return out;
}

}  // namespace rvenc
