// What the benchmark needs from the operating system: child processes (the real rvenc enclave and
// gateway, nginx) with their output in a log file, the CPU time and resident memory of a process
// from /proc, facts about the machine, and the nginx configuration of the baseline proxy.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rvenc/common/error.hpp"

namespace rvenc::bench {

inline constexpr std::chrono::milliseconds kChildStartTimeout{30'000};
inline constexpr std::chrono::milliseconds kChildStopGrace{5'000};

// A child process; stdout and stderr go to `log_file`. It is killed with the benchmark
// (PR_SET_PDEATHSIG) and stopped (SIGTERM, then SIGKILL after kChildStopGrace) when destroyed.
class ChildProcess {
 public:
  // `extra_env` is set on top of this process's environment (e.g. OPENSSL_CONF).
  ChildProcess(std::vector<std::string> argv, std::filesystem::path log_file,
               std::map<std::string, std::string> extra_env = {});
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  [[nodiscard]] int pid() const noexcept { return pid_; }
  [[nodiscard]] std::string output() const;
  // The first capture of the first output line matching `regex`; internal_error when the process
  // exits first or `timeout` passes (the message names the program and ends with its output).
  [[nodiscard]] Result<std::string> wait_for(const std::string& regex,
                                             std::chrono::milliseconds timeout = kChildStartTimeout);
  // "http://HOST:PORT" (or https://) from the "listening on http(s)://HOST:PORT" line.
  [[nodiscard]] Result<std::string> wait_for_url(std::chrono::milliseconds timeout = kChildStartTimeout) {
    return wait_for(R"(listening on (https?://[0-9.:\[\]a-z]+))", timeout);
  }
  // Exit status once it has exited (waits up to `timeout`), nullopt while it still runs.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  // SIGTERM, then SIGKILL after `grace`; returns the exit status.
  int stop(std::chrono::milliseconds grace = kChildStopGrace);

 private:
  std::string program_;
  std::filesystem::path log_file_;
  int pid_ = -1;
  std::optional<int> status_;
};

// utime + stime of `pid` in seconds (/proc/<pid>/stat); nullopt when unreadable.
[[nodiscard]] std::optional<double> process_cpu_seconds(int pid);
// The same to the nanosecond: the run time of each of its threads (/proc/<pid>/task/*/schedstat)
// added up, for costs too small for clock ticks (a TLS handshake); falls back to
// process_cpu_seconds when the kernel has no schedstat. Threads that exited are not counted.
[[nodiscard]] std::optional<double> process_cpu_seconds_precise(int pid);
// CPU time of the calling thread in seconds (CLOCK_THREAD_CPUTIME_ID).
[[nodiscard]] double thread_cpu_seconds();
// VmRSS of `pid` in KiB (/proc/<pid>/status); nullopt when unreadable.
[[nodiscard]] std::optional<std::uint64_t> process_rss_kib(int pid);
// The "model name" of /proc/cpuinfo ("unknown" when absent).
[[nodiscard]] std::string cpu_model();
// The first field of /proc/loadavg (1-minute load average), nullopt when unreadable.
[[nodiscard]] std::optional<double> load_average();
// A free TCP port on 127.0.0.1 (bound, then released: for nginx, which cannot report port 0).
[[nodiscard]] Result<std::uint16_t> free_port();
// True once 127.0.0.1:port accepts a TCP connection (polled until `timeout`).
[[nodiscard]] bool wait_for_port(std::uint16_t port, std::chrono::milliseconds timeout);
// Writes `content` to `path` (replaced) and makes it readable by its owner only (keys, tokens).
void write_secret(const std::filesystem::path& path, std::string_view content);
// Standard output and error of `command` run by /bin/sh (for `nginx -v`); empty on failure.
[[nodiscard]] std::string command_output(const std::string& command);

// The baseline proxy: nginx forwarding everything to the enclave like the gateway does (same
// gateway-token Authorization and X-Rvenc-Tenant headers), without buffering, over HTTP/1.1
// keep-alive upstream connections.
struct NginxConfig {
  std::filesystem::path dir;  // holds the config, pid, logs and temp paths
  std::uint16_t listen_port = 0;
  std::uint16_t enclave_port = 0;
  std::string gateway_token;
  std::string tenant;                    // the API key id the gateway would send
  std::string key_env = "live";          // X-Rvenc-Key-Env (test keys may only use test models)
  unsigned upstream_keepalive = 256;     // idle upstream connections kept (http::HttpClientOptions::kDefaultMaxIdlePerHost)
  unsigned worker_connections = 8192;
  // TLS on the listener (`rvenc bench --tls`) when both are set: PEM chain and key, TLS 1.3 with
  // the one suite `tls_suite` (the gateway gets the same through OPENSSL_CONF), session tickets on.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_suite;
};
[[nodiscard]] std::string render_nginx_config(const NginxConfig& config);

// One plain proxy hop: nginx forwarding 127.0.0.1:listen_port to 127.0.0.1:upstream_port with the
// baseline's proxying (HTTP/1.1 keep-alive upstream, no buffering) and nothing added. Two in a row,
// in front of the engine, are what any two-hop design costs this machine (`rvenc bench`'s
// embeddings floor compares the gateway and enclave with them).
struct NginxRelayConfig {
  std::filesystem::path dir;
  std::uint16_t listen_port = 0;
  std::uint16_t upstream_port = 0;
  unsigned upstream_keepalive = 256;
  unsigned worker_connections = 8192;
};
[[nodiscard]] std::string render_nginx_relay_config(const NginxRelayConfig& config);

// nginx running `config_text`, written to DIR/nginx.conf (owner-only: it may hold the gateway
// token) with its logs in DIR; returns once 127.0.0.1:port accepts, else internal_error with
// nginx's output.
[[nodiscard]] Result<std::unique_ptr<ChildProcess>> start_nginx(const std::string& binary,
                                                                const std::filesystem::path& dir,
                                                                std::string_view config_text, std::uint16_t port);

// Two relay hops in a row (DIR/relay-far forwarding to `upstream_port`, DIR/relay-near to it);
// callers use `port`, the near hop's. Destroyed near hop first.
struct NginxRelays {
  std::unique_ptr<ChildProcess> far;
  std::unique_ptr<ChildProcess> near;
  std::uint16_t port = 0;
};
[[nodiscard]] Result<NginxRelays> start_nginx_relays(const std::string& binary, const std::filesystem::path& dir,
                                                     std::uint16_t upstream_port);

}  // namespace rvenc::bench
