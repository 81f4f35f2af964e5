#include "rvenc/bench/process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "rvenc/common/process.hpp"

namespace rvenc::bench {
namespace {

constexpr std::chrono::milliseconds kPoll{20};
// The tail of a child's output quoted in an error message.
constexpr std::size_t kOutputTail = 2000;

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// A socket bound to 127.0.0.1:port, or -1.
int loopback_socket(std::uint16_t port, bool connect_to) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int rc = connect_to ? ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr)
                            : ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  if (rc != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

ChildProcess::ChildProcess(std::vector<std::string> argv, std::filesystem::path log_file,
                           std::map<std::string, std::string> extra_env)
    : program_(argv.empty() ? std::string() : std::filesystem::path(argv.front()).filename().string()),
      log_file_(std::move(log_file)) {
  const int log_fd = ::open(log_file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  auto pid = spawn_child(
      {.argv = std::move(argv), .output_fd = log_fd, .own_process_group = false, .extra_env = std::move(extra_env)});
  pid_ = pid ? *pid : -1;
  if (log_fd >= 0) ::close(log_fd);
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) stop();
}

std::string ChildProcess::output() const { return read_text(log_file_); }

Result<std::string> ChildProcess::wait_for(const std::string& regex, std::chrono::milliseconds timeout) {
  const std::regex pattern(regex);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const std::string text = output();
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
      std::smatch match;
      if (std::regex_search(line, match, pattern)) return match.size() > 1 ? match[1].str() : line;
    }
    const bool exited = pid_ <= 0 || wait_exit(std::chrono::milliseconds(0)).has_value();
    if (exited || std::chrono::steady_clock::now() > deadline) {
      const std::string tail = text.size() > kOutputTail ? text.substr(text.size() - kOutputTail) : text;
      return fail(Errc::internal_error, program_ + (exited ? " exited" : " did not start in time") +
                                            " (log " + log_file_.string() + "):\n" + tail);
    }
    std::this_thread::sleep_for(kPoll);
  }
}

std::optional<int> ChildProcess::wait_exit(std::chrono::milliseconds timeout) {
  if (status_) return status_;
  if (pid_ <= 0) return std::nullopt;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return status_;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(kPoll);
  }
}

int ChildProcess::stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return -1;
  if (!status_) {
    ::kill(pid_, SIGTERM);
    if (!wait_exit(grace)) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      status_ = 128 + SIGKILL;
    }
  }
  return *status_;
}

std::optional<double> process_cpu_seconds(int pid) {
  const std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  // The command name (field 2) is in parentheses and may hold spaces: count fields after ')'.
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(close + 1));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  // Fields after ')' start at field 3 (state); utime and stime are fields 14 and 15.
  for (int index = 3; index <= 15 && fields >> field; ++index) {
    if (index == 14) utime = std::stoull(field);
    if (index == 15) stime = std::stoull(field);
  }
  const long ticks = ::sysconf(_SC_CLK_TCK);
  if (ticks <= 0) return std::nullopt;
  return static_cast<double>(utime + stime) / static_cast<double>(ticks);
}

std::optional<double> process_cpu_seconds_precise(int pid) {
  const std::filesystem::path tasks = "/proc/" + std::to_string(pid) + "/task";
  std::error_code ec;
  std::uint64_t nanoseconds = 0;
  bool any = false;
  for (const auto& task : std::filesystem::directory_iterator(tasks, ec)) {
    // schedstat: time on the CPU (ns), time waiting to run (ns), time slices.
    std::ifstream in(task.path() / "schedstat");
    std::uint64_t on_cpu = 0;
    if (in >> on_cpu) {
      nanoseconds += on_cpu;
      any = true;
    }
  }
  if (ec || !any) return process_cpu_seconds(pid);
  return static_cast<double>(nanoseconds) / 1e9;
}

double thread_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

std::optional<std::uint64_t> process_rss_kib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  }
  return std::nullopt;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown";
}

std::optional<double> load_average() {
  std::ifstream in("/proc/loadavg");
  double value = 0;
  if (in >> value) return value;
  return std::nullopt;
}

Result<std::uint16_t> free_port() {
  const int fd = loopback_socket(0, false);
  if (fd < 0) return fail(Errc::internal_error, "cannot bind a free port on 127.0.0.1");
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool wait_for_port(std::uint16_t port, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    const int fd = loopback_socket(port, true);
    if (fd >= 0) {
      ::close(fd);
      return true;
    }
    std::this_thread::sleep_for(kPoll);
  }
  return false;
}

std::string command_output(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return out;
  std::array<char, 512> buffer{};
  while (std::fgets(buffer.data(), buffer.size(), pipe)) out += buffer.data();
  ::pclose(pipe);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

namespace {

// What every nginx of the bench shares: one worker in the foreground, its files under `dir`, no
// access log, keep-alive without limit; the caller adds its upstream and server blocks and the
// closing brace of `http`.
void render_nginx_head(std::ostream& out, const std::filesystem::path& dir_path, unsigned worker_connections) {
  const std::string dir = dir_path.string();
  out << "daemon off;\nmaster_process off;\nworker_processes 1;\n"
      << "pid " << dir << "/nginx.pid;\n"
      << "error_log " << dir << "/error.log warn;\n"
      << "events { worker_connections " << worker_connections << "; }\n"
      << "http {\n"
      << "  access_log off;\n"
      << "  client_body_temp_path " << dir << "/client_body;\n"
      << "  proxy_temp_path " << dir << "/proxy;\n"
      << "  fastcgi_temp_path " << dir << "/fastcgi;\n"
      << "  uwsgi_temp_path " << dir << "/uwsgi;\n"
      << "  scgi_temp_path " << dir << "/scgi;\n"
      << "  client_max_body_size 8m;\n"
      << "  keepalive_requests 1000000;\n";
}

// The upstream block `name` of one server on 127.0.0.1:port, `keepalive` idle connections kept.
void render_nginx_upstream(std::ostream& out, std::string_view name, std::uint16_t port, unsigned keepalive) {
  out << "  upstream " << name << " {\n"
      << "    server 127.0.0.1:" << port << ";\n"
      << "    keepalive " << keepalive << ";\n"
      << "    keepalive_requests 1000000;\n"
      << "  }\n";
}

// Proxying as the gateway does: HTTP/1.1 keep-alive upstream, nothing buffered either way.
void render_nginx_proxying(std::ostream& out, std::string_view upstream) {
  out << "      proxy_pass http://" << upstream << ";\n"
      << "      proxy_http_version 1.1;\n"
      << "      proxy_set_header Connection \"\";\n"
      << "      proxy_buffering off;\n"
      << "      proxy_request_buffering off;\n"
      << "      chunked_transfer_encoding on;\n"
      << "      proxy_read_timeout 300s;\n";
}

}  // namespace

std::string render_nginx_config(const NginxConfig& c) {
  const bool tls = !c.tls_cert_file.empty() && !c.tls_key_file.empty();
  std::ostringstream out;
  out << "# Generated by rvenc bench: the baseline proxy in place of the rvenc gateway.\n";
  render_nginx_head(out, c.dir, c.worker_connections);
  render_nginx_upstream(out, "enclave", c.enclave_port, c.upstream_keepalive);
  out << "  server {\n"
      << "    listen 127.0.0.1:" << c.listen_port << (tls ? " ssl" : "") << ";\n";
  if (tls) {
    out << "    ssl_certificate " << c.tls_cert_file << ";\n"
        << "    ssl_certificate_key " << c.tls_key_file << ";\n"
        << "    ssl_protocols TLSv1.3;\n";
    if (!c.tls_suite.empty()) out << "    ssl_conf_command Ciphersuites " << c.tls_suite << ";\n";
    out << "    ssl_session_tickets on;\n";
  }
  out << "    location / {\n";
  render_nginx_proxying(out, "enclave");
  out << "      proxy_set_header Authorization \"Bearer " << c.gateway_token << "\";\n"
      << "      proxy_set_header X-Rvenc-Tenant \"" << c.tenant << "\";\n"
      << "      proxy_set_header X-Rvenc-Key-Env \"" << c.key_env << "\";\n"
      << "    }\n"
      << "  }\n"
      << "}\n";
  return out.str();
}

std::string render_nginx_relay_config(const NginxRelayConfig& c) {
  std::ostringstream out;
  out << "# Generated by rvenc bench: one plain proxy hop (the machine's floor for two hops).\n";
  render_nginx_head(out, c.dir, c.worker_connections);
  render_nginx_upstream(out, "next", c.upstream_port, c.upstream_keepalive);
  out << "  server {\n"
      << "    listen 127.0.0.1:" << c.listen_port << ";\n"
      << "    location / {\n";
  render_nginx_proxying(out, "next");
  out << "    }\n"
      << "  }\n"
      << "}\n";
  return out.str();
}

Result<std::unique_ptr<ChildProcess>> start_nginx(const std::string& binary, const std::filesystem::path& dir,
                                                  std::string_view config_text, std::uint16_t port) {
  std::filesystem::create_directories(dir);
  write_secret(dir / "nginx.conf", config_text);
  auto nginx = std::make_unique<ChildProcess>(
      std::vector<std::string>{binary, "-p", dir.string(), "-e", (dir / "error.log").string(), "-c",
                               (dir / "nginx.conf").string()},
      dir / "nginx.log");
  if (!wait_for_port(port, kChildStartTimeout))
    return fail(Errc::internal_error, "nginx (" + dir.filename().string() + ") did not start: " + nginx->output());
  return nginx;
}

Result<NginxRelays> start_nginx_relays(const std::string& binary, const std::filesystem::path& dir,
                                       std::uint16_t upstream_port) {
  NginxRelays relays;
  for (auto* hop : {&relays.far, &relays.near}) {
    auto port = free_port();
    if (!port) return std::unexpected(port.error());
    NginxRelayConfig config;
    config.dir = dir / (hop == &relays.far ? "relay-far" : "relay-near");
    config.listen_port = *port;
    config.upstream_port = upstream_port;
    auto started = start_nginx(binary, config.dir, render_nginx_relay_config(config), *port);
    if (!started) return std::unexpected(started.error());
    *hop = std::move(*started);
    upstream_port = *port;
  }
  relays.port = upstream_port;
  return relays;
}

void write_secret(const std::filesystem::path& path, std::string_view content) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(content.data(), static_cast<std::streamsize>(content.size()));
  std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

}  // namespace rvenc::bench
