// rvenc-mux/1 frames: 9-byte header (length, stream, type) and payload.
#include "rvenc/http/mux_frame.hpp"

namespace rvenc::http {

namespace mux {

namespace {
constexpr std::size_t kWindowPayload = 4;

void put_u32(std::string& out, std::uint32_t value) {
  const char bytes[4] = {static_cast<char>(value >> 24), static_cast<char>(value >> 16),
                         static_cast<char>(value >> 8), static_cast<char>(value)};
  out.append(bytes, sizeof bytes);
}

std::uint32_t get_u32(std::string_view bytes) {
  const auto byte = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])); };
  return byte(0) << 24 | byte(1) << 16 | byte(2) << 8 | byte(3);
}
}  // namespace

void append_frame(std::string& out, FrameType type, std::uint32_t stream, std::string_view payload) {
  append_frame(out, type, stream, payload, {});
}

void append_frame(std::string& out, FrameType type, std::uint32_t stream, std::string_view first,
                  std::string_view second) {
  put_u32(out, static_cast<std::uint32_t>(first.size() + second.size()));
  put_u32(out, stream);
  out.push_back(static_cast<char>(type));
  out.append(first).append(second);
}

void append_window(std::string& out, std::uint32_t stream, std::uint32_t increment) {
  std::string payload;
  put_u32(payload, increment);
  append_frame(out, FrameType::window, stream, payload);
}

std::optional<std::uint32_t> window_increment(std::string_view payload) {
  if (payload.size() != kWindowPayload) return std::nullopt;
  const std::uint32_t increment = get_u32(payload);
  if (increment == 0) return std::nullopt;
  return increment;
}

Result<std::optional<Frame>> next_frame(std::string_view bytes, std::size_t max_payload) {
  if (bytes.size() < kFrameHeaderBytes) return std::optional<Frame>{};
  const std::uint32_t length = get_u32(bytes);
  const std::uint32_t stream = get_u32(bytes.substr(4));
  const auto type = static_cast<unsigned char>(bytes[8]);
  if (length > max_payload)
    return fail(Errc::invalid_request,
                "a rvenc-mux frame of " + std::to_string(length) + " bytes exceeds " + std::to_string(max_payload));
  if (type < static_cast<unsigned char>(FrameType::request) || type > static_cast<unsigned char>(FrameType::trailer))
    return fail(Errc::invalid_request, "unknown rvenc-mux frame type " + std::to_string(type));
  if (stream == 0) return fail(Errc::invalid_request, "rvenc-mux frame for stream 0");
  if (bytes.size() - kFrameHeaderBytes < length) return std::optional<Frame>{};
  return Frame{static_cast<FrameType>(type), stream, bytes.substr(kFrameHeaderBytes, length)};
}

}  // namespace mux

}  // namespace rvenc::http
