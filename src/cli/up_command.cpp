// rvenc up: the whole stack on one machine (enclave, gateway, proxy on 127.0.0.1), state in DIR.
//
// Each part runs as a child process of this same binary (/proc/self/exe) in its own process
// group (common/process.hpp), so Ctrl-C or a closed terminal reaches only `up`, and with a
// parent-death signal, so even `kill -9` of `up` stops them. On SIGHUP, SIGINT, SIGTERM or SIGQUIT
// `up` stops the proxy and the gateway (which finish their open streams, `up` says how many), then
// the enclave; a second signal stops everything at once (exit 130). A part that exits on its own
// takes the stack down with a failure exit code.
//
// One stack per DIR: `up` holds DIR/up.lock (flock, exclusive) for its whole life and writes its
// PID into it; a second `up` on DIR is refused (exit 3) naming that PID and the running URLs.
// stack.json says "running": true while the stack runs and false after it stopped; clients also
// try-lock up.lock, so a stack.json left by a killed `up` is not trusted to mean "running".
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <regex>
#include <sstream>
#include <thread>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "command.hpp"
#include "rvenc/bench/process.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/common/process.hpp"
#include "rvenc/client/settings.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "rvenc/enclave/engine.hpp"
#include "rvenc/gateway/gateway.hpp"
#include "rvenc/gateway/key_store.hpp"
#include "rvenc/http/client.hpp"
#include "rvenc/http/local_ca.hpp"

namespace rvenc::cli {
namespace {

namespace fs = std::filesystem;

constexpr std::chrono::seconds kPartStartTimeout{30};
constexpr std::chrono::seconds kPartStopGrace{15};
constexpr std::chrono::milliseconds kReadyPoll{100};
constexpr std::size_t kTokenBytes = 32;
constexpr const char* kUpKeyName = "rvenc-up";

struct UpFlags {
  std::string data = "./.rvenc";
  int gateway_port = 8400;
  int enclave_port = 8401;
  int proxy_port = 3000;
  std::vector<std::string> upstreams;
  bool allow_v1 = false;
  bool allow_v2 = false;
  std::uint64_t max_body = gateway::kDefaultMaxBody;  // the gateway's and the enclave's
  int enclaves = 1;                      // demo enclaves behind the gateway
  std::vector<std::string> demo_models;  // none, one for all, or one per enclave
  bool tls = false;  // the gateway on https with a local test CA (DIR/tls)
};

constexpr int kMaxUpEnclaves = 16;

// The arguments of enclave `index` (0-based) of `rvenc up --enclaves N`: the first keeps
// DIR/enclave.key, the others DIR/enclave-<index+1>.key; ports --enclave-port + index (0: free).
std::vector<std::string> up_enclave_args(const UpFlags& flags, int index, const fs::path& dir) {
  const fs::path key = index == 0 ? dir / "enclave.key" : dir / ("enclave-" + std::to_string(index + 1) + ".key");
  const int port = flags.enclave_port == 0 ? 0 : flags.enclave_port + index;
  std::vector<std::string> args{"enclave", "--listen", "127.0.0.1:" + std::to_string(port), "--key-file",
                                key.string(), "--platform-key", (dir / "platform.key").string(),
                                "--attestation", "simulated", "--gateway-token-file", (dir / "gateway.token").string()};
  std::string test_models;
  for (const auto& u : flags.upstreams) {
    args.insert(args.end(), {"--upstream", u});
    test_models += (test_models.empty() ? "" : ",") + u.substr(0, u.find('='));
  }
  if (!flags.demo_models.empty()) {
    const std::string& demo = flags.demo_models[flags.demo_models.size() == 1 ? 0 : static_cast<std::size_t>(index)];
    args.insert(args.end(), {"--demo-model", demo});
    if (!test_models.empty()) test_models += "," + demo;
  }
  // up's key is a test key: on this machine it may use the user's own upstream models too.
  if (!test_models.empty()) args.insert(args.end(), {"--test-models", test_models});
  args.insert(args.end(), {"--max-body", std::to_string(flags.max_body)});
  if (flags.allow_v1) args.push_back("--allow-v1");
  if (flags.allow_v2) args.push_back("--allow-v2");
  return args;
}

// One part of the stack: a child process whose output is echoed with a "[name] " prefix.
class Part {
 public:
  Part(std::string name, std::vector<std::string> args) : name_(std::move(name)) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    args.insert(args.begin(), "/proc/self/exe");
    // Its own process group (a terminal's signals reach `up` alone) and SIGTERM when `up` dies,
    // even by SIGKILL: the part then stops as it would on `up`'s own request.
    auto pid = spawn_child({.argv = std::move(args), .output_fd = fds[1], .parent_death_signal = SIGTERM});
    ::close(fds[1]);
    if (!pid) {
      ::close(fds[0]);
      throw std::runtime_error(pid.error().message);
    }
    pid_ = *pid;
    reader_ = std::thread([this, fd = fds[0]] { read_output(fd); });
  }
  ~Part() {
    stop();
    if (reader_.joinable()) reader_.join();
  }
  Part(const Part&) = delete;
  Part& operator=(const Part&) = delete;

  // The "listening on http://..." URL, or nullopt when the part exited or took too long.
  std::optional<std::string> wait_for_url(std::chrono::seconds timeout) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, timeout, [&] { return url_.has_value() || output_closed_; });
    return url_;
  }

  [[nodiscard]] const std::string& name() const { return name_; }
  [[nodiscard]] int pid() const { return pid_; }
  // Called when waitpid reported this part's exit.
  void exited(int status) { exit_status_ = status; }
  [[nodiscard]] bool running() const { return !exit_status_.has_value(); }

  // Asks the part to stop (it finishes its open streams first).
  void terminate() {
    if (running()) ::kill(pid_, SIGTERM);
  }
  // Stops it at once.
  void kill_now() {
    if (running()) ::kill(pid_, SIGKILL);
  }
  // Collects its exit status when it has exited; true while it still runs.
  bool poll() {
    int status = 0;
    if (running() && ::waitpid(pid_, &status, WNOHANG) == pid_) exit_status_ = status;
    return running();
  }
  // SIGTERM, then SIGKILL after kPartStopGrace (for the destructor; `up` itself uses stop_parts).
  void stop() {
    terminate();
    const auto deadline = std::chrono::steady_clock::now() + kPartStopGrace;
    while (poll() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    kill_now();
    int status = 0;
    if (running() && ::waitpid(pid_, &status, 0) == pid_) exit_status_ = status;
  }

 private:
  void read_output(int fd) {
    static const std::regex kListening(R"(listening on (https?://[^\s]+))");
    std::string line;
    std::array<char, 4096> buf{};
    ssize_t n;
    while ((n = read(fd, buf.data(), buf.size())) > 0) {
      for (ssize_t i = 0; i < n; ++i) {
        if (buf[static_cast<std::size_t>(i)] != '\n') {
          line.push_back(buf[static_cast<std::size_t>(i)]);
          continue;
        }
        // One write per line: std::cerr is unbuffered and tied to std::cout, so a line written piece
        // by piece could land inside the banner (or flush half of it) from the main thread.
        std::cerr << ("[" + name_ + "] " + line + "\n") << std::flush;
        std::smatch match;
        if (std::regex_search(line, match, kListening)) {
          std::lock_guard lock(mutex_);
          if (!url_) url_ = match[1];
          changed_.notify_all();
        }
        line.clear();
      }
    }
    close(fd);
    std::lock_guard lock(mutex_);
    output_closed_ = true;
    changed_.notify_all();
  }

  std::string name_;
  int pid_ = -1;
  std::optional<int> exit_status_;
  std::thread reader_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::optional<std::string> url_;
  bool output_closed_ = false;
};

// Writes `content` to `path` with mode 0600 (atomically: a temporary file renamed over it).
void write_private_file(const fs::path& path, std::string_view content) {
  const fs::path tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot write " + tmp.string());
  fchmod(fd, 0600);
  const bool ok = ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  ::close(fd);
  if (!ok) throw std::runtime_error("cannot write " + tmp.string());
  fs::rename(tmp, path);
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// The 32-byte Ed25519 seed of the simulated platform, created on first start.
crypto::Ed25519PublicKey platform_public_key(const fs::path& path) {
  if (!fs::exists(path)) {
    auto seed = crypto::random_array<crypto::kEd25519SeedBytes>();
    write_private_file(path, crypto::as_chars(seed));
    crypto::secure_wipe(seed.data(), seed.size());
  }
  std::string bytes = read_file(path);
  if (bytes.size() != crypto::kEd25519SeedBytes) throw std::runtime_error(path.string() + " is not a 32-byte key");
  const crypto::Ed25519Seed seed(std::span<const std::uint8_t, crypto::kEd25519SeedBytes>(
      reinterpret_cast<const std::uint8_t*>(bytes.data()), crypto::kEd25519SeedBytes));
  crypto::secure_wipe(bytes.data(), bytes.size());
  return crypto::ed25519_keypair_from_seed(seed).public_key;
}

// The test key of an earlier `up` (from stack.json) when the database still accepts it, else a new one.
std::string up_api_key(gateway::KeyStore& store, const fs::path& stack_file) {
  if (fs::exists(stack_file)) {
    boost::system::error_code ec;
    const auto previous = boost::json::parse(read_file(stack_file), ec);
    if (!ec && previous.is_object() && previous.as_object().contains("apiKey") &&
        previous.at("apiKey").is_string()) {
      const std::string key(previous.at("apiKey").as_string());
      auto found = store.find_by_hash(gateway::hash_api_key(key));
      if (found && *found && !(*found)->revoked()) return key;
    }
  }
  auto created = store.create_key(kUpKeyName, gateway::KeyEnv::test, {});
  if (!created) throw std::runtime_error(created.error().message);
  return created->key;
}

// "gateway URL, proxy URL/v1" of the stack stack.json describes as running, or "".
std::string running_urls(const fs::path& stack_file) {
  boost::system::error_code ec;
  const auto stack = boost::json::parse(read_file(stack_file), ec);
  if (ec || !stack.is_object()) return {};
  const auto& o = stack.as_object();
  const auto* running = o.if_contains("running");
  const auto* gateway = o.if_contains("gatewayUrl");
  const auto* proxy = o.if_contains("proxyUrl");
  if (!running || !running->is_bool() || !running->as_bool() || !gateway || !gateway->is_string() || !proxy ||
      !proxy->is_string())
    return {};
  return "gateway " + std::string(gateway->as_string()) + ", proxy " + std::string(proxy->as_string()) + "/v1";
}

// Takes DIR/up.lock for the life of this process (the descriptor stays open, close-on-exec so the
// parts do not hold it) and writes our PID into it. false, with the running `up` named on stderr,
// when another process holds it.
bool take_up_lock(const fs::path& lock_file, const fs::path& stack_file, const fs::path& dir) {
  const int fd = ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) throw std::runtime_error("cannot open " + lock_file.string() + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK)
      throw std::runtime_error("cannot lock " + lock_file.string() + ": " + std::strerror(errno));
    std::string pid = read_file(lock_file);
    while (!pid.empty() && std::isspace(static_cast<unsigned char>(pid.back()))) pid.pop_back();
    const std::string urls = running_urls(stack_file);
    std::cerr << "rvenc up: another rvenc up (pid " << (pid.empty() ? "unknown" : pid) << ") is already running on "
              << dir.string() << " (" << (urls.empty() ? "still starting" : urls)
              << "); stop it first, or use another --data DIR\n";
    ::close(fd);
    return false;
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::write(fd, pid.data(), pid.size()) != static_cast<ssize_t>(pid.size()))
    throw std::runtime_error("cannot write " + lock_file.string());
  return true;  // fd stays open: the lock lasts until this process exits
}

// `ca_file`: the test CA of `up --tls` (empty for plain http).
bool gateway_ready(const std::string& gateway_url, const std::string& ca_file) {
  http::HttpClientOptions client_options;
  client_options.ca_file = ca_file;
  auto health = http::fetch("GET", gateway_url + "/healthz", {}, {}, std::chrono::seconds(2), client_options);
  return health && health->result_int() == 200;
}

// The signals that stop the stack (a closed terminal, Ctrl-C, kill, Ctrl-\\), and SIGCHLD to see a
// part that exits on its own. They are blocked and taken with sigwait/sigtimedwait.
sigset_t up_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGCHLD}) sigaddset(&signals, s);
  return signals;
}

// The event streams the gateway relays now (rvenc_gateway_active_streams of its /metrics, read with
// the admin token); nullopt when it does not answer.
std::optional<long> active_streams(const std::string& gateway_url, const std::string& admin_token,
                                   const std::string& ca_file) {
  http::Fields headers;
  headers.set(boost::beast::http::field::authorization, "Bearer " + admin_token);
  http::HttpClientOptions client_options;
  client_options.ca_file = ca_file;
  auto metrics = http::fetch("GET", gateway_url + "/metrics", {}, headers, std::chrono::seconds(2), client_options);
  if (!metrics || metrics->result_int() != 200) return std::nullopt;
  static const std::regex kGauge(R"((?:^|\n)rvenc_gateway_active_streams (\d+))");
  std::smatch match;
  const std::string& body = metrics->body();
  if (!std::regex_search(body, match, kGauge)) return std::nullopt;
  return std::stol(match[1]);
}

// Waits until none of `parts` runs, SIGKILL after kPartStopGrace. A stop signal meanwhile kills
// them at once and sets `forced`.
void wait_parts(const std::vector<Part*>& parts, const sigset_t& signals, bool& forced) {
  const auto deadline = std::chrono::steady_clock::now() + kPartStopGrace;
  for (;;) {
    bool any = false;
    for (Part* part : parts) any = part->poll() || any;
    if (!any) return;
    if (forced || std::chrono::steady_clock::now() > deadline) {
      for (Part* part : parts) part->kill_now();
    }
    const timespec tick{0, 50'000'000};
    const int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig > 0 && sig != SIGCHLD && !forced) {
      std::cerr << "rvenc up: stopping now" << std::endl;
      forced = true;
    }
  }
}

// Stops the parts: the proxy and the gateway first (they finish their open streams while the
// enclave still serves them), then the enclave. true when a second signal cut that short.
bool stop_parts(const std::vector<std::unique_ptr<Part>>& parts, const sigset_t& signals) {
  bool forced = false;
  std::vector<Part*> front, enclave;
  for (const auto& part : parts) (part->name().starts_with("enclave") ? enclave : front).push_back(part.get());
  for (const auto* group : {&front, &enclave}) {
    for (Part* part : *group) part->terminate();
    wait_parts(*group, signals, forced);
  }
  return forced;
}

// How the user runs this binary: "rvenc" when that name in PATH is this file (after `cmake --install`),
// else its path, relative to the working directory when inside it ("./build/rvenc").
std::string invocation_name() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "rvenc";
  if (const char* path = std::getenv("PATH")) {
    std::string_view dirs(path);
    while (!dirs.empty()) {
      const auto colon = dirs.find(':');
      const fs::path candidate = fs::path(dirs.substr(0, colon)) / "rvenc";
      if (fs::equivalent(candidate, self, ec)) return "rvenc";
      dirs = colon == std::string_view::npos ? std::string_view{} : dirs.substr(colon + 1);
    }
  }
  const fs::path relative = self.lexically_relative(fs::current_path(ec));
  if (!ec && !relative.empty() && *relative.begin() != "..") return "./" + relative.string();
  return self.string();
}

std::string listen_arg(int port) { return "127.0.0.1:" + std::to_string(port); }

int run_up(const UpFlags& flags) {
  for (int port : {flags.gateway_port, flags.enclave_port + flags.enclaves - 1, flags.proxy_port})
    if (port < 0 || port > 65535) {
      std::cerr << "rvenc up: ports go from 0 to 65535\n";
      return kExitUsage;
    }
  if (flags.enclaves < 1 || flags.enclaves > kMaxUpEnclaves) {
    std::cerr << "rvenc up: --enclaves goes from 1 to " << kMaxUpEnclaves << "\n";
    return kExitUsage;
  }
  if (flags.demo_models.size() > 1 && flags.demo_models.size() != static_cast<std::size_t>(flags.enclaves)) {
    std::cerr << "rvenc up: give --demo-model once (every enclave serves it) or once per enclave (--enclaves "
              << flags.enclaves << "), not " << flags.demo_models.size() << " times\n";
    return kExitUsage;
  }
  // Everything up and its parts create (database, WAL, keys, token, stack.json) is private.
  umask(077);
  const fs::path dir = fs::absolute(flags.data).lexically_normal();
  fs::create_directories(dir);
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace);
  const fs::path db = dir / "rvenc.db", platform_key = dir / "platform.key",
                 token = dir / "gateway.token", stack_file = dir / client::kStackFileName,
                 admin_token_file = dir / "admin.token";
  if (!take_up_lock(dir / client::kUpLockFileName, stack_file, dir)) return kExitUnavailable;

  if (!fs::exists(token)) write_private_file(token, to_hex(crypto::random_array<kTokenBytes>()) + "\n");
  // The gateway's /healthz details and /metrics are for whoever holds stack.json.
  if (!fs::exists(admin_token_file))
    write_private_file(admin_token_file, to_hex(crypto::random_array<kTokenBytes>()) + "\n");
  std::string admin_token = read_file(admin_token_file);
  while (!admin_token.empty() && std::isspace(static_cast<unsigned char>(admin_token.back()))) admin_token.pop_back();
  const auto platform_public = platform_public_key(platform_key);
  auto store = gateway::KeyStore::open(db.string());
  if (!store) {
    std::cerr << "rvenc up: " << store.error().message << "\n";
    return kExitFailure;
  }
  const std::string api_key = up_api_key(*store, stack_file);

  // The stop signals and SIGCHLD are taken with sigwait below; the parts unblock them after fork.
  const sigset_t signals = up_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);  // a closed terminal must not end `up` before it stopped its parts

  std::vector<std::unique_ptr<Part>> parts;  // in start order; stopped in reverse
  auto start = [&](std::string name, std::vector<std::string> args) -> std::optional<std::string> {
    parts.push_back(std::make_unique<Part>(name, std::move(args)));
    auto url = parts.back()->wait_for_url(kPartStartTimeout);
    if (!url) std::cerr << "rvenc up: the " << name << " did not start (see its output above)\n";
    return url;
  };
  std::optional<boost::json::object> stack;  // what stack.json says once everything answers
  std::optional<std::string> gateway_url;
  std::string ca_file;  // the test CA of --tls, once made
  auto shutdown = [&](int code) {
    if (gateway_url) {
      const auto streams = active_streams(*gateway_url, admin_token, ca_file).value_or(0);
      if (streams > 0)
        std::cerr << "rvenc up: waiting for " << streams << (streams == 1 ? " stream" : " streams")
                  << " to finish (Ctrl-C again to stop now)" << std::endl;
    }
    if (stop_parts(parts, signals) && code == kExitOk) code = kExitInterrupted;
    if (stack) {
      (*stack)["running"] = false;  // the file stays: the next `up` reuses its test key
      write_private_file(stack_file, boost::json::serialize(*stack) + "\n");
    }
    return code;
  };

  std::vector<std::string> enclave_urls;
  std::vector<std::string> gateway_args{"gateway", "--listen", listen_arg(flags.gateway_port), "--db", db.string(),
                                        "--enclave-token-file", token.string(), "--admin-token-file",
                                        admin_token_file.string()};
  for (int i = 0; i < flags.enclaves; ++i) {
    const auto url = start(flags.enclaves == 1 ? "enclave" : "enclave-" + std::to_string(i + 1),
                           up_enclave_args(flags, i, dir));
    if (!url) return shutdown(kExitUnavailable);
    enclave_urls.push_back(*url);
    gateway_args.insert(gateway_args.end(), {"--enclave", *url});
  }
  // The gateway lets the proxy's chat page (/chat) call it from the browser, so the proxy's port
  // must be known before the gateway starts: port 0 is resolved to a free one here.
  int proxy_port = flags.proxy_port;
  if (proxy_port == 0) {
    auto picked = bench::free_port();
    if (!picked) {
      std::cerr << "rvenc up: " << picked.error().message << "\n";
      return shutdown(kExitUnavailable);
    }
    proxy_port = *picked;
  }
  const std::string proxy_origins =
      "http://127.0.0.1:" + std::to_string(proxy_port) + ",http://localhost:" + std::to_string(proxy_port);
  gateway_args.insert(gateway_args.end(),
                      {"--cors-origin", proxy_origins, "--max-body", std::to_string(flags.max_body)});
  const std::string& enclave_url = enclave_urls.front();
  std::optional<http::LocalTlsFiles> tls;
  if (flags.tls) {
    auto files = http::ensure_local_tls(dir / "tls");
    if (!files) {
      std::cerr << "rvenc up: --tls: " << files.error().message << "\n";
      return shutdown(kExitFailure);
    }
    tls = *files;
    gateway_args.insert(gateway_args.end(), {"--tls-cert", tls->cert.string(), "--tls-key", tls->key.string()});
  }
  gateway_url = start("gateway", gateway_args);
  if (!gateway_url) return shutdown(kExitUnavailable);
  const auto ready_deadline = std::chrono::steady_clock::now() + kPartStartTimeout;
  if (tls) ca_file = tls->ca_cert.string();
  while (!gateway_ready(*gateway_url, ca_file)) {
    if (std::chrono::steady_clock::now() > ready_deadline) {
      std::cerr << "rvenc up: the gateway does not reach the enclave\n";
      return shutdown(kExitUnavailable);
    }
    std::this_thread::sleep_for(kReadyPoll);
  }

  const std::string first_model =
      !flags.demo_models.empty() ? flags.demo_models.front()
      : flags.upstreams.empty()  ? std::string(enclave::kDefaultDemoModel)
                                 : flags.upstreams.front().substr(0, flags.upstreams.front().find('='));

  // The proxy keeps its data-encryption keys in DIR so a restarted stack reuses them.
  std::vector<std::string> proxy_args{"proxy", "--listen", listen_arg(proxy_port), "--gateway", *gateway_url,
                                      "--platform-public-key", to_hex(platform_public), "--dek-store",
                                      (dir / "proxy-deks.json").string()};
  if (tls) proxy_args.insert(proxy_args.end(), {"--ca-file", ca_file});
  const auto proxy_url = start("proxy", proxy_args);
  if (!proxy_url) return shutdown(kExitUnavailable);

  stack = boost::json::object{{"gatewayUrl", *gateway_url},
                              {"enclaveUrl", enclave_url},
                              {"enclaveUrls", boost::json::array(enclave_urls.begin(), enclave_urls.end())},
                              {"proxyUrl", *proxy_url},
                              {"apiKey", api_key},
                              {"platformPublicKey", to_hex(platform_public)},
                              {"db", db.string()},
                              {"adminToken", admin_token},
                              {"running", true}};
  if (tls) (*stack)["caFile"] = tls->ca_cert.string();
  write_private_file(stack_file, boost::json::serialize(*stack) + "\n");

  // The banner leaves in one write: the parts' lines are echoed from other threads meanwhile.
  std::ostringstream banner;
  banner << "rvenc up: the stack is running (Ctrl-C stops it; closing this terminal stops it too)\n"
            << "  gateway   " << *gateway_url << "\n"
            << "  enclave   " << enclave_url << " (simulated attestation, platform key " << to_hex(platform_public)
            << ")\n";
  for (std::size_t i = 1; i < enclave_urls.size(); ++i) banner << "  enclave   " << enclave_urls[i] << "\n";
  banner << "  proxy     " << *proxy_url << "/v1 (OpenAI-compatible)\n"
            << "  chat      " << *proxy_url << "/chat (in a browser; encrypts in the page)\n"
            << "  api key   " << api_key << " (test key \"" << kUpKeyName << "\")\n"
            << "  database  " << db.string() << "\n"
            << "  state     " << stack_file.string() << " (locked by " << (dir / client::kUpLockFileName).string()
            << ", pid " << ::getpid() << ")\n\n"
            << "try:  curl -s " << *proxy_url << "/v1/chat/completions -H \"Authorization: Bearer " << api_key
            << "\" -H \"Content-Type: application/json\" -d '{\"model\":\"" << first_model
            << "\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}'\n"
            << "      " << invocation_name() << " chat --data " << dir.string() << " \"Hello\"\n";
  if (tls) {
    banner << "      curl --cacert " << tls->ca_cert.string() << " " << *gateway_url << "/healthz   (the gateway's "
              << "https; test CA " << (tls->new_ca ? "made now" : "reused") << ": trust it only on this machine)\n";
  }
  std::cout << banner.str() << std::flush;

  for (;;) {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig != SIGCHLD) {
      std::cerr << "rvenc up: stopping (" << sigabbrev_np(sig) << ")" << std::endl;
      return shutdown(kExitOk);
    }
    int status = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      for (auto& part : parts) {
        if (part->pid() != pid) continue;
        part->exited(status);
        std::cerr << "rvenc up: the " << part->name() << " exited unexpectedly; stopping the stack" << std::endl;
        return shutdown(kExitFailure);
      }
    }
  }
}

void setup(CLI::App& app, std::function<int()>& run) {
  auto flags = std::make_shared<UpFlags>();
  auto* cmd = app.add_subcommand("up", "Run the whole stack on 127.0.0.1: enclave, gateway and local proxy");
  option(*cmd, "--data", flags->data,
         "State directory (database, keys, stack.json); one running `up` per DIR, held by DIR/up.lock "
         "(a second one exits 3)")
      ->capture_default_str();
  option(*cmd, "--gateway-port", flags->gateway_port, "Gateway port (0 picks a free port)")->capture_default_str();
  option(*cmd, "--enclave-port", flags->enclave_port, "Enclave port (0 picks a free port)")->capture_default_str();
  option(*cmd, "--proxy-port", flags->proxy_port, "Proxy port (0 picks a free port)")->capture_default_str();
  option(*cmd, "--upstream", flags->upstreams, "MODEL=URL of an OpenAI-compatible server for the enclave; repeatable");
  option(*cmd, "--max-body", flags->max_body,
         "Largest sealed request body in bytes, for the gateway and the enclave (a sealed request is about twice "
         "its JSON); clients refuse a larger one before sending it")
      ->capture_default_str()
      ->check(at_least(1));
  flag(*cmd, "--allow-v1", flags->allow_v1, "Let the enclave accept protocol version 1");
  flag(*cmd, "--allow-v2", flags->allow_v2, "Let the enclave accept protocol version 2");
  option(*cmd, "--enclaves", flags->enclaves,
         "Demo enclaves behind the gateway (1-16), each with its own key: DIR/enclave.key for the first, "
         "DIR/enclave-<i>.key for the i-th; ports --enclave-port, +1, ... (stack.json: enclaveUrls)")
      ->capture_default_str();
  option(*cmd, "--demo-model", flags->demo_models,
         "Demo model name: once (every enclave serves it) or once per enclave, in order, e.g. --enclaves 3 "
         "--demo-model a --demo-model a --demo-model b (default: rvenc-demo, or none with --upstream)");
  cmd->footer(
      "The parts inherit up's environment: a part's RVENC_* variable reaches it for every flag up does not "
      "set itself (e.g. RVENC_DEMO_DELAY_MS, RVENC_THREADS, RVENC_SHUTDOWN_GRACE_MS for the enclave, "
      "RVENC_MAX_CONNECTIONS, RVENC_REDIS for the gateway).\nSIGHUP (closed terminal), SIGINT, SIGTERM and "
      "SIGQUIT stop the stack gracefully (open streams may finish); a second signal stops it at once. The "
      "parts die with up even when it is killed with SIGKILL.");
  flag(*cmd, "--tls", flags->tls,
       "Serve the gateway on https with a local test CA made in DIR/tls (reused later); stack.json gets caFile, "
       "the proxy and the CLI trust that CA");
  cmd->callback([&run, flags] { run = [flags] { return run_up(*flags); }; });
}

const Registrar registrar{{"up", setup}};

}  // namespace
}  // namespace rvenc::cli
