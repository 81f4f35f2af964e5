// A real PostgreSQL server for tests: initdb into a temporary directory, `postgres` on a free
// port of 127.0.0.1 (or of another address of the test's, run under a prefix such as
// `ip netns exec NS`: the multi-host test's database host) with its unix socket in that
// directory, fsync off; stopped (and the directory removed) when the object goes away. It can be
// stopped and started again on the same port mid-test (a store outage), and makes one database
// per test.
//
// Design: the commands come from bench::prepare_local_postgres (as `nobody` under root, Debian's
// /usr/lib/postgresql/<newest>/bin); this runs them as test child processes. Usable from any
// test binary (the store's, the gateway's, a multi-host harness): link rvenc_pg_test_support.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "rvenc/bench/postgres.hpp"
#include "support/test_support.hpp"

namespace rvenc::test {

struct PgServerOptions {
  std::string address = "127.0.0.1";  // the one address it listens on
  // Prepended to initdb's and postgres's command lines (e.g. NetnsLab::in(host, {})).
  std::vector<std::string> prefix;
};

class PgServer {
 public:
  // initdb and start; ready() says whether it came up (the reason in output()).
  explicit PgServer(PgServerOptions options = {});
  ~PgServer();
  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;

  // Starts it (again, on the same port) and waits until it accepts connections.
  bool start();
  // Stops it: `crash` kills it (SIGKILL, like a power cut), else a fast shutdown (SIGINT).
  void stop(bool crash = false);

  [[nodiscard]] bool ready() const { return ready_; }
  [[nodiscard]] int port() const { return port_; }
  // postgresql://rvenc@ADDRESS:PORT/DBNAME
  [[nodiscard]] std::string url(const std::string& dbname) const;
  // A fresh database "rvenc_test_N" (N counts up in this process); its URL, or "" on failure.
  [[nodiscard]] std::string create_database();
  // What initdb and postgres printed (for failure messages).
  [[nodiscard]] std::string output() const;

 private:
  TempDir dir_;
  int port_;
  bool ready_ = false;
  bench::LocalPostgresCommands commands_;
  std::string init_output_;
  std::unique_ptr<ChildProcess> process_;
  int databases_ = 0;
};

// The one server of a test binary, started at first use (one postgres per binary keeps the
// suite fast; each test takes a database of its own).
PgServer& shared_pg_server();

}  // namespace rvenc::test
