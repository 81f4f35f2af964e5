#include "rvenc/common/process.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstring>

extern char** environ;

namespace rvenc {
namespace {

// The parent's environment with `extra` set on top, as "NAME=value" strings.
std::vector<std::string> child_environment(const std::map<std::string, std::string>& extra) {
  std::vector<std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const auto name = text.substr(0, text.find('='));
    if (!extra.contains(std::string(name))) env.emplace_back(text);
  }
  for (const auto& [name, value] : extra) env.push_back(name + "=" + value);
  return env;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// In the child, between fork() and exec(): only async-signal-safe calls.
[[noreturn]] void exec_child(const SpawnOptions& options, pid_t parent, char** argv, char** envp) {
  if (options.parent_death_signal != 0) ::prctl(PR_SET_PDEATHSIG, options.parent_death_signal);
  // The parent may have died before prctl(): then nobody would send the signal.
  if (::getppid() != parent) ::_exit(127);
  if (options.own_process_group) ::setpgid(0, 0);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD}) ::sigaction(sig, &dfl, nullptr);
  const int null_fd = ::open("/dev/null", O_RDONLY);
  if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
  if (options.output_fd >= 0) {
    ::dup2(options.output_fd, STDOUT_FILENO);
    ::dup2(options.output_fd, STDERR_FILENO);
  }
  // Nothing else of the parent (its sockets, pipes, lock files) leaks into the child.
  ::close_range(3, ~0U, 0);
  if (options.search_path)
    ::execvpe(argv[0], argv, envp);
  else
    ::execve(argv[0], argv, envp);
  ::_exit(127);
}

}  // namespace

Result<int> spawn_child(const SpawnOptions& options) {
  if (options.argv.empty()) return fail(Errc::internal_error, "spawn_child: no program");
  std::vector<std::string> args = options.argv;
  std::vector<std::string> env = child_environment(options.extra_env);
  auto argv = pointers(args);
  auto envp = pointers(env);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return fail(Errc::internal_error, std::string("fork failed: ") + std::strerror(errno));
  if (pid == 0) exec_child(options, parent, argv.data(), envp.data());
  return static_cast<int>(pid);
}

}  // namespace rvenc
