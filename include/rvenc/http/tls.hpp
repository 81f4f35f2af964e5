// TLS for every rvenc hop: the one place that makes OpenSSL contexts (client and server), sets a
// client connection up for its host, and says in words why a handshake failed.
//
// Design: OpenSSL 3 through Boost.Asio's ssl::stream, nothing hand-written. Both sides require
// TLS 1.2 or later (1.3 is negotiated whenever the peer has it). A client context always verifies
// the server: against the system trust store (set_default_verify_paths) or, when a PEM bundle is
// given, against that bundle only (a private CA). There is no way to turn verification off. Each
// client connection sends SNI for host names and checks the certificate against the host name, or
// against an IP SAN for an IP literal. A failed handshake becomes Errc::tls_error with a message
// that names the cause (unknown issuer, host-name mismatch, expired, not TLS at all, protocol
// version); a plain client that gets TLS bytes back is told to use https:// (looks_like_tls).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/ssl/context.hpp>
#include <boost/system/error_code.hpp>

#include "rvenc/common/error.hpp"

namespace rvenc::http {

using TlsContext = boost::asio::ssl::context;

inline constexpr std::string_view kHttpsScheme = "https";

// A client context: TLS 1.2 minimum, peer verification on; trusts `ca_file` (a PEM bundle) when
// given, else the system trust store. tls_error naming the file when it cannot be loaded.
[[nodiscard]] Result<std::shared_ptr<TlsContext>> make_client_tls_context(const std::string& ca_file = {});

// A server context: TLS 1.2 minimum, the certificate chain (PEM, leaf first) and its private key
// (PEM). tls_error naming the file when either cannot be loaded or they do not match.
[[nodiscard]] Result<std::shared_ptr<TlsContext>> make_server_tls_context(const std::string& cert_chain_file,
                                                                        const std::string& key_file);

// Sets a new client connection up for `host` (no brackets for IPv6): SNI for a host name, and
// verification of the certificate against the host name or the IP literal. tls_error on failure.
[[nodiscard]] Status prepare_client_tls(SSL* ssl, const std::string& host);

// The tls_error for a failed client handshake with `where` ("host:port"): `ec` from the
// handshake, `verify_result` from SSL_get_verify_result.
[[nodiscard]] Error tls_handshake_error(const boost::system::error_code& ec, long verify_result,
                                        std::string_view where);

// True when `bytes` begins like a TLS record (alert or handshake, version 3.x): what a plain
// http:// client receives from a TLS port.
[[nodiscard]] bool looks_like_tls(std::string_view bytes) noexcept;

}  // namespace rvenc::http
