#include "support/test_support.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <boost/json/parse.hpp>

#include "rvenc/common/process.hpp"
#include "rvenc/protocol/sealing.hpp"

namespace rvenc::test {

namespace fs = std::filesystem;

namespace {
std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}
}  // namespace

boost::json::value load_vector_file(const std::string& name) {
  const std::string path = std::string(RVENC_VECTORS_DIR) + "/" + name + ".json";
  const std::string text = read_file(path);
  if (text.empty()) throw std::runtime_error("cannot read test vectors " + path);
  return boost::json::parse(text);
}

boost::json::value load_project_vector_file(const std::string& name) {
  const std::string path = std::string(RVENC_SOURCE_DIR) + "/tests/vectors/" + name + ".json";
  const std::string text = read_file(path);
  if (text.empty()) throw std::runtime_error("cannot read test vectors " + path);
  return boost::json::parse(text);
}

std::string rvenc_binary() { return RVENC_BINARY; }

TempDir::TempDir() {
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto candidate = fs::temp_directory_path() / ("rvenc-test-" + std::to_string(rd()));
    if (fs::create_directory(candidate)) {
      path_ = candidate;
      return;
    }
  }
  throw std::runtime_error("cannot create a temporary directory");
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

ChildProcess::ChildProcess(std::vector<std::string> argv, std::map<std::string, std::string> extra_env) {
  char tmpl[] = "/tmp/rvenc-child-XXXXXX";
  const int log_fd = mkstemp(tmpl);
  if (log_fd < 0) throw std::runtime_error("mkstemp failed");
  log_path_ = tmpl;

  // A test that crashes (no destructors run) must not leave its servers running (parent-death
  // signal); nothing else of the test process (its sockets) leaks into the child.
  auto pid = spawn_child({.argv = std::move(argv),
                          .output_fd = log_fd,
                          .search_path = true,
                          .extra_env = std::move(extra_env)});
  if (!pid) {
    close(log_fd);
    throw std::runtime_error(pid.error().message);
  }
  pid_ = *pid;
  close(log_fd);
}

ChildProcess::~ChildProcess() {
  if (running()) stop(SIGTERM, std::chrono::seconds(5));
  if (std::getenv("RVENC_KEEP_LOGS") == nullptr) std::remove(log_path_.c_str());
}

std::string ChildProcess::output() const { return read_file(log_path_); }

bool ChildProcess::running() {
  if (exit_status_) return false;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == 0) return true;
  exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return false;
}

void ChildProcess::signal(int sig) {
  if (running()) kill(pid_, sig);
}

int ChildProcess::wait_exit(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return running() ? -1 : *exit_status_;
}

int ChildProcess::stop(int sig, std::chrono::milliseconds grace) {
  if (!running()) return *exit_status_;
  kill(pid_, sig);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!running()) return *exit_status_;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  exit_status_ = 128 + SIGKILL;
  return *exit_status_;
}

std::optional<std::string> ChildProcess::wait_for_line(const std::string& regex, std::chrono::milliseconds timeout) {
  const std::regex pattern(regex);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::istringstream lines(output());
    for (std::string line; std::getline(lines, line);) {
      std::smatch m;
      if (std::regex_search(line, m, pattern)) return m.size() > 1 ? m[1].str() : line;
    }
    if (!running() || std::chrono::steady_clock::now() > deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::optional<std::string> ChildProcess::wait_for_url(std::chrono::milliseconds timeout) {
  return wait_for_line(R"(listening on (https?://[0-9.]+:[0-9]+))", timeout);
}

std::vector<protocol::SseEvent> sse_events(std::string_view body) {
  protocol::SseParser parser;
  std::vector<protocol::SseEvent> events;
  (void)parser.feed(body, events);
  return events;
}

SealedRequest seal_with_keys(const crypto::SharedSecret& shared_secret, const crypto::XWingCipherText& cipher_text,
                             const crypto::KeyId& key_id, std::string_view plaintext, protocol::Version version,
                             std::optional<std::int64_t> timestamp) {
  SealedRequest out;
  out.shared_secret = shared_secret;
  out.nonce = crypto::random_nonce();
  out.version = version;
  const protocol::SealInput input{.version = version,
                                  .shared_secret = &shared_secret,
                                  .cipher_text = &cipher_text,
                                  .key_id = key_id,
                                  .nonce = out.nonce,
                                  .timestamp = timestamp.value_or(std::time(nullptr))};
  out.body = protocol::serialize_envelope(protocol::seal_request(input, plaintext));
  return out;
}

SealedRequest seal(const crypto::XWingPublicKey& public_key, std::string_view plaintext, protocol::Version version,
                   std::optional<std::int64_t> timestamp, std::optional<crypto::KeyId> key_id) {
  auto encapsulation = crypto::xwing_encapsulate(public_key);
  if (!encapsulation) throw std::runtime_error("encapsulation failed: " + encapsulation.error().message);
  return seal_with_keys(encapsulation->shared_secret, encapsulation->cipher_text,
                        key_id.value_or(crypto::key_id(public_key)), plaintext, version, timestamp);
}

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

int listen_on_loopback(int backlog, std::uint16_t& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 || ::listen(fd, backlog) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot listen on 127.0.0.1");
  }
  port = ntohs(address.sin_port);
  return fd;
}

int connect_to_loopback(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace rvenc::test
