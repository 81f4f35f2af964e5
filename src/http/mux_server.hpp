// The server side of rvenc-mux/1 (include/rvenc/http/mux.hpp): a connection that took the upgrade
// runs the server's Handler for every REQUEST frame, each stream in a coroutine of its own.
#pragma once

#include <atomic>
#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include "rvenc/http/server.hpp"
#include "rvenc/http/watchdog.hpp"
#include "transport.hpp"

namespace rvenc::http::detail {

// What a multiplexed session uses of the connection it took over.
struct MuxHost {
  Transport& transport;                 // plain TCP or TLS
  const Handler& handler;
  const ServerOptions& options;
  const std::atomic<bool>& stopping;
  bool& idle;                           // true while no stream is open: stop() may close at once
  OperationWatchdog& idle_watchdog;     // bounds the wait for a stream when none is open
  bool trailers = false;                // the client takes TRAILER frames (mux::kTrailersField)
};

// `GET /rvenc/mux` with `Upgrade: rvenc-mux/1`.
[[nodiscard]] bool is_mux_upgrade(const Request& request);
// Whether the upgrade request says the client takes TRAILER frames.
[[nodiscard]] bool mux_client_takes_trailers(const Request& request);
// The 101 answer that turns the connection into rvenc-mux frames (saying that TRAILER frames may
// come when `trailers`).
[[nodiscard]] std::string mux_switching_head(std::string_view server_name, bool trailers);
// Serves streams until the peer closes, stop() empties the connection, or a protocol error;
// returns once every stream's handler has finished. `buffer` holds bytes read after the upgrade.
awaitable<void> serve_mux(MuxHost host, boost::beast::flat_buffer& buffer);

}  // namespace rvenc::http::detail
