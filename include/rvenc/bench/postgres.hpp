// A throw-away local PostgreSQL server: what `rvenc bench --store postgres` measures the gateway's
// store on, and what the tests start (tests/support/pg_server.hpp) with their own process handles.
//
// Design: only the commands and the directory are prepared here, so each caller runs them with its
// own child-process type. `postgres` refuses to run as root: under root the commands run as the
// unprivileged `nobody` (setpriv) and the directory is handed to it. The binaries come from the
// newest /usr/lib/postgresql/<N>/bin (Debian keeps them off PATH), else from PATH. The server
// listens on one address only (127.0.0.1 unless told; a multi-host test gives it its host's
// address), with its unix socket inside the directory and fsync off (test data; commits stay
// synchronous, so a killed server keeps every transaction it acknowledged). It trusts clients
// from its own subnets (`samenet`: loopback, or the test's own network) and nobody else.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "rvenc/common/error.hpp"

namespace rvenc::bench {

// The superuser initdb makes (trust authentication, 127.0.0.1 and the socket directory only).
inline constexpr std::string_view kLocalPostgresUser = "rvenc";

struct LocalPostgresCommands {
  std::vector<std::string> initdb;    // run once, to completion
  std::vector<std::string> postgres;  // the server; ready at "database system is ready to accept connections"
  std::string ready_line = "database system is ready to accept connections";
  // createdb NAME (run once the server is ready).
  [[nodiscard]] std::vector<std::string> createdb(const std::string& name) const;
  // postgresql://rvenc@ADDRESS:PORT/NAME
  [[nodiscard]] std::string url(const std::string& name) const;

  std::string bin_dir;  // "" when found on PATH
  std::string address = "127.0.0.1";  // the one address it listens on
  std::uint16_t port = 0;
  std::vector<std::string> user_prefix;  // setpriv … -- under root, else empty
};

// The commands for a server with its data in `dir`/data on `address`:`port` (an IPv4 address);
// `dir`/pg_hba.conf is written here; under root, `dir` is handed to `nobody`. invalid_request for
// an address that is not IPv4 dotted-quad, internal_error when the directory cannot be prepared
// (no such user, chown refused, a write failed).
[[nodiscard]] Result<LocalPostgresCommands> prepare_local_postgres(const std::filesystem::path& dir, std::uint16_t port,
                                                                   const std::string& address = "127.0.0.1");

}  // namespace rvenc::bench
