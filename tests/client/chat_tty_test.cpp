// `rvenc chat` on a terminal (a real pseudo-terminal): interactive session, streamed reasoning
// dimmed, Ctrl-C cancels the current answer and keeps the session, Ctrl-D exits cleanly.
#include <pty.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <fstream>

#include <gtest/gtest.h>

#include "rvenc/common/hex.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "support/test_support.hpp"

namespace rvenc::client {
namespace {

constexpr auto kWait = std::chrono::seconds(30);  // only against hangs

class Terminal {
 public:
  explicit Terminal(std::vector<std::string> argv) {
    pid_ = forkpty(&fd_, nullptr, nullptr, nullptr);
    if (pid_ == 0) {
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~Terminal() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) close(fd_);
  }

  void type(std::string_view text) { ASSERT_EQ(write(fd_, text.data(), text.size()), static_cast<ssize_t>(text.size())); }

  // Reads until the output after `from` contains `needle`; false on timeout or end of output.
  bool wait_for(std::string_view needle, std::size_t from = 0) {
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    while (output_.find(needle, std::min(from, output_.size())) == std::string::npos) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      fd_set set;
      FD_ZERO(&set);
      FD_SET(fd_, &set);
      timeval tick{0, 50'000};
      if (select(fd_ + 1, &set, nullptr, nullptr, &tick) <= 0) continue;
      char buffer[4096];
      const ssize_t n = read(fd_, buffer, sizeof buffer);
      if (n <= 0) return false;
      output_.append(buffer, static_cast<std::size_t>(n));
    }
    return true;
  }

  int wait_exit() {
    int status = 0;
    for (auto deadline = std::chrono::steady_clock::now() + kWait; std::chrono::steady_clock::now() < deadline;) {
      char buffer[4096];
      (void)!read(fd_, buffer, sizeof buffer);  // drain so the child never blocks on the terminal
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      usleep(20'000);
    }
    return -1;
  }

  [[nodiscard]] const std::string& output() const { return output_; }

 private:
  int fd_ = -1;
  pid_t pid_ = -1;
  bool exited_ = false;
  std::string output_;
};

TEST(ChatTerminal, CtrlCCancelsTheAnswerAndTheSessionGoesOn) {
  test::TempDir dir;
  crypto::Ed25519Seed seed;
  crypto::random_bytes(seed.span());
  {
    std::ofstream(dir.file("platform.key"), std::ios::binary) << crypto::as_chars(seed.span());
  }
  ::chmod(dir.file("platform.key").c_str(), 0600);
  // A slow demo engine, so that an answer is still streaming when Ctrl-C comes. The client talks to
  // the enclave directly (it serves the same endpoints when no gateway token is configured).
  test::ChildProcess enclave({test::rvenc_binary(), "enclave", "--listen", "127.0.0.1:0", "--attestation", "simulated",
                              "--key-file", dir.file("enclave.key"), "--platform-key", dir.file("platform.key"),
                              "--demo-delay-ms", "50"});
  auto url = enclave.wait_for_url();
  ASSERT_TRUE(url) << enclave.output();

  Terminal terminal({test::rvenc_binary(), "chat", "--gateway", *url, "--api-key", "sk_test_tty", "--platform-public-key",
                     to_hex(crypto::ed25519_keypair_from_seed(seed).public_key), "-m", "rvenc-demo"});
  ASSERT_TRUE(terminal.wait_for("> ")) << terminal.output();
  terminal.type("Hello there\n");
  ASSERT_TRUE(terminal.wait_for("\x1b[2m")) << terminal.output();  // reasoning streams, dimmed
  terminal.type("\x03");
  const std::size_t cancelled_at = terminal.output().size();
  ASSERT_TRUE(terminal.wait_for("[cancelled]", cancelled_at)) << terminal.output();
  ASSERT_TRUE(terminal.wait_for("> ", cancelled_at)) << terminal.output();

  // The session continues: the next question gets a whole answer.
  const std::size_t second_at = terminal.output().size();
  terminal.type("Hi\n");
  ASSERT_TRUE(terminal.wait_for("Hello from the rvenc demo engine", second_at)) << terminal.output();
  ASSERT_TRUE(terminal.wait_for("> ", terminal.output().size())) << terminal.output();
  terminal.type("\x04");
  EXPECT_EQ(terminal.wait_exit(), 0) << terminal.output();
}

}  // namespace
}  // namespace rvenc::client
