// HTTP/1.1 on the wire, by hand where Beast's composed operations cost more than the bytes: the
// head of a message and the framing of a chunk, written byte for byte as Beast writes them (tests
// compare both with Beast's output; bodies are sent from the caller's buffers, never copied), and
// messages read with Beast's parser from what each read brings.
#pragma once

#include <array>
#include <charconv>
#include <cstdint>
#include <cstddef>
#include <string>
#include <string_view>

#include <algorithm>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/optional/optional.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
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
    const auto reason =
        header.reason().empty() ? boost::beast::http::obsolete_reason(header.result()) : header.reason();
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

// Bounds of each read of a message (Beast's reads use the same).
inline constexpr std::size_t kMinReadSpace = 512;
inline constexpr std::size_t kMaxReadSpace = 64 * 1024;
// The most one read of a body with a known length asks for (what is left of it, up to this).
inline constexpr std::size_t kMaxKnownBodyReadSpace = 1024 * 1024;

// How much the next read of a streamed response body asks for. The buffer's free room alone
// stays at its first size (4 KiB), so a 200 KiB answer crossed in 50 reads, each one a turn of a
// busy event loop (issue 26: 1-2 s per embeddings answer at 64 callers). Now a body with a
// Content-Length is read as what is left of it (up to kMaxKnownBodyReadSpace), and any other
// body (chunked, or ending with the connection) doubles its read after a read that filled all it
// asked for, up to kMaxReadSpace: a large answer takes a few reads, a stream of small events keeps
// its small buffer (memory per open stream).
class BodyReadSpace {
 public:
  [[nodiscard]] std::size_t next(std::size_t room, boost::optional<std::uint64_t> remaining) const {
    const std::size_t space = std::clamp(std::max(room, grown_), kMinReadSpace, kMaxReadSpace);
    if (!remaining) return space;
    return std::max(space, static_cast<std::size_t>(std::min<std::uint64_t>(*remaining, kMaxKnownBodyReadSpace)));
  }
  // After a read of `got` bytes into `asked` bytes of space.
  void read(std::size_t asked, std::size_t got) {
    if (got == asked) grown_ = std::min(asked * 2, kMaxReadSpace);
  }

 private:
  std::size_t grown_ = 0;
};

// Feeds `parser` the bytes `buffer` holds, consuming what it takes, until `enough()` or it needs
// more input; any other parse error is returned.
template <class Parser, class Enough>
boost::beast::error_code parse_buffered(Parser& parser, boost::beast::flat_buffer& buffer, Enough enough) {
  boost::beast::error_code ec;
  while (buffer.size() > 0 && !enough()) {
    const std::size_t used = parser.put(buffer.data(), ec);
    buffer.consume(used);
    if (ec == boost::beast::http::error::need_more) return {};
    if (ec || used == 0) return ec;
  }
  return ec;
}

// Parses what `buffer` holds into `parser`, reading from `stream` only for what is missing: a
// message that is already buffered (a request that came whole with the idle read) costs no read
// operation at all, where Beast's async_read would still complete through the event loop. Until
// the head is complete, or the whole message when `whole`; errors and the end of the connection
// as Beast's reads report them. The caller bounds the reads (a watchdog, or the stream's timeout).
template <class ReadStream, class Parser>
boost::asio::awaitable<boost::beast::error_code> read_message(ReadStream& stream, boost::beast::flat_buffer& buffer,
                                                              Parser& parser, bool whole) {
  namespace bhttp = boost::beast::http;
  parser.eager(whole);
  const auto complete = [&] { return whole ? parser.is_done() : parser.is_header_done(); };
  for (;;) {
    boost::beast::error_code ec = parse_buffered(parser, buffer, complete);
    if (ec) co_return ec;
    if (complete()) co_return boost::beast::error_code{};
    const std::size_t space = std::clamp<std::size_t>(buffer.capacity() - buffer.size(), kMinReadSpace, kMaxReadSpace);
    auto [read_ec, n] =
        co_await stream.async_read_some(buffer.prepare(space), boost::asio::as_tuple(boost::asio::use_awaitable));
    buffer.commit(n);
    if (read_ec == boost::asio::error::eof) {
      // Between messages the end of the connection is end_of_stream; inside one, the parser decides
      // (a body that ends with the connection, or partial_message).
      if (!parser.got_some()) co_return boost::beast::error_code{bhttp::error::end_of_stream};
      parser.put_eof(ec);
      if (!ec && !complete()) ec = bhttp::error::partial_message;
      co_return ec;
    }
    if (read_ec) co_return read_ec;
  }
}

}  // namespace rvenc::http::detail
