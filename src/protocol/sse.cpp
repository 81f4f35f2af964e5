#include "rvenc/protocol/sse.hpp"

#include <cstring>

namespace rvenc::protocol {

std::size_t find_line_end(std::string_view text, std::size_t pos) noexcept {
  if (pos >= text.size()) return std::string_view::npos;
  const char* const p = text.data() + pos;
  const std::size_t n = text.size() - pos;
  const auto* lf = static_cast<const char*>(std::memchr(p, '\n', n));
  const std::size_t before_lf = lf ? static_cast<std::size_t>(lf - p) : n;
  const auto* cr = static_cast<const char*>(std::memchr(p, '\r', before_lf));
  const std::size_t offset = cr ? static_cast<std::size_t>(cr - p) : before_lf;
  return offset == n ? std::string_view::npos : pos + offset;
}

// A line found whole in `bytes` is read where it is; only a line cut by the end of `bytes` is
// gathered in line_ (and a gathered data line becomes the event's data without another copy).
Status SseParser::feed(std::string_view bytes, std::vector<SseEvent>& out) {
  if (failed_) return fail(Errc::event_too_large, "the event stream already failed");
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    if (last_was_cr_ && bytes[pos] == '\n') {
      // The \n of a \r\n pair: the line already ended at the \r.
      last_was_cr_ = false;
      ++pos;
      continue;
    }
    last_was_cr_ = false;
    const auto end = find_line_end(bytes, pos);
    const auto chunk = bytes.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    if (event_bytes_ + line_.size() + chunk.size() > max_event_bytes_) {
      failed_ = true;
      line_.clear();
      current_ = SseEvent{};
      return fail(Errc::event_too_large, "a server-sent event is larger than the limit of " +
                                             std::to_string(max_event_bytes_) + " bytes");
    }
    if (end == std::string_view::npos) {
      line_.append(chunk);
      break;
    }
    last_was_cr_ = bytes[end] == '\r';
    pos = end + 1;
    event_bytes_ += line_.size() + chunk.size() + 1;
    if (line_.empty()) {
      process_line(chunk, out);
    } else {
      line_.append(chunk);
      process_gathered_line(out);
    }
  }
  return {};
}

void SseParser::process_gathered_line(std::vector<SseEvent>& out) {
  constexpr std::string_view kData = "data:";
  if (line_.starts_with(kData) && current_.data.empty()) {
    const std::size_t skip = kData.size() + (line_.size() > kData.size() && line_[kData.size()] == ' ' ? 1 : 0);
    current_.data = std::move(line_);
    current_.data.erase(0, skip);
    current_.data.push_back('\n');
    have_data_ = true;
    have_fields_ = true;
  } else {
    process_line(line_, out);
  }
  line_.clear();
}

void SseParser::process_line(std::string_view line, std::vector<SseEvent>& out) {
  if (line.empty()) {
    // WHATWG: an event without data lines is not dispatched; the event name resets either way.
    if (have_data_) {
      if (!current_.data.empty() && current_.data.back() == '\n') current_.data.pop_back();
      // The last event id stays for the events that follow (WHATWG); name and data move out.
      out.push_back(SseEvent{std::move(current_.event), std::move(current_.data), current_.id});
    }
    current_.event = "message";
    current_.data.clear();
    have_data_ = false;
    have_fields_ = false;
    event_bytes_ = 0;
    return;
  }
  have_fields_ = true;
  if (line.front() == ':') return;  // comment, e.g. ": keep-alive"
  std::string_view field = line;
  std::string_view value;
  if (const auto colon = line.find(':'); colon != std::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (value.starts_with(' ')) value.remove_prefix(1);
  }
  if (field == "event") {
    current_.event = value.empty() ? std::string("message") : std::string(value);
  } else if (field == "data") {
    current_.data.append(value);
    current_.data.push_back('\n');
    have_data_ = true;
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) current_.id = std::string(value);
  }
  // "retry" and unknown fields are ignored.
}

bool SseParser::has_partial_event() const noexcept { return !line_.empty() || have_fields_; }

namespace {

void append_data_lines(std::string& out, std::string_view data) {
  std::size_t pos = 0;
  while (true) {
    const auto end = find_line_end(data, pos);
    out += "data: ";
    out.append(data.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos));
    out += '\n';
    if (end == std::string_view::npos) break;
    pos = end + 1;
    if (data[end] == '\r' && pos < data.size() && data[pos] == '\n') ++pos;
  }
}

}  // namespace

std::string format_event(std::string_view kind, std::string_view data) {
  std::string out;
  out.reserve(kind.size() + data.size() + 16);
  out += "event: ";
  out += kind;
  out += '\n';
  append_data_lines(out, data);
  out += '\n';
  return out;
}

std::string format_data_only(std::string_view data) {
  std::string out;
  out.reserve(data.size() + 8);
  append_data_lines(out, data);
  out += '\n';
  return out;
}

}  // namespace rvenc::protocol
