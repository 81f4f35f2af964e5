// Hex decoding on arbitrary strings: from_hex accepts exactly the even-length strings of hex
// digits, to_hex(from_hex(s)) is s in lower case, from_hex_exact<N> agrees with from_hex, and
// from_hex(to_hex(bytes)) gives the bytes back; from_public_hex and check_public_hex agree with from_hex.
#include <algorithm>
#include <array>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "rvenc/common/hex.hpp"

namespace {

template <std::size_t N>
void check_exact(std::string_view text, const rvenc::Result<std::vector<std::uint8_t>>& any) {
  const auto exact = rvenc::from_hex_exact<N>(text, "field");
  RVENC_FUZZ_CHECK(exact.has_value() == (any.has_value() && any->size() == N));
  if (exact) RVENC_FUZZ_CHECK(std::equal(exact->begin(), exact->end(), any->begin(), any->end()));
  if (!exact) RVENC_FUZZ_CHECK(exact.error().code == rvenc::Errc::invalid_request);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  bool all_hex = true;
  for (unsigned char c : text) all_hex = all_hex && std::isxdigit(c) != 0;
  const bool valid = all_hex && size % 2 == 0;

  const auto decoded = rvenc::from_hex(text, "field");
  RVENC_FUZZ_CHECK(decoded.has_value() == valid);
  if (decoded) {
    RVENC_FUZZ_CHECK(decoded->size() == size / 2);
    std::string lower(text);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    RVENC_FUZZ_CHECK(rvenc::to_hex(*decoded) == lower);
  } else {
    RVENC_FUZZ_CHECK(decoded.error().code == rvenc::Errc::invalid_request);
    // Messages name the field, never the value.
    RVENC_FUZZ_CHECK(decoded.error().message.starts_with("field "));
  }

  // The fast decoder for public values agrees with the constant-time one, bytes and errors.
  const auto pub = rvenc::from_public_hex(text, "field");
  RVENC_FUZZ_CHECK(pub.has_value() == decoded.has_value());
  if (pub) RVENC_FUZZ_CHECK(*pub == *decoded);
  else RVENC_FUZZ_CHECK(pub.error().message == decoded.error().message);
  // And checking without decoding agrees with both.
  const auto checked = rvenc::check_public_hex(text, "field");
  RVENC_FUZZ_CHECK(checked.has_value() == decoded.has_value());
  if (!checked) RVENC_FUZZ_CHECK(checked.error().message == decoded.error().message);

  // from_hex_into with a buffer of the right and of a wrong size.
  std::vector<std::uint8_t> out(size / 2);
  RVENC_FUZZ_CHECK(rvenc::from_hex_into(text, out, "field").has_value() == valid);
  std::vector<std::uint8_t> longer(size / 2 + 1);
  RVENC_FUZZ_CHECK(!rvenc::from_hex_into(text, longer, "field"));

  check_exact<8>(text, decoded);
  check_exact<24>(text, decoded);
  check_exact<32>(text, decoded);

  // The raw input as bytes: encode then decode.
  const std::span<const std::uint8_t> bytes(data, size);
  const std::string hex = rvenc::to_hex(bytes);
  RVENC_FUZZ_CHECK(hex.size() == 2 * size);
  const auto back = rvenc::from_hex(hex, "field");
  RVENC_FUZZ_CHECK(back.has_value() && std::equal(back->begin(), back->end(), bytes.begin(), bytes.end()));
  return 0;
}
