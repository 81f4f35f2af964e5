// Who is on the other end of a connection or request: CIDR ranges (--trusted-proxy), and the client
// address of a request that may have come through trusted load balancers (X-Forwarded-For).
//
// Design: addresses are boost::asio::ip::address values, IPv4-mapped IPv6 addresses normalized to
// IPv4 so that one client is one key whichever way the socket reports it. The client address of a
// request is the TCP peer unless that peer is a trusted proxy; then X-Forwarded-For is read from
// its right end, skipping trusted hops, and the first untrusted hop is the client (the entries left
// of it are whatever the client chose to send, so they are never believed). A malformed entry
// stops the walk at the last hop that was well formed. The PROXY protocol is not supported.
#pragma once

#include <optional>
#include <span>
#include <string_view>

#include <boost/asio/ip/address.hpp>

#include "rvenc/common/error.hpp"
#include "rvenc/http/types.hpp"

namespace rvenc::http {

using IpAddress = boost::asio::ip::address;

// An address range "10.0.0.0/8", "fd00::/8", or one address "192.0.2.7" (/32 or /128).
struct Cidr {
  IpAddress network;
  unsigned prefix = 0;  // leading bits that must match
  [[nodiscard]] bool contains(const IpAddress& address) const noexcept;
};

// Parses a CIDR; invalid_request naming the text and the problem (bad address, prefix too long,
// host bits set).
[[nodiscard]] Result<Cidr> parse_cidr(std::string_view text);
// IPv4-mapped IPv6 (::ffff:a.b.c.d) as IPv4; anything else unchanged.
[[nodiscard]] IpAddress normalize_address(const IpAddress& address) noexcept;
// Whether `address` is in one of `ranges`.
[[nodiscard]] bool in_ranges(const IpAddress& address, std::span<const Cidr> ranges) noexcept;

// The client address of `request` received from `peer` (see the design note above).
[[nodiscard]] IpAddress client_address(const IpAddress& peer, const Request& request, std::span<const Cidr> trusted);

}  // namespace rvenc::http
