// `rvenc chat` on a terminal (a real pseudo-terminal): interactive session, streamed reasoning
// dimmed, Ctrl-C cancels the current answer and keeps the session, Ctrl-D exits cleanly; the
// model's and the gateway's control sequences never reach the terminal (unless --raw).
#include <pty.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <fstream>

#include <gtest/gtest.h>

#include "fake_gateway.hpp"
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
    while (output_.find(needle, std::min(from, output_.size())) == std::string::npos)
      if (!read_more(deadline)) return false;
    return true;
  }

  // Reads all the program writes until it closes the terminal (exits); false on timeout.
  bool read_to_end() {
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    while (read_more(deadline)) {
    }
    return std::chrono::steady_clock::now() <= deadline;
  }

  // The exit status once the program ends within `within`; -1 if it does not. Its output is
  // drained meanwhile (so it never blocks on the terminal) without blocking here.
  int wait_exit(std::chrono::milliseconds within = kWait) {
    int status = 0;
    for (auto deadline = std::chrono::steady_clock::now() + within; std::chrono::steady_clock::now() < deadline;) {
      if (!read_more(deadline)) usleep(20'000);  // at the end of output: the exit is near
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
    }
    return -1;
  }

  [[nodiscard]] const std::string& output() const { return output_; }

 private:
  // Waits up to 50 ms for output and appends it; false at the end of output or past `deadline`.
  bool read_more(std::chrono::steady_clock::time_point deadline) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    fd_set set;
    FD_ZERO(&set);
    FD_SET(fd_, &set);
    timeval tick{0, 50'000};
    if (select(fd_ + 1, &set, nullptr, nullptr, &tick) <= 0) return true;
    char buffer[4096];
    const ssize_t n = read(fd_, buffer, sizeof buffer);
    if (n <= 0) return false;
    output_.append(buffer, static_cast<std::size_t>(n));
    return true;
  }

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
  // Ctrl-D at the empty prompt ends the session. A key that arrives while the line editor switches
  // the terminal to raw mode can be lost (seen once: the session stayed at its prompt), as it would
  // be for a user, who presses it again: so does the test.
  int status = -1;
  for (int attempt = 0; attempt < 5 && status == -1; ++attempt) {
    terminal.type("\x04");
    status = terminal.wait_exit(std::chrono::seconds(3));
  }
  EXPECT_EQ(status, 0) << terminal.output();
}


// Security review, issue 30 item 10: what the model and the gateway say is shown without
// terminal control sequences; our own dimming of reasoning is the only escape the terminal gets.
class ChatTerminalControls : public ::testing::Test {
 protected:
  std::vector<std::string> chat(std::vector<std::string> extra) const {
    std::vector<std::string> argv{test::rvenc_binary(), "chat", "--gateway", gateway.url(),
                                  "--api-key", std::string(test::FakeGateway::kApiKey), "--platform-public-key",
                                  to_hex(gateway.platform_public_key()), "-m", "demo"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }
  // The output without the dim/reset codes rvenc chat itself writes around reasoning.
  static std::string without_own_codes(std::string text) {
    for (std::string_view own : {"\x1b[2m", "\x1b[0m"})
      for (auto at = text.find(own); at != std::string::npos; at = text.find(own)) text.erase(at, own.size());
    return text;
  }
  test::FakeGateway gateway;
};

TEST_F(ChatTerminalControls, ModelOutputIsStripped) {
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    using test::chunk_json;
    return test::Reply{.pieces = test::FakeGateway::sealed(
                           sealer, {chunk_json({{"role", "assistant"}, {"reasoning_content", "think\x1b]0;pwned\x07 hard"}}),
                                    chunk_json({{"content", "Hello \x1b]52;c;Y2xpcGJvYXJk\x07"}}),
                                    chunk_json({{"content", "\x1b[2J\x1b[31mworld\x1b"}}),  // split: ESC | ]0;...
                                    chunk_json({{"content", "]0;title\x07 d\x08one\xc2\x9b" "31m ✓"}}, "stop")})};
  });
  Terminal terminal(chat({"Hi"}));
  ASSERT_TRUE(terminal.read_to_end()) << terminal.output();
  EXPECT_EQ(terminal.wait_exit(), 0) << terminal.output();
  const std::string shown = without_own_codes(terminal.output());
  EXPECT_EQ(shown.find('\x1b'), std::string::npos) << shown;
  EXPECT_EQ(shown.find("\xc2\x9b"), std::string::npos) << shown;
  EXPECT_EQ(shown.find('\x08'), std::string::npos) << shown;
  EXPECT_NE(shown.find("think hard"), std::string::npos) << shown;
  EXPECT_NE(shown.find("Hello world done31m ✓"), std::string::npos) << shown;
}

TEST_F(ChatTerminalControls, GatewayErrorMessageIsStripped) {
  gateway.set_script([](protocol::ResponseSealer&, const protocol::ChatRequest&) {
    return test::Reply{.error = http::error_response(Error{Errc::invalid_request, "bad \x1b]52;c;AAAA\x07request"})};
  });
  Terminal terminal(chat({"Hi"}));
  ASSERT_TRUE(terminal.read_to_end()) << terminal.output();
  EXPECT_EQ(terminal.wait_exit(), 1) << terminal.output();
  EXPECT_EQ(terminal.output().find('\x1b'), std::string::npos) << terminal.output();
  EXPECT_NE(terminal.output().find("bad request"), std::string::npos) << terminal.output();
}

TEST_F(ChatTerminalControls, RawKeepsThem) {
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    return test::Reply{.pieces = test::FakeGateway::sealed(sealer, {test::chunk_json({{"content", "a\x1b[31mb"}}, "stop")})};
  });
  Terminal terminal(chat({"--raw", "Hi"}));
  ASSERT_TRUE(terminal.read_to_end()) << terminal.output();
  EXPECT_EQ(terminal.wait_exit(), 0) << terminal.output();
  EXPECT_NE(terminal.output().find("a\x1b[31mb"), std::string::npos) << terminal.output();
}

// Issue 29: interactive chat had no line editing or history and sent "/exit" to the model.
TEST_F(ChatTerminalControls, SessionCommandsAndHistoryNeverReachTheModel) {
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    return test::Reply{.pieces = test::FakeGateway::sealed(sealer, {test::chunk_json({{"content", "ok"}}, "stop")})};
  });
  Terminal terminal(chat({}));
  ASSERT_TRUE(terminal.wait_for("> ")) << terminal.output();
  terminal.type("/model other\n");
  ASSERT_TRUE(terminal.wait_for("[model other]")) << terminal.output();
  std::size_t at = terminal.output().size();
  terminal.type("first\n");
  ASSERT_TRUE(terminal.wait_for("ok", at)) << terminal.output();
  ASSERT_TRUE(terminal.wait_for("> ", at + 2)) << terminal.output();
  auto sent = gateway.last_request();
  EXPECT_EQ(sent.at("model").as_string(), "other");
  EXPECT_EQ(sent.at("messages").as_array().size(), 1u);

  terminal.type("/reset\n");
  ASSERT_TRUE(terminal.wait_for("[conversation cleared]")) << terminal.output();
  at = terminal.output().size();
  terminal.type("second\n");
  ASSERT_TRUE(terminal.wait_for("ok", at)) << terminal.output();
  ASSERT_TRUE(terminal.wait_for("> ", at + 2)) << terminal.output();
  sent = gateway.last_request();
  ASSERT_EQ(sent.at("messages").as_array().size(), 1u);  // the first exchange was dropped
  EXPECT_EQ(sent.at("messages").as_array()[0].at("content").as_string(), "second");

  // Up arrow: the previous line from the history (libedit), sent again.
  at = terminal.output().size();
  terminal.type("\x1b[A\n");
  ASSERT_TRUE(terminal.wait_for("ok", at)) << terminal.output();
  ASSERT_TRUE(terminal.wait_for("> ", at + 2)) << terminal.output();
  sent = gateway.last_request();
  ASSERT_EQ(sent.at("messages").as_array().size(), 3u);
  EXPECT_EQ(sent.at("messages").as_array()[2].at("content").as_string(), "second");

  terminal.type("/exti\n");
  ASSERT_TRUE(terminal.wait_for("[unknown command /exti")) << terminal.output();
  terminal.type("/exit\n");
  EXPECT_EQ(terminal.wait_exit(), 0) << terminal.output();
  EXPECT_EQ(gateway.chat_requests.load(), 3);  // no command was sent
}

// Issue 29: `rvenc chat --max-tokens 5 hi` printed nothing (reasoning used the budget) and exit 0.
TEST_F(ChatTerminalControls, AnAnswerCutByTheTokenLimitSaysSo) {
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    return test::Reply{.pieces = test::FakeGateway::sealed(
                           sealer, {test::chunk_json({{"reasoning_content", "thinking"}}, "length")})};
  });
  Terminal terminal(chat({"--max-tokens", "5", "Hi"}));
  ASSERT_TRUE(terminal.read_to_end()) << terminal.output();
  EXPECT_EQ(terminal.wait_exit(), 0) << terminal.output();
  EXPECT_NE(terminal.output().find("[the answer was cut at --max-tokens 5"), std::string::npos) << terminal.output();
}

}  // namespace
}  // namespace rvenc::client
