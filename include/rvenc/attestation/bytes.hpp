// Reading vendor evidence: the one bounds-checked little-endian cursor and loader that the TDX quote,
// SEV-SNP report, NVIDIA SPDM and SEV-SNP certificate-table parsers share.
//
// Design: header-only and allocation-free over a std::span of untrusted bytes. Every read is
// bounds-checked and reports failure instead of reading past the end (the caller names what was
// truncated). Two call styles for the same cursor: `bool` reads that chain with && where a fixed
// layout is read field after field, and std::optional reads where each field is checked alone.
// Integers are little-endian, as every vendor format here stores them.
#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace rvenc::attestation {

// The unsigned integer of `N` little-endian bytes at `offset`; the caller has checked the bounds.
template <std::unsigned_integral T, std::size_t N = sizeof(T)>
  requires(N <= sizeof(T))
[[nodiscard]] constexpr T load_le(std::span<const std::uint8_t> bytes, std::size_t offset) noexcept {
  T value = 0;
  for (std::size_t i = N; i-- > 0;) value = static_cast<T>((value << 8U) | bytes[offset + i]);
  return value;
}

class ByteReader {
 public:
  explicit constexpr ByteReader(std::span<const std::uint8_t> bytes) noexcept : bytes_(bytes) {}
  [[nodiscard]] constexpr std::size_t offset() const noexcept { return offset_; }
  [[nodiscard]] constexpr std::size_t remaining() const noexcept { return bytes_.size() - offset_; }

  // The next `n` bytes, or nullopt (nothing consumed) when fewer remain.
  [[nodiscard]] constexpr std::optional<std::span<const std::uint8_t>> take(std::size_t n) noexcept {
    if (n > remaining()) return std::nullopt;
    const auto out = bytes_.subspan(offset_, n);
    offset_ += n;
    return out;
  }
  [[nodiscard]] constexpr bool take(std::size_t n, std::span<const std::uint8_t>& out) noexcept {
    const auto got = take(n);
    if (got) out = *got;
    return got.has_value();
  }
  template <std::size_t N>
  [[nodiscard]] constexpr bool take(std::array<std::uint8_t, N>& out) noexcept {
    const auto got = take(N);
    if (got) std::ranges::copy(*got, out.begin());
    return got.has_value();
  }
  // A little-endian integer of its own size.
  template <std::unsigned_integral T>
  [[nodiscard]] constexpr bool le(T& out) noexcept {
    const auto got = take(sizeof(T));
    if (got) out = load_le<T>(*got, 0);
    return got.has_value();
  }
  // A little-endian integer of `n` ≤ 4 bytes (SPDM has 1-, 2- and 3-byte fields).
  [[nodiscard]] constexpr std::optional<std::uint32_t> le_n(std::size_t n) noexcept {
    if (n > 4) return std::nullopt;
    const auto got = take(n);
    if (!got) return std::nullopt;
    std::uint32_t value = 0;
    for (std::size_t i = n; i-- > 0;) value = (value << 8U) | (*got)[i];
    return value;
  }

 private:
  std::span<const std::uint8_t> bytes_;
  std::size_t offset_ = 0;
};

}  // namespace rvenc::attestation
