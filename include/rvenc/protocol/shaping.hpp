// Stream shaping against traffic analysis (docs/traffic-shaping.md): the request member that asks
// for it, the record format of a shaped stream, filler records and the length buckets.
//
// Design: shaping changes only the plaintexts of `data` events, never the sealing: every record
// (content or filler) is an ordinary encrypted data event under the stream's counter nonces, so
// truncation and reordering detection cover fillers too. In `pad` and `cadence` the chunks JSON
// lines ("chunk\n" each) form one byte stream that is cut into records of one fixed size; a
// record is 0x1E, a 2-byte big-endian slice length, the slice and zero fill, and a filler is
// {"rvenc_filler":true} filled with spaces to the same size. A client feeds every data plaintext
// to one ShapedReader, which hands back whole chunks (unshaped plaintexts pass through as they
// are), so the same reader serves shaped and unshaped streams.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>

#include "rvenc/common/error.hpp"

namespace rvenc::protocol {

enum class ShapingMode { off, pad, cadence };

// The top-level member of the request plaintext that asks for a mode; the enclave removes it
// before it validates and forwards the request.
inline constexpr std::string_view kShapingMember = "rvenc_shaping";
// 384: a whole chunk of the demo engine (about 280 bytes of JSON) and a few tokens fit in one record.
inline constexpr std::size_t kDefaultRecordBytes = 384;
inline constexpr std::size_t kMinRecordBytes = 128;
inline constexpr std::size_t kMaxRecordBytes = 16384;
inline constexpr std::chrono::milliseconds kDefaultShapingInterval{40};
inline constexpr std::chrono::milliseconds kMinShapingInterval{5};
inline constexpr std::chrono::milliseconds kMaxShapingInterval{1000};
// The records a large one-object answer (embeddings) is cut into (docs/endpoints.md): 32 KiB, so
// the hops after the enclave work on the first records while it seals the rest.
inline constexpr std::size_t kAnswerRecordBytes = 32 * 1024;
// The first byte of a content record (a chunk JSON starts with '{').
inline constexpr char kRecordMarker = '\x1e';
inline constexpr std::string_view kFillerJson = R"({"rvenc_filler":true})";
// The smallest length bucket, in records (and in completion tokens for the usage).
inline constexpr std::uint64_t kMinBucket = 16;

[[nodiscard]] std::string_view shaping_mode_name(ShapingMode mode) noexcept;
[[nodiscard]] std::optional<ShapingMode> shaping_mode_from_name(std::string_view name) noexcept;

// What a stream is shaped with.
struct Shaping {
  ShapingMode mode = ShapingMode::off;
  std::chrono::milliseconds interval = kDefaultShapingInterval;
  std::size_t record_bytes = kDefaultRecordBytes;  // a multiple of 64, plaintext bytes per record
};

// What a client asks for: {"mode": "off"|"pad"|"cadence", "intervalMs": N}.
struct ShapingAsk {
  ShapingMode mode = ShapingMode::off;
  std::optional<std::int64_t> interval_ms;
};
// Removes the kShapingMember from `request` and parses it: nullopt when absent, invalid_inference
// naming the problem when malformed.
[[nodiscard]] Result<std::optional<ShapingAsk>> take_shaping_member(boost::json::object& request);
// The member a client adds to its request for `mode` (interval omitted when nullopt).
[[nodiscard]] boost::json::object shaping_member(ShapingMode mode, std::optional<std::int64_t> interval_ms = {});

// The length bucket of `n`: the smallest power of two >= max(n, 16). Coarse on purpose: with
// 1.5x steps the project's corpus still told its classes apart by bucket (bench/README.md).
[[nodiscard]] std::uint64_t length_bucket(std::uint64_t n) noexcept;

// The sealed plaintext of a filler record of `record_bytes` (record_bytes - 1 bytes: the
// protocol's padding adds the last byte).
[[nodiscard]] std::string filler_record(std::size_t record_bytes);

// What fills a record after its slice: zero bytes up to the record's size (shaping: every record
// the same size), or nothing (a large answer cut into records: docs/endpoints.md).
enum class RecordFill { zeros, none };

// Enclave side: cuts the chunk byte stream into records of one size.
class ShapedWriter {
 public:
  explicit ShapedWriter(std::size_t record_bytes) : record_bytes_(record_bytes) {}
  // Appends one chunk (a JSON line; raw CR/LF, only possible as JSON whitespace, become spaces).
  void push(std::string_view chunk_json);
  // The same in parts: a chunk's next bytes, then its end (the line's newline).
  void push_part(std::string_view part);
  void end_chunk();
  [[nodiscard]] bool empty() const noexcept { return pending_bytes() == 0; }
  [[nodiscard]] std::size_t pending_bytes() const noexcept { return pending_.size() - taken_; }
  // The content one record carries: its sealed plaintext is record_bytes - 1 bytes, less the
  // marker and the 2-byte length.
  [[nodiscard]] std::size_t capacity() const noexcept { return record_bytes_ - 4; }
  // True when the pending content fills a record.
  [[nodiscard]] bool record_full() const noexcept { return pending_bytes() >= capacity(); }
  // The next record's plaintext carrying as much pending content as fits (capacity() bytes),
  // cut at a UTF-8 character boundary, `fill`ed to record_bytes - 1 bytes or not; a filler when
  // nothing is pending.
  [[nodiscard]] std::string next_record(RecordFill fill = RecordFill::zeros);
  // Wipes what is pending.
  ~ShapedWriter();
  ShapedWriter(const ShapedWriter&) = delete;
  ShapedWriter& operator=(const ShapedWriter&) = delete;

 private:
  std::size_t record_bytes_;
  std::string pending_;
  std::size_t taken_ = 0;  // the front of pending_ already sent (and wiped)
};

// Client side: turns data plaintexts back into chunk JSON texts. Errors are tampered_stream
// (a record that is malformed, too long a line, content after an unfinished record).
class ShapedReader {
 public:
  explicit ShapedReader(std::size_t max_line_bytes) : max_line_bytes_(max_line_bytes) {}
  ~ShapedReader();
  ShapedReader(const ShapedReader&) = delete;
  ShapedReader& operator=(const ShapedReader&) = delete;
  ShapedReader(ShapedReader&&) noexcept = default;  // a moved-from reader holds nothing to wipe
  ShapedReader& operator=(ShapedReader&&) noexcept = default;
  // Appends the chunks `plaintext` completes (none for a filler) to `out`.
  [[nodiscard]] Status feed(std::span<const std::uint8_t> plaintext, std::vector<std::string>& out);
  // True when `plaintext` is itself one whole chunk (unshaped, not a filler, no record open): what
  // feed() would copy to `out` as it is, so a caller holding the plaintext can take it instead.
  [[nodiscard]] bool is_whole_chunk(std::span<const std::uint8_t> plaintext) const noexcept;
  // At the authenticated end: tampered_stream when a chunk is still incomplete.
  [[nodiscard]] Status finish() const;
  [[nodiscard]] std::uint64_t fillers() const noexcept { return fillers_; }

 private:
  std::size_t max_line_bytes_;
  std::string line_;
  std::uint64_t fillers_ = 0;
};

}  // namespace rvenc::protocol
