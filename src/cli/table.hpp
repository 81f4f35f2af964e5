// A plain-text table for the CLI's listings (`rvenc keys list`, `keys usage`): columns as wide as
// their widest cell, so long names and ids never push the next column out of line.
//
// Design: cells are strings; widths count UTF-8 characters (the key column's '…' is one), not
// bytes; numeric columns align right. Printed at once to a stream, nothing kept.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace rvenc::cli {

class TextTable {
 public:
  enum class Align { left, right };
  struct Column {
    std::string title;
    Align align = Align::left;
  };

  explicit TextTable(std::vector<Column> columns) : columns_(std::move(columns)) {}
  // One row; a row shorter than the columns is padded with empty cells.
  void add(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  // The title row and every row, cells separated by two spaces, no trailing blanks.
  void print(std::ostream& out) const;

 private:
  std::vector<Column> columns_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace rvenc::cli
