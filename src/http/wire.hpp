// HTTP/1.1 on the wire, written by hand where Beast's serializer costs more than the bytes: the
// head of a message and the framing of a chunk, byte for byte as Beast writes them (tests compare
// both with Beast's output). Bodies are sent from the caller's buffers, never copied.
#pragma once

#include <array>
#include <charconv>
#include <cstddef>
#include <string>
#include <string_view>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/message.hpp>

namespace rvenc::http::detail {

// The start line and fields of a message, up to and including the empty line.
template <bool isRequest, class Fields>
std::string serialize_head(const boost::beast::http::header<isRequest, Fields>& header) {
  constexpr std::size_t kTypicalHead = 256;
  const std::string_view version = header.version() == 10 ? "HTTP/1.0" : "HTTP/1.1";
  std::string head;
  head.reserve(kTypicalHead);
  if constexpr (isRequest) {
    const auto method = header.method_string();
    const auto target = header.target();
    head.append(method.data(), method.size()).append(" ").append(target.data(), target.size()).append(" ");
    head.append(version).append("\r\n");
  } else {
    const auto reason = header.reason().empty() ? boost::beast::http::obsolete_reason(header.result()) : header.reason();
    head.append(version).append(" ").append(std::to_string(header.result_int())).append(" ");
    head.append(reason.data(), reason.size()).append("\r\n");
  }
  for (const auto& field : header) {
    head.append(field.name_string().data(), field.name_string().size()).append(": ");
    head.append(field.value().data(), field.value().size()).append("\r\n");
  }
  head += "\r\n";
  return head;
}

// Chunked transfer coding. Beast's make_chunk allocates the size line of every chunk; a stream
// sends thousands of chunks.
inline constexpr std::string_view kCrlf = "\r\n";
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

// "<size in lowercase hex>\r\n", the line before a chunk's bytes.
class ChunkSizeLine {
 public:
  explicit ChunkSizeLine(std::size_t size) {
    char* end = std::to_chars(text_.data(), text_.data() + text_.size(), size, 16).ptr;
    *end++ = '\r';
    *end++ = '\n';
    length_ = static_cast<std::size_t>(end - text_.data());
  }
  [[nodiscard]] boost::asio::const_buffer buffer() const { return {text_.data(), length_}; }

 private:
  std::array<char, 2 * sizeof(std::size_t) + kCrlf.size()> text_{};
  std::size_t length_ = 0;
};

}  // namespace rvenc::http::detail
