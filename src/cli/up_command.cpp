// rvenc up: the whole stack on one machine (enclave, gateway, proxy on 127.0.0.1), state in DIR.
//
// Each part runs as a child process of this same binary (/proc/self/exe) in its own process
// group, so Ctrl-C reaches only `up`, which then stops the parts in reverse order. A part that
// exits on its own takes the stack down with a failure exit code.
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
#include <cstring>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <regex>
#include <thread>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "command.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/client/settings.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "rvenc/enclave/engine.hpp"
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
  bool tls = false;  // the gateway on https with a local test CA (DIR/tls)
};

// One part of the stack: a child process whose output is echoed with a "[name] " prefix.
class Part {
 public:
  Part(std::string name, std::vector<std::string> args) : name_(std::move(name)) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    std::vector<std::string> argv{"/proc/self/exe"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      setpgid(0, 0);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      dup2(fds[1], 1);
      dup2(fds[1], 2);
      execv(cargv[0], cargv.data());
      _exit(127);
    }
    close(fds[1]);
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

  // SIGTERM, then SIGKILL after kPartStopGrace.
  void stop() {
    if (!running()) return;
    kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + kPartStopGrace;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_status_ = status;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    exit_status_ = status;
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
        std::cerr << "[" << name_ << "] " << line << std::endl;
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
  http::ClientOptions client_options;
  client_options.ca_file = ca_file;
  auto health = http::fetch("GET", gateway_url + "/healthz", {}, {}, std::chrono::seconds(2), client_options);
  return health && health->result_int() == 200;
}

std::string listen_arg(int port) { return "127.0.0.1:" + std::to_string(port); }

int run_up(const UpFlags& flags) {
  for (int port : {flags.gateway_port, flags.enclave_port, flags.proxy_port})
    if (port < 0 || port > 65535) {
      std::cerr << "rvenc up: ports go from 0 to 65535\n";
      return kExitUsage;
    }
  // Everything up and its parts create (database, WAL, keys, token, stack.json) is private.
  umask(077);
  const fs::path dir = fs::absolute(flags.data).lexically_normal();
  fs::create_directories(dir);
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace);
  const fs::path db = dir / "rvenc.db", enclave_key = dir / "enclave.key", platform_key = dir / "platform.key",
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

  // SIGINT/SIGTERM/SIGCHLD are taken with sigwait below; the parts unblock them after fork.
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGINT, SIGTERM, SIGCHLD}) sigaddset(&signals, s);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::vector<std::unique_ptr<Part>> parts;  // in start order; stopped in reverse
  auto start = [&](std::string name, std::vector<std::string> args) -> std::optional<std::string> {
    parts.push_back(std::make_unique<Part>(name, std::move(args)));
    auto url = parts.back()->wait_for_url(kPartStartTimeout);
    if (!url) std::cerr << "rvenc up: the " << name << " did not start (see its output above)\n";
    return url;
  };
  std::optional<boost::json::object> stack;  // what stack.json says once everything answers
  auto shutdown = [&](int code) {
    for (auto it = parts.rbegin(); it != parts.rend(); ++it) (*it)->stop();
    if (stack) {
      (*stack)["running"] = false;  // the file stays: the next `up` reuses its test key
      write_private_file(stack_file, boost::json::serialize(*stack) + "\n");
    }
    return code;
  };

  std::vector<std::string> enclave_args{"enclave", "--listen", listen_arg(flags.enclave_port), "--key-file",
                                        enclave_key.string(), "--platform-key", platform_key.string(),
                                        "--attestation", "simulated", "--gateway-token-file", token.string()};
  std::string upstream_models;
  for (const auto& u : flags.upstreams) {
    enclave_args.insert(enclave_args.end(), {"--upstream", u});
    upstream_models += (upstream_models.empty() ? "" : ",") + u.substr(0, u.find('='));
  }
  // up's key is a test key: on this machine it may use the user's own upstream models too.
  if (!upstream_models.empty()) enclave_args.insert(enclave_args.end(), {"--test-models", upstream_models});
  if (flags.allow_v1) enclave_args.push_back("--allow-v1");
  if (flags.allow_v2) enclave_args.push_back("--allow-v2");
  const auto enclave_url = start("enclave", enclave_args);
  if (!enclave_url) return shutdown(kExitUnavailable);

  std::vector<std::string> gateway_args{"gateway", "--listen", listen_arg(flags.gateway_port), "--enclave",
                                        *enclave_url, "--db", db.string(), "--enclave-token-file", token.string(),
                                        "--admin-token-file", admin_token_file.string()};
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
  const auto gateway_url = start("gateway", gateway_args);
  if (!gateway_url) return shutdown(kExitUnavailable);
  const auto ready_deadline = std::chrono::steady_clock::now() + kPartStartTimeout;
  const std::string ca_file = tls ? tls->ca_cert.string() : std::string();
  while (!gateway_ready(*gateway_url, ca_file)) {
    if (std::chrono::steady_clock::now() > ready_deadline) {
      std::cerr << "rvenc up: the gateway does not reach the enclave\n";
      return shutdown(kExitUnavailable);
    }
    std::this_thread::sleep_for(kReadyPoll);
  }

  const std::string first_model =
      flags.upstreams.empty() ? std::string(enclave::kDefaultDemoModel) : flags.upstreams.front().substr(0, flags.upstreams.front().find('='));

  // The proxy keeps its data-encryption keys in DIR so a restarted stack reuses them.
  std::vector<std::string> proxy_args{"proxy", "--listen", listen_arg(flags.proxy_port), "--gateway", *gateway_url,
                                      "--platform-public-key", to_hex(platform_public), "--dek-store",
                                      (dir / "proxy-deks.json").string()};
  if (tls) proxy_args.insert(proxy_args.end(), {"--ca-file", ca_file});
  const auto proxy_url = start("proxy", proxy_args);
  if (!proxy_url) return shutdown(kExitUnavailable);

  stack = boost::json::object{{"gatewayUrl", *gateway_url},
                              {"enclaveUrl", *enclave_url},
                              {"proxyUrl", *proxy_url},
                              {"apiKey", api_key},
                              {"platformPublicKey", to_hex(platform_public)},
                              {"db", db.string()},
                              {"adminToken", admin_token},
                              {"running", true}};
  if (tls) (*stack)["caFile"] = tls->ca_cert.string();
  write_private_file(stack_file, boost::json::serialize(*stack) + "\n");

  std::cout << "rvenc up: the stack is running (Ctrl-C stops it)\n"
            << "  gateway   " << *gateway_url << "\n"
            << "  enclave   " << *enclave_url << " (simulated attestation, platform key " << to_hex(platform_public)
            << ")\n";
  std::cout << "  proxy     " << *proxy_url << "/v1 (OpenAI-compatible)\n"
            << "  api key   " << api_key << " (test key \"" << kUpKeyName << "\")\n"
            << "  database  " << db.string() << "\n"
            << "  state     " << stack_file.string() << " (locked by " << (dir / client::kUpLockFileName).string()
            << ", pid " << ::getpid() << ")\n\n"
            << "try:  curl -s " << *proxy_url << "/v1/chat/completions -H \"Authorization: Bearer " << api_key
            << "\" -H \"Content-Type: application/json\" -d '{\"model\":\"" << first_model
            << "\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}'\n"
            << "      rvenc chat --data " << dir.string() << " \"Hello\"" << std::endl;
  if (tls) {
    std::cout << "      curl --cacert " << tls->ca_cert.string() << " " << *gateway_url << "/healthz   (the gateway's "
              << "https; test CA " << (tls->new_ca ? "made now" : "reused") << ": trust it only on this machine)"
              << std::endl;
  }

  for (;;) {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig != SIGCHLD) {
      std::cerr << "rvenc up: stopping" << std::endl;
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
  flag(*cmd, "--allow-v1", flags->allow_v1, "Let the enclave accept protocol version 1");
  flag(*cmd, "--allow-v2", flags->allow_v2, "Let the enclave accept protocol version 2");
  flag(*cmd, "--tls", flags->tls,
       "Serve the gateway on https with a local test CA made in DIR/tls (reused later); stack.json gets caFile, "
       "the proxy and the CLI trust that CA");
  cmd->callback([&run, flags] { run = [flags] { return run_up(*flags); }; });
}

const Registrar registrar{{"up", setup}};

}  // namespace
}  // namespace rvenc::cli
