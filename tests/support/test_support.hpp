// Helpers shared by the tests: the shared vectors, temporary directories, and real child
// processes (the rvenc binary, redis-server, test servers) that are stopped by the test.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <boost/json/value.hpp>

#include "rvenc/crypto/crypto.hpp"
#include "rvenc/protocol/envelope.hpp"
#include "rvenc/protocol/sse.hpp"

namespace rvenc::test {

// ../shared/vectors/<name>.json, parsed.
boost::json::value load_vector_file(const std::string& name);
// tests/vectors/<name>.json of this project (vectors of extensions not in ../shared), parsed.
boost::json::value load_project_vector_file(const std::string& name);
// build/rvenc
std::string rvenc_binary();

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// A child process whose stdout and stderr go to a log file the test can wait on.
class ChildProcess {
 public:
  ChildProcess(std::vector<std::string> argv, std::map<std::string, std::string> extra_env = {});
  ~ChildProcess();  // SIGTERM, then SIGKILL after a grace period
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Waits until the output contains a line matching `regex` (ECMAScript); returns the first
  // capture group (or the whole line). nullopt on timeout or when the process exited first.
  std::optional<std::string> wait_for_line(const std::string& regex,
                                           std::chrono::milliseconds timeout = std::chrono::seconds(20));
  // Waits for "listening on http(s)://HOST:PORT" and returns "http(s)://HOST:PORT".
  std::optional<std::string> wait_for_url(std::chrono::milliseconds timeout = std::chrono::seconds(20));

  [[nodiscard]] std::string output() const;  // everything printed so far
  [[nodiscard]] int pid() const { return pid_; }
  [[nodiscard]] bool running();
  void signal(int sig);
  // Waits for a process that should exit by itself: its exit status, or -1 (still running) after
  // `timeout`.
  int wait_exit(std::chrono::milliseconds timeout);
  // Sends `sig` and waits for exit; returns the exit status (128+signal when killed).
  int stop(int sig = 15, std::chrono::milliseconds grace = std::chrono::seconds(10));

 private:
  int pid_ = -1;
  std::optional<int> exit_status_;
  std::string log_path_;
};

// A free TCP port on 127.0.0.1 (bound and released: only for programs that cannot take port 0).
int free_port();
// Raw sockets on 127.0.0.1 for test servers and clients that send what real ones never would:
// a listening socket on a port the OS picks (stored in `port`; throws when it cannot listen), and
// a socket connected to `port` (-1 when refused).
int listen_on_loopback(int backlog, std::uint16_t& port);
int connect_to_loopback(std::uint16_t port);

// The events of a complete SSE body (a parse failure ends the list).
std::vector<protocol::SseEvent> sse_events(std::string_view body);

// A chat request sealed as the SDK seals it (fresh encapsulation), and what opens its answer.
struct SealedRequest {
  std::string body;  // the envelope
  crypto::SharedSecret shared_secret;
  crypto::Nonce nonce{};
  protocol::Version version = protocol::Version::v3;
};
// Seals `plaintext` to `public_key`; the envelope's keyId and timestamp may be overridden.
SealedRequest seal(const crypto::XWingPublicKey& public_key, std::string_view plaintext,
                   protocol::Version version = protocol::Version::v3,
                   std::optional<std::int64_t> timestamp = std::nullopt,
                   std::optional<crypto::KeyId> key_id = std::nullopt);
// The same with encryption keys made before (reused), a fresh nonce and the current time.
SealedRequest seal_with_keys(const crypto::SharedSecret& shared_secret, const crypto::XWingCipherText& cipher_text,
                             const crypto::KeyId& key_id, std::string_view plaintext,
                             protocol::Version version = protocol::Version::v3,
                             std::optional<std::int64_t> timestamp = std::nullopt);

}  // namespace rvenc::test
