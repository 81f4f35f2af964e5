// rvenc: one binary, one subcommand per role. Each subcommand registers itself (command.hpp).
#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <sstream>

#include "command.hpp"

namespace rvenc::cli {
namespace {
std::vector<Command>& registry() {
  static std::vector<Command> commands;
  return commands;
}
// Servers hold two descriptors per open stream (client side and upstream side), and child
// processes inherit the limit: the soft limit (often 1024) is raised to the hard one.
void raise_file_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
}
// Large answers (an embeddings list is ~130 KiB of JSON, ~270 KiB sealed as hex) are built, relayed
// and decoded in buffers above glibc's default mmap threshold (128 KiB, raised only by frees of
// mmapped blocks): each request then mapped fresh pages and faulted them in, and freed heap tops
// were returned to the kernel to be faulted in again. Page faults were 30 % of the stack's CPU for
// embeddings (perf) and cost ~3x in latency on the VMs this runs on (bench/README.md). Blocks up to
// 32 MiB now come from the heap and up to 16 MiB of free heap top is kept. An operator's own
// GLIBC_TUNABLES win: nothing is changed when it is set.
void keep_large_buffers_in_heap() {
  if (std::getenv("GLIBC_TUNABLES") != nullptr) return;
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 16 << 20);
}
}  // namespace

Registrar::Registrar(Command command) { registry().push_back(std::move(command)); }

CLI::Option* flag(CLI::App& app, const std::string& flag_name, bool& value, const std::string& help) {
  std::string env = "RVENC_";
  for (char c : flag_name.substr(flag_name.find_first_not_of('-')))
    env += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return app.add_flag(flag_name, value, help)->envname(env);
}

CLI::Validator at_least(long long min, long long max) {
  const std::string range = max == 0 ? "≥ " + std::to_string(min)
                                     : "from " + std::to_string(min) + " to " + std::to_string(max);
  return CLI::Validator(
      [min, max, range](std::string& text) -> std::string {
        long double value = 0;
        std::istringstream in(text);
        if (!(in >> value) || !in.eof()) return "must be a number " + range;
        if (value < static_cast<long double>(min) || (max != 0 && value > static_cast<long double>(max)))
          return "must be " + range + " (got " + text + ")";
        return {};
      },
      range);
}

}  // namespace rvenc::cli

int main(int argc, char** argv) {
  using namespace rvenc::cli;
  CLI::App app{"rvenc: end-to-end encrypted LLM chat completions (enclave, gateway, proxy, client)", "rvenc"};
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 done (servers and up: also after a clean stop on SIGINT/SIGTERM/SIGHUP), 1 failed "
      "(the server refused, a check failed), 2 usage (bad flags or arguments), 3 unreachable (no gateway, "
      "stack not running, cannot bind a port), 4 attestation failed (attest verify keeps 1 with the failing "
      "check), 130 interrupted (Ctrl-C; up: a second signal).");
  app.set_version_flag("--version", std::string("rvenc ") + RVENC_VERSION);

  auto commands = registry();
  std::sort(commands.begin(), commands.end(), [](const Command& a, const Command& b) { return a.name < b.name; });
  std::function<int()> run;
  for (auto& command : commands) command.setup(app, run);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() != 0) {
      if (const std::string hint = parse_error_hint(app, argc, argv); !hint.empty()) {
        std::cerr << "rvenc: " << hint << "\nRun with --help for more information.\n";
        return kExitUsage;
      }
    }
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  if (!run) return kExitUsage;
  raise_file_limit();
  keep_large_buffers_in_heap();
  try {
    return run();
  } catch (const std::exception& e) {
    std::cerr << "rvenc: " << e.what() << "\n";
    return kExitFailure;
  }
}
