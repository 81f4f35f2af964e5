#include "gateway_test_support.hpp"

#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <thread>

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include "rvenc/common/hex.hpp"

namespace rvenc::gateway::test_support {

CliResult run_cli(const std::vector<std::string>& args) {
  std::string command = "'" + test::rvenc_binary() + "'";
  for (const auto& a : args) command += " '" + a + "'";
  return run_shell(command);
}

CliResult run_shell(const std::string& command) {
  CliResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return result;
  std::array<char, 4096> buf{};
  std::size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) result.out.append(buf.data(), n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::unique_ptr<test::ChildProcess> start_enclave(const test::TempDir& dir, long long demo_delay_ms,
                                                  const std::vector<std::string>& extra_args) {
  {
    std::ofstream token(dir.file("gateway.token"));
    token << "test-gateway-token-0123456789abcdef\n";
  }
  std::vector<std::string> argv{test::rvenc_binary(), "enclave", "--attestation", "simulated", "--listen",
                                "127.0.0.1:0", "--key-file", dir.file("enclave.key"), "--platform-key",
                                dir.file("platform.key"), "--gateway-token-file", dir.file("gateway.token"),
                                "--demo-delay-ms", std::to_string(demo_delay_ms)};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  return std::make_unique<test::ChildProcess>(argv);
}

std::unique_ptr<test::ChildProcess> start_gateway(const std::vector<std::string>& enclave_urls, const std::string& db,
                                                  const std::string& token_file,
                                                  const std::vector<std::string>& extra_args) {
  std::vector<std::string> argv{test::rvenc_binary(), "gateway", "--listen", "127.0.0.1:0", "--db", db};
  for (const auto& url : enclave_urls) {
    argv.push_back("--enclave");
    argv.push_back(url);
  }
  if (!token_file.empty()) {
    argv.push_back("--enclave-token-file");
    argv.push_back(token_file);
  }
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  return std::make_unique<test::ChildProcess>(argv);
}

protocol::AttestationDocument attest(const std::string& gateway_url, const std::string& platform_key_file) {
  const auto challenge = crypto::random_array<protocol::kChallengeBytes>();
  auto response = http::fetch("GET", gateway_url + "/rvenc/attestation?challenge=" + to_hex(challenge));
  if (!response || response->result_int() != 200) throw std::runtime_error("attestation through the gateway failed");
  auto doc = protocol::parse_attestation(response->body());
  if (!doc) throw std::runtime_error("bad attestation: " + doc.error().message);

  std::ifstream in(platform_key_file, std::ios::binary);
  std::array<std::uint8_t, crypto::kEd25519SeedBytes> seed_bytes{};
  in.read(reinterpret_cast<char*>(seed_bytes.data()), seed_bytes.size());
  protocol::AttestationPolicy policy;
  policy.allowed_providers = {"simulated"};
  policy.simulated_platform_key = crypto::ed25519_keypair_from_seed(crypto::Ed25519Seed(seed_bytes)).public_key;
  if (auto ok = protocol::verify_attestation(*doc, challenge, policy); !ok)
    throw std::runtime_error("attestation does not verify: " + ok.error().message);
  return *doc;
}

Sealed seal_chat(const std::string& gateway_url, const std::string& platform_key_file, const std::string& prompt,
                 protocol::Version version) {
  const auto doc = attest(gateway_url, platform_key_file);
  return seal_chat(doc, first_model(gateway_url), prompt, version);
}

std::string first_model(const std::string& gateway_url) {
  auto models = http::fetch("GET", gateway_url + "/rvenc/models");
  if (!models || models->result_int() != 200) throw std::runtime_error("models through the gateway failed");
  return std::string(boost::json::parse(models->body()).at("data").as_array().at(0).at("id").as_string());
}

Sealed seal_chat(const protocol::AttestationDocument& doc, const std::string& model, const std::string& prompt,
                 protocol::Version version) {
  const std::string plaintext = R"({"model":")" + model + R"(","stream":true,"messages":[{"role":"user","content":")" +
                                prompt + R"("}]})";
  return test::seal(doc.public_key, plaintext, version, std::nullopt, doc.key_id);
}

Result<http::Response> post_chat(const std::string& gateway_url, const std::string& body,
                                 std::optional<std::string> api_key) {
  http::Fields headers;
  headers.set(boost::beast::http::field::content_type, "application/json");
  if (api_key) headers.set(boost::beast::http::field::authorization, "Bearer " + *api_key);
  return http::fetch("POST", gateway_url + "/rvenc/chat/completions", body, headers);
}


Result<std::string> open_stream(const Sealed& sealed, const std::vector<protocol::SseEvent>& events) {
  protocol::ResponseOpener opener(sealed.version, sealed.shared_secret, sealed.nonce);
  std::string plaintext;
  for (const auto& event : events) {
    const auto kind = protocol::kind_from_name(event.event);
    if (!kind) continue;
    auto opened = opener.open(*kind, event.data);
    if (!opened) return std::unexpected(opened.error());
    plaintext += opened->plaintext.view();
  }
  if (!opener.done()) return fail(Errc::truncated_stream, "no done event");
  return plaintext;
}

std::string error_code(const std::string& body) {
  boost::system::error_code ec;
  auto value = boost::json::parse(body, ec);
  if (ec || !value.is_object() || !value.as_object().contains("error")) return "<not an error: " + body + ">";
  return std::string(value.at("error").at("code").as_string());
}

std::vector<UsageRow> wait_for_usage(const std::string& db, const std::string& key_id, std::size_t count,
                                     std::chrono::milliseconds timeout) {
  auto store = KeyStore::open(db);
  if (!store) return {};
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<UsageRow> mine;
  for (;;) {
    mine.clear();
    std::size_t final_rows = 0;
    for (auto& row : store->recent_usage(1000).value_or(std::vector<UsageRow>{})) {
      if (row.key_id != key_id) continue;
      final_rows += row.final ? 1 : 0;
      mine.push_back(row);
    }
    if (final_rows >= count || std::chrono::steady_clock::now() > deadline) return mine;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

namespace {
// Bytes per slice, and the pause after each (long enough for the reader to take it alone).
constexpr std::size_t kSliceBytes = 5;
constexpr auto kSlicePause = std::chrono::microseconds(30);
}  // namespace

SlicingProxy::SlicingProxy(std::uint16_t target_port) : target_port_(target_port) {
  constexpr int kBacklog = 64;
  listener_ = test::listen_on_loopback(kBacklog, port_);
  acceptor_ = std::thread([this] {
    for (;;) {
      const int client = ::accept(listener_, nullptr, nullptr);
      if (client < 0) return;
      const int upstream = test::connect_to_loopback(target_port_);
      if (upstream < 0) {
        ::close(client);
        continue;
      }
      const int one = 1;
      ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      std::lock_guard lock(mutex_);
      sockets_.push_back(client);
      sockets_.push_back(upstream);
      threads_.emplace_back([this, client, upstream] { pump(client, upstream, false); });
      threads_.emplace_back([this, client, upstream] { pump(upstream, client, true); });
    }
  });
}

SlicingProxy::~SlicingProxy() {
  ::shutdown(listener_, SHUT_RDWR);
  acceptor_.join();
  {
    std::lock_guard lock(mutex_);
    for (const int fd : sockets_) ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& thread : threads_) thread.join();
  for (const int fd : sockets_) ::close(fd);
  ::close(listener_);
}

void SlicingProxy::pump(int from, int to, bool sliced) {
  std::array<char, 16 * 1024> buffer{};
  for (;;) {
    const auto n = ::recv(from, buffer.data(), buffer.size(), 0);
    if (n <= 0) break;
    for (std::size_t sent = 0; sent < static_cast<std::size_t>(n);) {
      const std::size_t piece = sliced ? std::min(kSliceBytes, static_cast<std::size_t>(n) - sent)
                                       : static_cast<std::size_t>(n) - sent;
      const auto m = ::send(to, buffer.data() + sent, piece, MSG_NOSIGNAL);
      if (m <= 0) {
        ::shutdown(from, SHUT_RDWR);
        return;
      }
      sent += static_cast<std::size_t>(m);
      if (sliced) std::this_thread::sleep_for(kSlicePause);
    }
  }
  ::shutdown(to, SHUT_WR);
}

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds guard) {
  const auto deadline = std::chrono::steady_clock::now() + guard;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

int count_admitted(int count, const std::function<std::pair<unsigned, std::string>(int)>& chat) {
  int admitted = 0;
  for (int i = 0; i < count; ++i) {
    const auto [status, code] = chat(i);
    if (status == 200) {
      ++admitted;
    } else {
      EXPECT_EQ(status, 429u) << code;
      EXPECT_EQ(code, "rate_limit_exceeded");
    }
  }
  return admitted;
}

}  // namespace rvenc::gateway::test_support
