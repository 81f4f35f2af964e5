// rvenc: one binary, one subcommand per role. Each subcommand registers itself (command.hpp).
#include <sys/resource.h>

#include <algorithm>
#include <cctype>
#include <iostream>
#include <memory>

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
}  // namespace

Registrar::Registrar(Command command) { registry().push_back(std::move(command)); }

CLI::Option* flag(CLI::App& app, const std::string& flag_name, bool& value, const std::string& help) {
  std::string env = "RVENC_";
  for (char c : flag_name.substr(flag_name.find_first_not_of('-')))
    env += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return app.add_flag(flag_name, value, help)->envname(env);
}

}  // namespace rvenc::cli

int main(int argc, char** argv) {
  using namespace rvenc::cli;
  CLI::App app{"rvenc: end-to-end encrypted LLM chat completions (enclave, gateway, proxy, client)", "rvenc"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("rvenc ") + RVENC_VERSION);

  auto commands = registry();
  std::sort(commands.begin(), commands.end(), [](const Command& a, const Command& b) { return a.name < b.name; });
  std::function<int()> run;
  for (auto& command : commands) command.setup(app, run);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  if (!run) return kExitUsage;
  raise_file_limit();
  try {
    return run();
  } catch (const std::exception& e) {
    std::cerr << "rvenc: " << e.what() << "\n";
    return kExitFailure;
  }
}
