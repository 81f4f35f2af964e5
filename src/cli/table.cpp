#include "table.hpp"

#include <algorithm>
#include <cstddef>
#include <string_view>

namespace rvenc::cli {
namespace {

// Characters, not bytes: continuation bytes (10xxxxxx) do not start a character.
std::size_t display_width(std::string_view text) {
  return static_cast<std::size_t>(
      std::count_if(text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xc0) != 0x80; }));
}

}  // namespace

void TextTable::print(std::ostream& out) const {
  std::vector<std::size_t> widths;
  for (const auto& column : columns_) widths.push_back(display_width(column.title));
  for (const auto& row : rows_)
    for (std::size_t i = 0; i < std::min(row.size(), widths.size()); ++i)
      widths[i] = std::max(widths[i], display_width(row[i]));

  const auto print_row = [&](auto cell_at) {
    std::string line;
    for (std::size_t i = 0; i < columns_.size(); ++i) {
      const std::string_view cell = cell_at(i);
      const std::string pad(widths[i] - display_width(cell), ' ');
      if (i > 0) line += "  ";
      line += columns_[i].align == Align::right ? pad + std::string(cell) : std::string(cell) + pad;
    }
    line.erase(line.find_last_not_of(' ') + 1);
    out << line << '\n';
  };
  print_row([&](std::size_t i) -> std::string_view { return columns_[i].title; });
  for (const auto& row : rows_)
    print_row([&](std::size_t i) -> std::string_view { return i < row.size() ? std::string_view(row[i]) : ""; });
  out.flush();
}

}  // namespace rvenc::cli
