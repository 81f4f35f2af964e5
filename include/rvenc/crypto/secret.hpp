// Fixed-size byte buffers for secrets: wiped on destruction and on move-from, compared in
// constant time. Public values use plain std::array.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

namespace rvenc::crypto {

// sodium_memzero / sodium_memcmp behind a header that does not pull in sodium.h.
void secure_wipe(void* data, std::size_t size) noexcept;
[[nodiscard]] bool constant_time_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) noexcept;

template <std::size_t N>
class Secret {
 public:
  static constexpr std::size_t size_bytes = N;

  Secret() noexcept : bytes_{} {}
  explicit Secret(std::span<const std::uint8_t, N> from) noexcept { std::copy(from.begin(), from.end(), bytes_.begin()); }
  Secret(const Secret& other) noexcept : bytes_(other.bytes_) {}
  Secret& operator=(const Secret& other) noexcept {
    bytes_ = other.bytes_;
    return *this;
  }
  Secret(Secret&& other) noexcept : bytes_(other.bytes_) { other.wipe(); }
  Secret& operator=(Secret&& other) noexcept {
    bytes_ = other.bytes_;
    other.wipe();
    return *this;
  }
  ~Secret() { wipe(); }

  [[nodiscard]] std::uint8_t* data() noexcept { return bytes_.data(); }
  [[nodiscard]] const std::uint8_t* data() const noexcept { return bytes_.data(); }
  [[nodiscard]] static constexpr std::size_t size() noexcept { return N; }
  [[nodiscard]] std::span<std::uint8_t, N> span() noexcept { return bytes_; }
  [[nodiscard]] std::span<const std::uint8_t, N> span() const noexcept { return bytes_; }

  void wipe() noexcept { secure_wipe(bytes_.data(), N); }

  friend bool operator==(const Secret& a, const Secret& b) noexcept { return constant_time_equal(a.span(), b.span()); }

 private:
  std::array<std::uint8_t, N> bytes_;
};

// A variable-length buffer for decrypted plaintext and other secrets: wiped when destroyed.
class SecureBytes {
 public:
  SecureBytes() = default;
  explicit SecureBytes(std::vector<std::uint8_t> bytes) noexcept : bytes_(std::move(bytes)) {}
  SecureBytes(const SecureBytes&) = delete;
  SecureBytes& operator=(const SecureBytes&) = delete;
  SecureBytes(SecureBytes&& other) noexcept : bytes_(std::move(other.bytes_)) { other.bytes_.clear(); }
  SecureBytes& operator=(SecureBytes&& other) noexcept {
    wipe();
    bytes_ = std::move(other.bytes_);
    other.bytes_.clear();
    return *this;
  }
  ~SecureBytes() { wipe(); }

  [[nodiscard]] std::span<const std::uint8_t> bytes() const noexcept { return bytes_; }
  [[nodiscard]] std::string_view view() const noexcept {
    return {reinterpret_cast<const char*>(bytes_.data()), bytes_.size()};
  }
  [[nodiscard]] std::size_t size() const noexcept { return bytes_.size(); }
  [[nodiscard]] bool empty() const noexcept { return bytes_.empty(); }
  // Shrinks to n bytes, wiping what is cut off.
  void truncate(std::size_t n) noexcept {
    if (n < bytes_.size()) {
      secure_wipe(bytes_.data() + n, bytes_.size() - n);
      bytes_.resize(n);
    }
  }
  void wipe() noexcept {
    if (!bytes_.empty()) secure_wipe(bytes_.data(), bytes_.size());
    bytes_.clear();
  }

 private:
  std::vector<std::uint8_t> bytes_;
};

}  // namespace rvenc::crypto
