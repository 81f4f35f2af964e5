// What anyone on the network can do to a real gateway process without an API key: hold its
// connections (idle or from one address), read /healthz and /metrics, and flood
// GET /rvenc/attestation in front of an enclave whose hardware takes 200 ms per report.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include <boost/json/parse.hpp>

#include "enclave/fake_tsm.hpp"
#include "gateway_test_support.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/gateway/key_store.hpp"

namespace rvenc::gateway {
namespace {

using namespace test_support;
using namespace std::chrono_literals;
namespace beast_http = boost::beast::http;

constexpr const char* kAdminToken = "admin-token-for-the-tests-0123456789";

// A TCP connection to `url` that sends nothing until told to.
class SilentConnection {
 public:
  explicit SilentConnection(const std::string& url) : fd_(test::connect_to_loopback(http::parse_url(url)->port)) {
    timeval guard{20, 0};  // against hangs only
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &guard, sizeof guard);
  }
  ~SilentConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  SilentConnection(const SilentConnection&) = delete;
  SilentConnection& operator=(const SilentConnection&) = delete;
  [[nodiscard]] bool connected() const { return fd_ >= 0; }
  // One keep-alive request and the first bytes of its answer: the gateway has taken the connection.
  [[nodiscard]] bool served() {
    const std::string_view request = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    if (::send(fd_, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) return false;
    char buffer[512];
    return ::recv(fd_, buffer, sizeof buffer, 0) > 0;
  }

 private:
  int fd_;
};

class GatewayConnections : public ::testing::Test {
 protected:
  void start(const std::vector<std::string>& gateway_flags) {
    enclave = start_enclave(dir);
    auto url = enclave->wait_for_url();
    ASSERT_TRUE(url) << enclave->output();
    gateway = start_gateway({*url}, db, dir.file("gateway.token"), gateway_flags);
    auto gw = gateway->wait_for_url();
    ASSERT_TRUE(gw) << gateway->output();
    gateway_url = *gw;
  }

  std::string admin_token_file() const {
    std::ofstream(dir.file("admin.token")) << kAdminToken << "\n";
    return dir.file("admin.token");
  }

  test::TempDir dir;
  std::string db = dir.file("gateway.db");
  std::unique_ptr<test::ChildProcess> enclave;
  std::unique_ptr<test::ChildProcess> gateway;
  std::string gateway_url;
};

Result<http::Response> get(const std::string& url, std::optional<std::string> bearer = std::nullopt) {
  http::Fields headers;
  if (bearer) headers.set(beast_http::field::authorization, "Bearer " + *bearer);
  return http::fetch("GET", url, {}, headers, std::chrono::seconds(10));
}

// Finding: 20 idle connections filled a gateway started with --max-connections 20 for 60 s (the
// idle timeout) plus 30 s (the read timeout). Now a silent connection is closed after the
// first-byte timeout and the gateway serves again.
TEST_F(GatewayConnections, IdleConnectionsDoNotFillTheGateway) {
  ASSERT_NO_FATAL_FAILURE(start({"--max-connections", "20", "--first-byte-timeout-ms", "500"}));
  std::vector<std::unique_ptr<SilentConnection>> idle;
  for (int i = 0; i < 20; ++i) {
    idle.push_back(std::make_unique<SilentConnection>(gateway_url));
    ASSERT_TRUE(idle.back()->connected());
  }
  // Served again once the silent ones are closed (the old idle timeout would take 60 s).
  unsigned status = 0;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (status != 200 && std::chrono::steady_clock::now() < deadline) {
    auto health = get(gateway_url + "/healthz");
    status = health ? health->result_int() : 0;
    if (status != 200) std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(status, 200u) << gateway->output();
}

// One address may hold at most --max-connections-per-ip connections; the refusal is counted.
TEST_F(GatewayConnections, PerAddressCapRefusesTheNextConnectionAndCountsIt) {
  ASSERT_NO_FATAL_FAILURE(start({"--max-connections-per-ip", "3"}));  // given: loopback counts too
  {
    std::vector<std::unique_ptr<SilentConnection>> held;
    for (int i = 0; i < 3; ++i) {
      held.push_back(std::make_unique<SilentConnection>(gateway_url));
      ASSERT_TRUE(held.back()->served());  // accepted and kept alive
    }
    auto refused = get(gateway_url + "/healthz");
    ASSERT_TRUE(refused) << refused.error().message;
    EXPECT_EQ(refused->result_int(), 429u) << refused->body();
    EXPECT_EQ(error_code(refused->body()), "rate_limit_exceeded");
  }
  // The held ones closed: the address has its connections back.
  // Until the server has seen them close, a new connection is refused too (and counted).
  std::optional<Result<http::Response>> metrics;
  int refused_meanwhile = 0;
  for (int i = 0; i < 100; ++i) {
    metrics = get(gateway_url + "/metrics");
    if (*metrics && (*metrics)->result_int() == 200) break;
    if (*metrics && (*metrics)->result_int() == 429) ++refused_meanwhile;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(*metrics);
  ASSERT_EQ((*metrics)->result_int(), 200u);
  const std::string counted =
      "rvenc_gateway_connections_refused_total{reason=\"per_ip\"} " + std::to_string(1 + refused_meanwhile) + "\n";
  EXPECT_NE((*metrics)->body().find(counted), std::string::npos) << (*metrics)->body();
  EXPECT_NE(gateway->output().find("3 per address"), std::string::npos) << gateway->output();
}

// Finding: /healthz listed the enclaves' internal URLs and keyIds to anyone.
TEST_F(GatewayConnections, HealthzIsAPublicStatusAndItsDetailsAndMetricsNeedTheAdminToken) {
  ASSERT_NO_FATAL_FAILURE(start({"--admin-token-file", admin_token_file()}));
  EXPECT_NE(gateway->output().find("/healthz details and /metrics need the admin token"), std::string::npos)
      << gateway->output();
  EXPECT_EQ(gateway->output().find(kAdminToken), std::string::npos);
  for (const char* path : {"/healthz", "/health"}) {
    auto open = get(gateway_url + path);
    ASSERT_TRUE(open);
    EXPECT_EQ(open->result_int(), 200u);
    EXPECT_EQ(open->body(), R"({"status":"ok"})") << path;

    auto admin = get(gateway_url + path, kAdminToken);
    ASSERT_TRUE(admin);
    EXPECT_EQ(admin->result_int(), 200u);
    const auto details = boost::json::parse(admin->body()).as_object();
    EXPECT_EQ(details.at("enclavesUp").as_int64(), 1);
    EXPECT_EQ(details.at("enclaves").as_array().at(0).at("keyId").as_string().size(), 16u);

    auto wrong = get(gateway_url + path, "not-the-admin-token");
    ASSERT_TRUE(wrong);
    EXPECT_EQ(wrong->result_int(), 401u);
    EXPECT_EQ(error_code(wrong->body()), "invalid_api_key");
  }
  auto metrics = get(gateway_url + "/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->result_int(), 401u);
  EXPECT_EQ(error_code(metrics->body()), "invalid_api_key");
  EXPECT_EQ(metrics->body().find("rvenc_gateway"), std::string::npos);
  auto admin_metrics = get(gateway_url + "/metrics", kAdminToken);
  ASSERT_TRUE(admin_metrics);
  EXPECT_EQ(admin_metrics->result_int(), 200u);
  EXPECT_NE(admin_metrics->body().find("rvenc_gateway_enclaves_up 1"), std::string::npos);
}

TEST_F(GatewayConnections, WithoutAnAdminTokenTheDetailsStayPublicAndTheStartupLineSaysSo) {
  ASSERT_NO_FATAL_FAILURE(start({}));
  EXPECT_NE(gateway->output().find("warning: no --admin-token-file"), std::string::npos) << gateway->output();
  auto health = get(gateway_url + "/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->result_int(), 200u);
  EXPECT_EQ(boost::json::parse(health->body()).at("enclavesUp").as_int64(), 1);
  auto metrics = get(gateway_url + "/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->result_int(), 200u);
}

// --- attestation flood ------------------------------------------------------------------------

// `rvenc enclave --attestation sev-snp` on a fake configfs-tsm whose reports take `delay` each.
// The provider's report entry is named after the enclave's pid, so the process starts behind a
// shell that waits for the entry to exist and then becomes the enclave (exec keeps the pid).
struct SlowHardwareEnclave {
  SlowHardwareEnclave(const test::TempDir& dir, std::chrono::milliseconds delay,
                      const std::vector<std::string>& extra_args) {
    {
      std::ofstream token(dir.file("gateway.token"));
      token << "test-gateway-token-0123456789abcdef\n";
    }
    const std::string root = dir.file("tsm");
    std::filesystem::create_directories(root);
    std::string command = "while [ ! -e '" + dir.file("tsm.ready") + "' ]; do sleep 0.05; done; exec '" +
                          test::rvenc_binary() + "' enclave --attestation sev-snp --tsm-root '" + root +
                          "' --listen 127.0.0.1:0 --key-file '" + dir.file("enclave.key") +
                          "' --gateway-token-file '" + dir.file("gateway.token") + "'";
    for (const auto& arg : extra_args) command += " '" + arg + "'";
    process = std::make_unique<test::ChildProcess>(std::vector<std::string>{"/bin/sh", "-c", command});
    tsm = std::make_unique<enclave::fake::FakeTsm>(root, "rvenc-" + std::to_string(process->pid()), "sev_guest",
                                                   enclave::TsmKind::sev_snp, true, delay);
    std::ofstream(dir.file("tsm.ready")) << "go\n";
  }
  ~SlowHardwareEnclave() {
    process.reset();  // before the fake it reads from
    tsm.reset();
  }

  std::unique_ptr<enclave::fake::FakeTsm> tsm;
  std::unique_ptr<test::ChildProcess> process;
};

// A request sealed to the key the gateway's attestation names (the fake hardware's evidence
// is not verified here: what matters is that chat keeps working).
Sealed seal_for(const std::string& gateway_url, const std::string& api_key) {
  const auto challenge = crypto::random_array<protocol::kChallengeBytes>();
  auto response = get(gateway_url + "/rvenc/attestation?challenge=" + to_hex(challenge), api_key);
  if (!response || response->result_int() != 200) throw std::runtime_error("attestation through the gateway failed");
  auto doc = protocol::parse_attestation(response->body());
  if (!doc) throw std::runtime_error("bad attestation: " + doc.error().message);
  return test::seal(doc->public_key, R"({"model":"rvenc-demo","stream":true,"messages":[{"role":"user","content":"Hi"}]})",
                    protocol::Version::v3, std::nullopt, doc->key_id);
}

struct FloodCounts {
  std::atomic<int> ok{0}, limited{0}, overloaded{0}, other{0};
  void count(const Result<http::Response>& response) {
    if (!response) ++other;
    else if (response->result_int() == 200) ++ok;
    else if (response->result_int() == 429 && error_code(response->body()) == "rate_limit_exceeded" &&
             !(*response)[beast_http::field::retry_after].empty()) ++limited;
    else if (response->result_int() == 503 && error_code(response->body()) == "overloaded") ++overloaded;
    else ++other;
  }
};

// Finding: a flood of GET /rvenc/attestation became one evidence call each on the enclave's
// one-thread queue; the gateway's own health check (an attestation) waited in that queue, timed
// out after 5 s and marked the enclave down for everyone. Now the check is the enclave's /healthz,
// unauthenticated attestation is limited per address, and the enclave's queue is bounded.
TEST(AttestationFlood, DoesNotTakeTheEnclaveDownAndChatKeepsWorking) {
  test::TempDir dir;
  const std::string db = dir.file("gateway.db");
  SlowHardwareEnclave enclave(dir, 200ms, {"--max-attestation-queue", "4"});
  auto enclave_url = enclave.process->wait_for_url(60s);
  ASSERT_TRUE(enclave_url) << enclave.process->output();
  auto gateway = start_gateway({*enclave_url}, db, dir.file("gateway.token"),
                               {"--health-interval-ms", "300", "--attestation-per-minute", "4"});
  auto gw = gateway->wait_for_url();
  ASSERT_TRUE(gw) << gateway->output();
  const std::string gateway_url = *gw;
  auto key = KeyStore::open(db).value().create_key("flood", KeyEnv::live, {}).value();
  const auto sealed = seal_for(gateway_url, key.key);

  // Unauthenticated callers (limited at the gateway) and callers with a key (not limited, bounded
  // at the enclave), all at once, for longer than the old 5 s health-check timeout.
  FloodCounts anonymous, keyed;
  std::atomic<bool> flooding{true};
  std::vector<std::thread> flood;
  constexpr int kThreadsEach = 20;
  const std::string target = gateway_url + "/rvenc/attestation?challenge=" + std::string(64, 'a');
  for (int i = 0; i < 2 * kThreadsEach; ++i) {
    flood.emplace_back([&, with_key = i % 2 == 0] {
      while (flooding) {
        (with_key ? keyed : anonymous).count(get(target, with_key ? std::optional(key.key) : std::nullopt));
        std::this_thread::sleep_for(50ms);
      }
    });
  }
  // Meanwhile the gateway keeps the enclave up and chat works.
  int unavailable = 0;
  unsigned chat_status = 0;
  std::string chat_body;
  const auto flood_end = std::chrono::steady_clock::now() + 7s;
  while (std::chrono::steady_clock::now() < flood_end) {
    auto health = get(gateway_url + "/healthz");
    if (!health || health->result_int() != 200) ++unavailable;
    if (chat_status == 0) {
      auto chat = post_chat(gateway_url, sealed.body, key.key);
      chat_status = chat ? chat->result_int() : 1;
      chat_body = chat ? chat->body() : chat.error().message;
    }
    std::this_thread::sleep_for(100ms);
  }
  flooding = false;
  for (auto& thread : flood) thread.join();

  EXPECT_EQ(unavailable, 0) << gateway->output();
  EXPECT_EQ(gateway->output().find("down"), std::string::npos) << gateway->output();
  ASSERT_EQ(chat_status, 200u) << chat_body;
  EXPECT_TRUE(open_stream(sealed, rvenc::test::sse_events(chat_body)));
  EXPECT_GT(anonymous.limited.load(), 0);
  EXPECT_LE(anonymous.ok.load(), 4 + 7);  // the burst, plus what refilled (4 a minute) at most
  EXPECT_GT(keyed.overloaded.load(), 0);  // the enclave's bounded queue answered at once
  EXPECT_EQ(anonymous.other.load() + keyed.other.load(), 0);
  // After the flood the service is whole: attestation and chat.
  const auto again = seal_for(gateway_url, key.key);
  auto chat = post_chat(gateway_url, again.body, key.key);
  ASSERT_TRUE(chat);
  EXPECT_EQ(chat->result_int(), 200u) << chat->body();
}

}  // namespace
}  // namespace rvenc::gateway
