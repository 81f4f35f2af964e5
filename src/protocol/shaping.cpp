#include "rvenc/protocol/shaping.hpp"

#include <algorithm>
#include <limits>

#include <boost/json/parse.hpp>

#include "rvenc/crypto/secret.hpp"

namespace rvenc::protocol {

namespace json = boost::json;

namespace {

constexpr std::size_t kRecordHeaderBytes = 3;  // marker and the 2-byte slice length

std::unexpected<Error> invalid(std::string message) {
  return fail(Errc::invalid_inference, std::string(kShapingMember) + std::move(message));
}

std::unexpected<Error> tampered(std::string message) { return fail(Errc::tampered_stream, std::move(message)); }

bool is_continuation(char byte) noexcept { return (static_cast<unsigned char>(byte) & 0xc0U) == 0x80U; }

}  // namespace

std::string_view shaping_mode_name(ShapingMode mode) noexcept {
  switch (mode) {
    case ShapingMode::off: return "off";
    case ShapingMode::pad: return "pad";
    case ShapingMode::cadence: return "cadence";
  }
  return "off";
}

std::optional<ShapingMode> shaping_mode_from_name(std::string_view name) noexcept {
  for (const auto mode : {ShapingMode::off, ShapingMode::pad, ShapingMode::cadence})
    if (shaping_mode_name(mode) == name) return mode;
  return std::nullopt;
}

Result<std::optional<ShapingAsk>> take_shaping_member(json::object& request) {
  const auto it = request.find(kShapingMember);
  if (it == request.end()) return std::optional<ShapingAsk>{};
  const json::value member = std::move(it->value());
  request.erase(it);
  if (!member.is_object()) return invalid(" must be an object {\"mode\": \"off\"|\"pad\"|\"cadence\"}");
  ShapingAsk ask;
  for (const auto& [key, value] : member.get_object()) {
    if (key == "mode") {
      const auto* name = value.if_string();
      const auto mode = name ? shaping_mode_from_name(std::string_view(name->data(), name->size())) : std::nullopt;
      if (!mode) return invalid(".mode must be one of \"off\", \"pad\", \"cadence\"");
      ask.mode = *mode;
    } else if (key == "intervalMs") {
      if (!value.is_int64() || value.get_int64() < kMinShapingInterval.count() ||
          value.get_int64() > kMaxShapingInterval.count())
        return invalid(".intervalMs must be an integer from " + std::to_string(kMinShapingInterval.count()) + " to " +
                       std::to_string(kMaxShapingInterval.count()));
      ask.interval_ms = value.get_int64();
    } else {
      return invalid(" has an unknown member (allowed: mode, intervalMs)");
    }
  }
  if (!member.get_object().contains("mode")) return invalid(".mode is missing");
  return std::optional<ShapingAsk>(ask);
}

json::object shaping_member(ShapingMode mode, std::optional<std::int64_t> interval_ms) {
  json::object member{{"mode", shaping_mode_name(mode)}};
  if (interval_ms) member["intervalMs"] = *interval_ms;
  return member;
}

std::uint64_t length_bucket(std::uint64_t n) noexcept {
  std::uint64_t bucket = kMinBucket;
  while (bucket < n) {
    if (bucket > std::numeric_limits<std::uint64_t>::max() / 2) return n;  // saturated
    bucket *= 2;
  }
  return bucket;
}

std::string filler_record(std::size_t record_bytes) {
  std::string record(kFillerJson);
  record.resize(std::max(record.size(), record_bytes - 1), ' ');
  return record;
}

void ShapedWriter::push(std::string_view chunk_json) {
  push_part(chunk_json);
  end_chunk();
}

void ShapedWriter::push_part(std::string_view part) {
  // Drop what was taken before growing, so the buffer stays about a record plus the new part.
  if (taken_ > 0 && taken_ >= pending_.size() / 2) {
    const std::size_t before = pending_.size();
    pending_.erase(0, taken_);
    // erase moved the rest down: the copies it left past the new end are wiped too.
    crypto::secure_wipe(pending_.data() + pending_.size(), before - pending_.size());
    taken_ = 0;
  }
  const std::size_t start = pending_.size();
  pending_.append(part);
  std::replace_if(pending_.begin() + static_cast<std::ptrdiff_t>(start), pending_.end(),
                  [](char c) { return c == '\n' || c == '\r'; }, ' ');
}

void ShapedWriter::end_chunk() { pending_.push_back('\n'); }

std::string ShapedWriter::next_record(RecordFill fill) {
  if (empty()) return filler_record(record_bytes_);
  const std::string_view pending = std::string_view(pending_).substr(taken_);
  std::size_t take = std::min(pending.size(), capacity());
  // Never split a UTF-8 character (at most 3 bytes back, to its lead byte): every slice is text of
  // its own. Bytes that are not UTF-8 (no lead byte within 3) are cut at the capacity, so a record
  // always carries something and the writer always ends (capacity > 4 bytes).
  if (take < pending.size()) {
    std::size_t cut = take;
    while (cut > 0 && take - cut < 3 && is_continuation(pending[cut])) --cut;
    if (cut > 0 && !is_continuation(pending[cut])) take = cut;
  }
  std::string record(fill == RecordFill::zeros ? record_bytes_ - 1 : kRecordHeaderBytes + take, '\0');
  record[0] = kRecordMarker;
  record[1] = static_cast<char>((take >> 8U) & 0xffU);
  record[2] = static_cast<char>(take & 0xffU);
  std::copy_n(pending.begin(), take, record.begin() + kRecordHeaderBytes);
  crypto::secure_wipe(pending_.data() + taken_, take);
  taken_ += take;
  if (taken_ == pending_.size()) {
    pending_.clear();
    taken_ = 0;
  }
  return record;
}

ShapedWriter::~ShapedWriter() { crypto::secure_wipe(pending_.data(), pending_.size()); }

ShapedReader::~ShapedReader() { crypto::secure_wipe(line_.data(), line_.size()); }

namespace {

std::string_view as_text(std::span<const std::uint8_t> plaintext) {
  return {reinterpret_cast<const char*>(plaintext.data()), plaintext.size()};
}

bool is_record(std::string_view text) { return !text.empty() && text.front() == kRecordMarker; }

// The filler's JSON, padded with spaces (fillers are the size of a record).
bool is_filler(std::string_view text) {
  const auto end = text.find_last_not_of(' ');
  return end != std::string_view::npos && text.substr(0, end + 1) == kFillerJson;
}

}  // namespace

bool ShapedReader::is_whole_chunk(std::span<const std::uint8_t> plaintext) const noexcept {
  const std::string_view text = as_text(plaintext);
  return line_.empty() && !is_record(text) && !is_filler(text);
}

Status ShapedReader::feed(std::span<const std::uint8_t> plaintext, std::vector<std::string>& out) {
  const std::string_view text = as_text(plaintext);
  if (!is_record(text)) {
    // Not a content record: a filler, or an unshaped chunk (which must not cut into a record's line).
    if (is_filler(text)) {
      ++fillers_;
      return {};
    }
    if (!line_.empty()) return tampered("an unshaped chunk arrived inside a shaped chunk");
    out.emplace_back(text);
    return {};
  }
  if (text.size() < kRecordHeaderBytes) return tampered("a shaped record is shorter than its header");
  const std::size_t length = (static_cast<std::size_t>(static_cast<unsigned char>(text[1])) << 8U) |
                             static_cast<unsigned char>(text[2]);
  if (length == 0 || length > text.size() - kRecordHeaderBytes)
    return tampered("a shaped record's length does not fit the record");
  std::string_view slice = text.substr(kRecordHeaderBytes, length);
  while (!slice.empty()) {
    const auto newline = slice.find('\n');
    const auto piece = slice.substr(0, newline);
    if (line_.size() + piece.size() > max_line_bytes_)
      return tampered("a shaped chunk is larger than max_buffer_size (" + std::to_string(max_line_bytes_) + " bytes)");
    line_.append(piece);
    if (newline == std::string_view::npos) break;
    out.push_back(std::move(line_));
    line_.clear();
    slice.remove_prefix(newline + 1);
  }
  return {};
}

Status ShapedReader::finish() const {
  if (!line_.empty()) return tampered("the stream ended inside a shaped chunk");
  return {};
}

}  // namespace rvenc::protocol
