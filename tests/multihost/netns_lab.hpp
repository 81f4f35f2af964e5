// A small network of "hosts" for the multi-host tests: one Linux network namespace per host,
// each joined to a bridge in the root namespace by a veth pair, so every service listens on its
// own address and reaches the others only over the (virtual) network, as on separate machines.
//
// Design: everything the lab creates carries a per-run prefix ("rvt" + the test's pid in hex)
// and lives on a /24 of 10.200.0.0/16 that no interface on the machine uses yet; the destructor
// stops the lab's processes and deletes its namespaces and bridge even when a test failed, and a
// new lab first deletes what labs of dead test processes left behind (a SIGKILLed run). Where
// namespaces cannot be made (not root, no `ip`, no CAP_SYS_ADMIN), the lab falls back to
// 127.0.0.x loopback addresses (one per host) and says so: the same processes, one kernel
// network. Services are started by start_service(host, argv) (the harness prefixes
// `ip netns exec`); in(host, {}) is that prefix alone, for a service that runs its own process
// (PgServer: killed and restarted mid-test).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "support/test_support.hpp"

namespace rvenc::test::multihost {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};
// Runs argv (PATH lookup) and waits for it.
CommandResult run_command(const std::vector<std::string>& argv);

struct Host {
  std::string name;     // "redis", "gateway-a", …
  std::string netns;    // "" in loopback mode
  std::string address;  // 10.200.N.K, or 127.0.0.K in loopback mode
};

class NetnsLab {
 public:
  NetnsLab();   // namespaces when it can, else loopback mode (see isolated())
  ~NetnsLab();  // stops the services, deletes the namespaces, veths and the bridge
  NetnsLab(const NetnsLab&) = delete;
  NetnsLab& operator=(const NetnsLab&) = delete;

  // true: each host is its own network namespace; false: loopback addresses (why: fallback_reason()).
  [[nodiscard]] bool isolated() const noexcept { return isolated_; }
  [[nodiscard]] const std::string& fallback_reason() const noexcept { return fallback_reason_; }

  // A new host with its own address (and namespace). Throws std::runtime_error naming the failed
  // `ip` command.
  const Host& add_host(const std::string& name);
  // argv run inside `host` (prefixed with `ip netns exec NS` when isolated; empty argv: the prefix).
  [[nodiscard]] std::vector<std::string> in(const Host& host, std::vector<std::string> argv) const;
  // Starts one long-running service on `host`; the lab stops it (SIGTERM) before tearing down.
  ChildProcess& start_service(const Host& host, std::vector<std::string> argv);
  // Runs one command on `host` and waits for it.
  CommandResult run(const Host& host, std::vector<std::string> argv) const;

 private:
  bool try_isolate();
  void ip(const std::vector<std::string>& args);  // throws on failure
  void teardown() noexcept;

  std::string prefix_;  // "rvt" + pid in hex
  std::string subnet_;  // "10.200.N."
  bool isolated_ = false;
  std::string fallback_reason_;
  bool bridge_made_ = false;
  std::vector<std::unique_ptr<Host>> hosts_;
  std::vector<std::unique_ptr<ChildProcess>> services_;
};

}  // namespace rvenc::test::multihost
