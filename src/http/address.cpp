#include "rvenc/http/address.hpp"

#include <charconv>
#include <string>
#include <vector>

#include <boost/asio/ip/address_v6.hpp>

namespace rvenc::http {
namespace {

constexpr unsigned kV4Bits = 32;
constexpr unsigned kV6Bits = 128;
constexpr unsigned kBitsPerByte = 8;
constexpr std::string_view kForwardedFor = "X-Forwarded-For";  // Beast has no field constant for it

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::optional<IpAddress> parse_address(std::string_view text) {
  boost::system::error_code ec;
  auto address = boost::asio::ip::make_address(std::string(text), ec);
  if (ec) return std::nullopt;
  return normalize_address(address);
}

// The address's bytes, network order (4 for IPv4, 16 for IPv6).
std::vector<unsigned char> bytes_of(const IpAddress& address) {
  if (address.is_v4()) {
    const auto b = address.to_v4().to_bytes();
    return {b.begin(), b.end()};
  }
  const auto b = address.to_v6().to_bytes();
  return {b.begin(), b.end()};
}

// Whether the first `bits` bits of `a` and `b` (same length) are equal.
bool same_prefix(const std::vector<unsigned char>& a, const std::vector<unsigned char>& b, unsigned bits) noexcept {
  const unsigned whole = bits / kBitsPerByte;
  for (unsigned i = 0; i < whole; ++i)
    if (a[i] != b[i]) return false;
  const unsigned rest = bits % kBitsPerByte;
  if (rest == 0) return true;
  const auto mask = static_cast<unsigned char>(0xFFu << (kBitsPerByte - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

}  // namespace

IpAddress normalize_address(const IpAddress& address) noexcept {
  if (address.is_v6() && address.to_v6().is_v4_mapped())
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, address.to_v6());
  return address;
}

bool Cidr::contains(const IpAddress& address) const noexcept {
  const IpAddress normal = normalize_address(address);
  if (normal.is_v4() != network.is_v4()) return false;
  return same_prefix(bytes_of(normal), bytes_of(network), prefix);
}

Result<Cidr> parse_cidr(std::string_view text) {
  const std::string shown(text);
  const auto slash = text.find('/');
  const auto network = parse_address(trim(text.substr(0, slash)));
  if (!network) return fail(Errc::invalid_request, "'" + shown + "' is not an IP address or CIDR range");
  const unsigned max_bits = network->is_v4() ? kV4Bits : kV6Bits;
  unsigned prefix = max_bits;
  if (slash != std::string_view::npos) {
    const std::string_view digits = trim(text.substr(slash + 1));
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
    if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size() || prefix > max_bits)
      return fail(Errc::invalid_request,
                  "'" + shown + "': the prefix length must be 0 to " + std::to_string(max_bits));
  }
  Cidr cidr{*network, prefix};
  // "10.0.0.1/8" is most likely a typo for a host or for 10.0.0.0/8: say so instead of guessing.
  const auto bytes = bytes_of(*network);
  for (unsigned bit = prefix; bit < max_bits; ++bit)
    if (bytes[bit / kBitsPerByte] & (0x80u >> (bit % kBitsPerByte)))
      return fail(Errc::invalid_request, "'" + shown + "' has bits set after its prefix length");
  return cidr;
}

bool in_ranges(const IpAddress& address, std::span<const Cidr> ranges) noexcept {
  for (const auto& range : ranges)
    if (range.contains(address)) return true;
  return false;
}

IpAddress client_address(const IpAddress& peer, const Request& request, std::span<const Cidr> trusted) {
  IpAddress client = normalize_address(peer);
  if (!in_ranges(client, trusted)) return client;
  // Every X-Forwarded-For field, in order, as one list (RFC 9110 section 5.3).
  std::vector<std::string_view> hops;
  const auto [first, last] = request.equal_range(kForwardedFor);
  for (auto field = first; field != last; ++field) {
    std::string_view value(field->value().data(), field->value().size());
    for (std::size_t start = 0; start <= value.size();) {
      const auto comma = std::min(value.find(',', start), value.size());
      hops.push_back(trim(value.substr(start, comma - start)));
      start = comma + 1;
    }
  }
  for (auto hop = hops.rbegin(); hop != hops.rend(); ++hop) {
    const auto address = parse_address(*hop);
    if (!address) break;
    client = *address;
    if (!in_ranges(client, trusted)) break;
  }
  return client;
}

}  // namespace rvenc::http
