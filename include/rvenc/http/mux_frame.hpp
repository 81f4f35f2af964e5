// rvenc-mux/1 frames (docs/mux.md): the codec, with no I/O, so the fuzz targets can build it alone.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "rvenc/common/error.hpp"

namespace rvenc::http {

namespace mux {

inline constexpr std::string_view kUpgradeToken = "rvenc-mux/1";
inline constexpr std::string_view kPath = "/rvenc/mux";

enum class FrameType : std::uint8_t { request = 1, head = 2, data = 3, end = 4, reset = 5, window = 6, trailer = 7 };

// Sent with the upgrade request by a client that takes TRAILER frames, and echoed in the 101 by a
// server that may send them. A peer without it neither sends nor receives one (an unknown frame
// type closes the connection, so the server must know the client takes it).
inline constexpr std::string_view kTrailersField = "Rvenc-Mux-Trailers";
inline constexpr std::string_view kTrailersValue = "1";
// A TRAILER frame's payload at most: a few counts (the enclave's usage of a stream the client reset).
inline constexpr std::size_t kMaxTrailer = 256;
// How long the client keeps a stream it reset, waiting for its TRAILER.
inline constexpr std::chrono::milliseconds kTrailerWait{2'000};

inline constexpr std::size_t kFrameHeaderBytes = 9;
// Body bytes a stream may have unacknowledged (HTTP/2's default window is 64 KiB; a stream of
// encrypted chunks is a few hundred bytes per token, so this never slows a reader that keeps up).
inline constexpr std::uint32_t kInitialWindow = 256 * 1024;
// DATA frames are cut at this size, so a large answer cannot hold up the other streams.
inline constexpr std::size_t kMaxDataPayload = 64 * 1024;
// Streams open at once on one connection; the client opens another connection beyond.
inline constexpr std::size_t kMaxStreams = 1024;
// A server takes REQUEST frames up to this size even when its own limits are lower (it answers
// 413 on the stream): a gateway allowing larger bodies than its enclave must not break the
// connection every other stream shares.
inline constexpr std::size_t kMaxRequestFrame = 64 * 1024 * 1024;
// What a RESET says at most (a reason for logs).
inline constexpr std::size_t kMaxResetReason = 256;

struct Frame {
  FrameType type = FrameType::data;
  std::uint32_t stream = 0;
  std::string_view payload;
  // Header and payload: what the frame took of the input.
  [[nodiscard]] std::size_t size() const { return kFrameHeaderBytes + payload.size(); }
};

// Appends a frame to `out`.
void append_frame(std::string& out, FrameType type, std::uint32_t stream, std::string_view payload);
// The same with the payload in two pieces (a request's head and body, without joining them first).
void append_frame(std::string& out, FrameType type, std::uint32_t stream, std::string_view first,
                  std::string_view second);
void append_window(std::string& out, std::uint32_t stream, std::uint32_t increment);
// The increment a WINDOW frame's payload carries; nullopt when the payload is malformed.
[[nodiscard]] std::optional<std::uint32_t> window_increment(std::string_view payload);

// The first frame in `bytes`, a view into it; nullopt while it is incomplete. Errors
// (invalid_request): a payload over `max_payload` bytes, an unknown type, stream id 0.
[[nodiscard]] Result<std::optional<Frame>> next_frame(std::string_view bytes, std::size_t max_payload);

}  // namespace mux

}  // namespace rvenc::http
