#include "netns_lab.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "rvenc/common/process.hpp"

namespace rvenc::test::multihost {
namespace {

constexpr const char* kPrefix = "rvt";

std::string hex(long value) {
  std::ostringstream out;
  out << std::hex << value;
  return out.str();
}

bool process_alive(long pid) { return std::filesystem::exists("/proc/" + std::to_string(pid)); }

// The pid in a name this harness made ("rvt1a2b-…", "rvt1a2bbr"); -1 when it is not one.
long owner_pid(const std::string& name) {
  if (!name.starts_with(kPrefix)) return -1;
  std::string digits = name.substr(std::string(kPrefix).size());
  if (const auto dash = digits.find('-'); dash != std::string::npos) {
    digits.resize(dash);
  } else if (digits.ends_with("br")) {
    digits.resize(digits.size() - 2);
  } else {
    return -1;
  }
  if (digits.empty() || digits.size() > 8) return -1;
  for (const char c : digits)
    if (std::isxdigit(static_cast<unsigned char>(c)) == 0) return -1;
  return std::stol(digits, nullptr, 16);
}

std::vector<std::string> words_per_line(const std::string& text, std::size_t index) {
  std::vector<std::string> out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string word;
    for (std::size_t i = 0; i <= index && (words >> word); ++i)
      if (i == index) out.push_back(word);
  }
  return out;
}

// Deletes namespaces and bridges left by labs whose test process is gone (a SIGKILLed run).
void sweep_stale() {
  for (const auto& ns : words_per_line(run_command({"ip", "netns", "list"}).output, 0)) {
    const long pid = owner_pid(ns);
    if (pid > 0 && !process_alive(pid)) (void)run_command({"ip", "netns", "del", ns});
  }
  for (auto name : words_per_line(run_command({"ip", "-o", "link", "show", "type", "bridge"}).output, 1)) {
    if (name.ends_with(':')) name.pop_back();
    const long pid = owner_pid(name);
    if (pid > 0 && !process_alive(pid)) (void)run_command({"ip", "link", "del", name});
  }
}

// A 10.200.N.0/24 no interface uses yet ("10.200.N.").
std::string free_subnet() {
  const std::string used = run_command({"ip", "-o", "-4", "addr", "show"}).output;
  const int start = static_cast<int>(getpid() % 254);
  for (int i = 0; i < 254; ++i) {
    const std::string subnet = "10.200." + std::to_string((start + i) % 254 + 1) + ".";
    if (used.find(" " + subnet) == std::string::npos) return subnet;
  }
  throw std::runtime_error("no free 10.200.N.0/24 subnet");
}

}  // namespace

CommandResult run_command(const std::vector<std::string>& argv) {
  char path[] = "/tmp/rvenc-netns-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return {-1, "mkstemp failed"};
  CommandResult result;
  auto pid = spawn_child({.argv = argv, .output_fd = fd, .search_path = true});
  close(fd);
  if (pid) {
    int status = 0;
    while (waitpid(*pid, &status, 0) < 0 && errno == EINTR) {
    }
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  } else {
    result.output = pid.error().message;
  }
  std::ifstream in(path);
  result.output += std::string(std::istreambuf_iterator<char>(in), {});
  std::remove(path);
  return result;
}

NetnsLab::NetnsLab() : prefix_(kPrefix + hex(getpid())) {
  if (try_isolate()) {
    std::cout << "multihost: network namespaces " << prefix_ << "-* on " << subnet_ << "0/24 (bridge "
              << prefix_ << "br)\n";
  } else {
    subnet_ = "127.0.0.";
    std::cout << "multihost: network namespaces unavailable (" << fallback_reason_
              << "); running every host on its own 127.0.0.x loopback address instead\n";
  }
}

NetnsLab::~NetnsLab() { teardown(); }

bool NetnsLab::try_isolate() {
  if (geteuid() != 0) {
    fallback_reason_ = "not root";
    return false;
  }
  if (run_command({"ip", "-V"}).exit_code != 0) {
    fallback_reason_ = "no `ip` command";
    return false;
  }
  sweep_stale();
  const std::string probe = prefix_ + "-probe";
  const auto made = run_command({"ip", "netns", "add", probe});
  if (made.exit_code != 0) {
    fallback_reason_ = "`ip netns add` failed: " + made.output;
    while (!fallback_reason_.empty() && fallback_reason_.back() == '\n') fallback_reason_.pop_back();
    return false;
  }
  (void)run_command({"ip", "netns", "del", probe});
  try {
    subnet_ = free_subnet();
    const std::string bridge = prefix_ + "br";
    ip({"link", "add", bridge, "type", "bridge"});
    bridge_made_ = true;
    ip({"addr", "add", subnet_ + "1/24", "dev", bridge});
    ip({"link", "set", bridge, "up"});
  } catch (const std::exception& e) {
    teardown();
    fallback_reason_ = e.what();
    return false;
  }
  isolated_ = true;
  return true;
}

void NetnsLab::ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto result = run_command(argv);
  if (result.exit_code != 0) {
    std::string shown;
    for (const auto& a : argv) shown += (shown.empty() ? "" : " ") + a;
    throw std::runtime_error("`" + shown + "` failed: " + result.output);
  }
}

const Host& NetnsLab::add_host(const std::string& name) {
  const std::size_t k = hosts_.size() + 10;  // .1 is the root namespace's bridge address
  auto host = std::make_unique<Host>(Host{name, "", subnet_ + std::to_string(k)});
  if (isolated_) {
    host->netns = prefix_ + "-" + name;
    const std::string veth = prefix_ + "v" + std::to_string(k);
    const std::string peer = prefix_ + "p" + std::to_string(k);
    ip({"netns", "add", host->netns});
    hosts_.push_back(std::move(host));  // deleted by teardown() from here on
    const Host& made = *hosts_.back();
    ip({"link", "add", veth, "type", "veth", "peer", "name", peer, "netns", made.netns});
    ip({"link", "set", veth, "master", prefix_ + "br", "up"});
    ip({"-n", made.netns, "addr", "add", made.address + "/24", "dev", peer});
    ip({"-n", made.netns, "link", "set", peer, "up"});
    ip({"-n", made.netns, "link", "set", "lo", "up"});
    return made;
  }
  hosts_.push_back(std::move(host));
  return *hosts_.back();
}

std::vector<std::string> NetnsLab::in(const Host& host, std::vector<std::string> argv) const {
  if (host.netns.empty()) return argv;
  std::vector<std::string> wrapped{"ip", "netns", "exec", host.netns};
  wrapped.insert(wrapped.end(), std::make_move_iterator(argv.begin()), std::make_move_iterator(argv.end()));
  return wrapped;
}

ChildProcess& NetnsLab::start_service(const Host& host, std::vector<std::string> argv) {
  services_.push_back(std::make_unique<ChildProcess>(in(host, std::move(argv))));
  return *services_.back();
}

CommandResult NetnsLab::run(const Host& host, std::vector<std::string> argv) const {
  return run_command(in(host, std::move(argv)));
}

void NetnsLab::teardown() noexcept {
  try {
    while (!services_.empty()) services_.pop_back();  // newest first: gateways before their backends
    for (const auto& host : hosts_)
      if (!host->netns.empty()) (void)run_command({"ip", "netns", "del", host->netns});  // takes its veth along
    hosts_.clear();
    if (bridge_made_) (void)run_command({"ip", "link", "del", prefix_ + "br"});
    bridge_made_ = false;
  } catch (const std::exception& e) {
    std::cerr << "multihost: teardown failed: " << e.what() << "\n";
  }
}

}  // namespace rvenc::test::multihost
