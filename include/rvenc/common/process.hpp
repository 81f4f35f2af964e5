// Starting a child process the way every rvenc parent needs it (`rvenc up` and its parts, the
// benchmark's enclave/gateway/nginx, the tests' servers): one fork/exec path instead of one per caller.
//
// Design: the child is tied to its parent's life. It gets a parent-death signal (PR_SET_PDEATHSIG)
// and checks right after setting it that the parent it was forked from is still there, so a parent
// killed with SIGKILL (which runs no cleanup) still takes its children with it, even when it died
// between fork() and prctl(). By default the child also runs in a process group of its own, so a
// terminal's SIGHUP or Ctrl-C reaches the parent alone and the parent decides how its children stop.
// The environment is built before fork() (nothing allocates between fork and exec), the signal
// mask and dispositions are reset, stdin is /dev/null and no other descriptor is inherited.
#pragma once

#include <csignal>
#include <map>
#include <string>
#include <vector>

#include "rvenc/common/error.hpp"

namespace rvenc {

struct SpawnOptions {
  std::vector<std::string> argv;                 // argv[0] is the program (a path, or a name when search_path)
  int output_fd = -1;                            // becomes stdout and stderr; -1 keeps the parent's
  bool own_process_group = true;                 // setpgid(0, 0) in the child
  int parent_death_signal = SIGKILL;             // sent to the child when its parent dies
  bool search_path = false;                      // look argv[0] up in PATH
  std::map<std::string, std::string> extra_env;  // set on top of the parent's environment
};

// Forks and execs; the child's PID. The child exits 127 when exec fails or its parent is gone.
[[nodiscard]] Result<int> spawn_child(const SpawnOptions& options);

}  // namespace rvenc
