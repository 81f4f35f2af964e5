// The gateway and the enclave serving https (issue 20, server side) as real processes, with
// certificates from a CA made in the test and curl (and openssl s_client) as the clients: a
// sealed stream through the real stack, /healthz and /metrics on the TLS listener, what curl must
// refuse (unknown CA, expired, wrong host), plain HTTP to the TLS port, and SIGHUP reloading the
// certificate while a stream is open.
#include <gtest/gtest.h>

#include <signal.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <future>
#include <regex>

#include <boost/json/parse.hpp>

#include "gateway_test_support.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "rvenc/gateway/key_store.hpp"
#include "rvenc/http/local_ca.hpp"
#include "rvenc/http/tls_server.hpp"

namespace rvenc::gateway {
namespace {

using namespace test_support;
using namespace std::chrono_literals;

using Shell = CliResult;

// Runs `command` with /bin/sh; its stdout (stderr too when `with_stderr`, else dropped).
Shell sh(const std::string& command, bool with_stderr = false) {
  return run_shell(command + (with_stderr ? " 2>&1" : " 2>/dev/null"));
}

std::string sh_quote(const std::string& text) { return "'" + text + "'"; }

// A CA and server certificates in `dir`: server.pem/key for localhost and 127.0.0.1.
struct Pki {
  explicit Pki(const test::TempDir& d) : dir(d) {
    if (auto made = http::make_local_ca(ca, dir.file("ca.key"), "test CA", 24h); !made)
      throw std::runtime_error(made.error().message);
    issue(cert, key);
  }
  void issue(const std::string& cert_file, const std::string& key_file, const http::CertificateRequest& request = {}) {
    if (auto issued = http::issue_server_certificate(ca, dir.file("ca.key"), cert_file, key_file, request); !issued)
      throw std::runtime_error(issued.error().message);
  }
  const test::TempDir& dir;
  std::string ca = dir.file("ca.pem");
  std::string cert = dir.file("server.pem");
  std::string key = dir.file("server.key");
};

// The serial of the certificate the server at `port` presents to a new handshake.
std::string served_serial(std::uint16_t port) {
  const auto out = sh("openssl s_client -connect 127.0.0.1:" + std::to_string(port) +
                      " -servername localhost </dev/null | openssl x509 -noout -serial");
  const auto eq = out.out.find('=');
  std::string serial = eq == std::string::npos ? std::string() : out.out.substr(eq + 1);
  while (!serial.empty() && std::isspace(static_cast<unsigned char>(serial.back()))) serial.pop_back();
  return serial;
}

std::uint16_t port_of(const std::string& url) { return static_cast<std::uint16_t>(std::stoi(url.substr(url.rfind(':') + 1))); }

class GatewayTls : public ::testing::Test {
 protected:
  // A plain enclave and a gateway serving https with `cert`/`key`.
  void start(const std::string& cert, const std::string& key, long long demo_delay_ms = 0) {
    enclave = start_enclave(dir, demo_delay_ms);
    auto url = enclave->wait_for_url();
    ASSERT_TRUE(url) << enclave->output();
    enclave_url = *url;
    gateway = start_gateway({enclave_url}, db, dir.file("gateway.token"),
                            {"--tls-cert", cert, "--tls-key", key, "--admin-token-file", admin_token_file()});
    auto gw = gateway->wait_for_url();
    ASSERT_TRUE(gw) << gateway->output();
    gateway_url = *gw;
    ASSERT_TRUE(gateway_url.starts_with("https://")) << gateway_url;
  }
  std::string admin_token_file() {
    const std::string path = dir.file("admin.token");
    if (!std::filesystem::exists(path)) std::ofstream(path) << "admin-token-for-tls-tests\n";
    return path;
  }
  // The simulated platform's public key (hex) from the enclave's startup output.
  std::string read_platform_public_key() {
    std::ifstream in(dir.file("platform.key"), std::ios::binary);
    std::array<std::uint8_t, crypto::kEd25519SeedBytes> seed{};
    in.read(reinterpret_cast<char*>(seed.data()), seed.size());
    return to_hex(crypto::ed25519_keypair_from_seed(crypto::Ed25519Seed(seed)).public_key);
  }
  std::string create_key() { return KeyStore::open(db).value().create_key("tls", KeyEnv::live, {}).value().key; }
  // curl POSTs a request sealed to the enclave (attested directly) to the gateway over https.
  Shell curl_chat(const Sealed& sealed, const std::string& api_key) {
    const std::string body_file = dir.file("body-" + std::to_string(++bodies) + ".json");
    std::ofstream(body_file) << sealed.body;
    return sh("curl -sS --fail-with-body --cacert " + sh_quote(pki.ca) + " -H " + sh_quote("Authorization: Bearer " + api_key) +
              " -H 'Content-Type: application/json' --data-binary @" + sh_quote(body_file) + " " + gateway_url +
              "/rvenc/chat/completions");
  }

  test::TempDir dir;
  Pki pki{dir};
  std::string db = dir.file("gateway.db");
  std::unique_ptr<test::ChildProcess> enclave;
  std::unique_ptr<test::ChildProcess> gateway;
  std::string enclave_url;
  std::string gateway_url;
  int bodies = 0;
};

TEST_F(GatewayTls, CurlStreamsASealedChatThroughTheGatewaysOwnTls) {
  ASSERT_NO_FATAL_FAILURE(start(pki.cert, pki.key));
  EXPECT_NE(gateway->output().find("https: certificate CN=localhost,O=rvenc local test"), std::string::npos)
      << gateway->output();
  const auto key = create_key();
  const auto sealed = seal_chat(enclave_url, dir.file("platform.key"), "Hello over TLS");
  const auto answer = curl_chat(sealed, key);
  ASSERT_EQ(answer.exit_code, 0) << answer.out;
  const auto text = open_stream(sealed, test::sse_events(answer.out));
  ASSERT_TRUE(text) << text.error().message << "\n" << answer.out;
  EXPECT_FALSE(text->empty());
  // /healthz and /metrics on the same listener.
  const auto health = sh("curl -sS --fail --cacert " + sh_quote(pki.ca) + " " + gateway_url + "/healthz");
  EXPECT_EQ(health.exit_code, 0);
  EXPECT_NE(health.out.find("ok"), std::string::npos) << health.out;
  const auto metrics = sh("curl -sS --fail --cacert " + sh_quote(pki.ca) +
                          " -H 'Authorization: Bearer admin-token-for-tls-tests' " + gateway_url + "/metrics");
  EXPECT_EQ(metrics.exit_code, 0);
  EXPECT_NE(metrics.out.find("rvenc_gateway"), std::string::npos) << metrics.out;
}

TEST_F(GatewayTls, CurlRefusesUnknownCaExpiredAndWrongHostAndPlainHttpIsToldSo) {
  ASSERT_NO_FATAL_FAILURE(start(pki.cert, pki.key));
  // No --cacert: the test CA is not in the system store (curl exit 60: peer certificate).
  EXPECT_EQ(sh("curl -sS " + gateway_url + "/healthz").exit_code, 60);
  // Plain HTTP to the TLS port: a plain 400 saying so, and the gateway keeps serving.
  const std::string plain_url = "http://" + gateway_url.substr(std::string("https://").size());
  const auto plain = sh("curl -sS -w '\\n%{http_code}' " + plain_url + "/healthz");
  EXPECT_NE(plain.out.find("this port serves https only"), std::string::npos) << plain.out;
  EXPECT_TRUE(plain.out.ends_with("400")) << plain.out;
  EXPECT_EQ(sh("curl -sS --fail --cacert " + sh_quote(pki.ca) + " " + gateway_url + "/healthz").exit_code, 0);

  // Expired and wrong-host certificates, each on a gateway of its own.
  pki.issue(dir.file("expired.pem"), dir.file("expired.key"),
            http::CertificateRequest{.not_before_offset = -48h, .valid_for = 24h});
  pki.issue(dir.file("other.pem"), dir.file("other.key"),
            http::CertificateRequest{.common_name = "other.example", .dns_names = {"other.example"}, .ip_addresses = {}});
  for (const auto& [name, expect] : {std::pair{"expired", "expired"}, std::pair{"other", "subject name"}}) {
    auto other = start_gateway({enclave_url}, dir.file(std::string(name) + ".db"), dir.file("gateway.token"),
                               {"--tls-cert", dir.file(std::string(name) + ".pem"), "--tls-key",
                                dir.file(std::string(name) + ".key")});
    const auto url = other->wait_for_url();
    ASSERT_TRUE(url) << other->output();
    const auto refused = sh("curl -sS --cacert " + sh_quote(pki.ca) + " " + *url + "/healthz", true);
    EXPECT_EQ(refused.exit_code, 60) << refused.out;
    EXPECT_NE(refused.out.find(expect), std::string::npos) << refused.out;
    if (std::string(name) == "expired") {
      EXPECT_NE(other->output().find("has expired"), std::string::npos);
    }
  }
}

TEST_F(GatewayTls, SighupReloadsTheCertificateWithoutCuttingAnOpenStream) {
  // A slow demo engine: the stream is still open when the certificate changes.
  ASSERT_NO_FATAL_FAILURE(start(pki.cert, pki.key, 300));
  const std::string old_serial = served_serial(port_of(gateway_url));
  ASSERT_FALSE(old_serial.empty());
  const auto key = create_key();
  const auto sealed = seal_chat(enclave_url, dir.file("platform.key"), "a long answer please");
  auto streaming = std::async(std::launch::async, [&] { return curl_chat(sealed, key); });
  // The stream is open once the gateway counts it as active (polled, never a fixed sleep).
  for (int i = 0; i < 400; ++i) {
    const auto metrics = sh("curl -sS --cacert " + sh_quote(pki.ca) +
                            " -H 'Authorization: Bearer admin-token-for-tls-tests' " + gateway_url + "/metrics");
    if (std::regex_search(metrics.out, std::regex("\nrvenc_gateway_active_streams [1-9]"))) break;
    std::this_thread::sleep_for(25ms);
  }
  pki.issue(pki.cert, pki.key);  // a new key and serial over the same files
  gateway->signal(SIGHUP);
  std::string new_serial;
  for (int i = 0; i < 200 && (new_serial.empty() || new_serial == old_serial); ++i) {
    new_serial = served_serial(port_of(gateway_url));
    if (new_serial == old_serial) std::this_thread::sleep_for(50ms);
  }
  EXPECT_NE(new_serial, old_serial);
  EXPECT_EQ(new_serial, http::read_certificate_info(pki.cert).value().serial);
  const auto answer = streaming.get();
  ASSERT_EQ(answer.exit_code, 0) << answer.out;
  const auto text = open_stream(sealed, test::sse_events(answer.out));
  EXPECT_TRUE(text) << (text ? "" : text.error().message) << "\n" << answer.out;
  // A broken pair on the next SIGHUP is logged and the current one kept.
  std::ofstream(pki.key, std::ios::trunc) << "broken\n";
  gateway->signal(SIGHUP);
  EXPECT_TRUE(gateway->wait_for_line("reload failed, keeping the current certificate"));
  EXPECT_EQ(served_serial(port_of(gateway_url)), new_serial);
  EXPECT_TRUE(gateway->running());
}

TEST_F(GatewayTls, EnclaveServesHttpsToo) {
  auto tls_enclave = start_enclave(dir, 0, {"--tls-cert", pki.cert, "--tls-key", pki.key});
  const auto url = tls_enclave->wait_for_url();
  ASSERT_TRUE(url) << tls_enclave->output();
  EXPECT_TRUE(url->starts_with("https://")) << *url;
  EXPECT_NE(tls_enclave->output().find("https: certificate"), std::string::npos);
  const auto health = sh("curl -sS --fail --cacert " + sh_quote(pki.ca) + " " + *url + "/healthz");
  EXPECT_EQ(health.exit_code, 0) << health.out;
  // Only one of the two flags is a usage error that says so.
  const auto half = run_cli({"enclave", "--listen", "127.0.0.1:0", "--tls-cert", pki.cert});
  EXPECT_EQ(half.exit_code, 2);
}

// The gateway -> enclave link over https: rvenc-mux connections (the default) and HTTP/1.1.
TEST_F(GatewayTls, GatewayReachesAnHttpsEnclaveOverMuxAndHttp1) {
  auto tls_enclave = start_enclave(dir, 0, {"--tls-cert", pki.cert, "--tls-key", pki.key});
  const auto url = tls_enclave->wait_for_url();
  ASSERT_TRUE(url) << tls_enclave->output();
  ASSERT_TRUE(url->starts_with("https://")) << *url;
  const auto key = create_key();
  for (const bool http1 : {false, true}) {
    SCOPED_TRACE(http1 ? "HTTP/1.1" : "rvenc-mux");
    std::vector<std::string> flags{"--enclave-ca-file", pki.ca};
    if (http1) flags.emplace_back("--enclave-http1");
    auto plain_gateway = start_gateway({*url}, db, dir.file("gateway.token"), flags);
    const auto gw = plain_gateway->wait_for_url();
    ASSERT_TRUE(gw) << plain_gateway->output();
    EXPECT_NE(plain_gateway->output().find("enclave " + *url + ": up"), std::string::npos) << plain_gateway->output();
    const auto sealed = seal_chat(*gw, dir.file("platform.key"));
    const auto response = post_chat(*gw, sealed.body, key);
    ASSERT_TRUE(response) << response.error().message;
    ASSERT_EQ(response->result_int(), 200u) << response->body();
    EXPECT_TRUE(open_stream(sealed, test::sse_events(response->body())));
  }
  // Without the CA the gateway does not trust the enclave and says why.
  auto untrusting = start_gateway({*url}, dir.file("untrusting.db"), dir.file("gateway.token"));
  ASSERT_TRUE(untrusting->wait_for_url()) << untrusting->output();
  EXPECT_TRUE(untrusting->wait_for_line("unknown issuer")) << untrusting->output();
}

// rvenc chat through the gateway's own TLS, with and without the CA.
TEST_F(GatewayTls, ChatThroughTheGatewaysOwnTls) {
  ASSERT_NO_FATAL_FAILURE(start(pki.cert, pki.key));
  const auto key = create_key();
  const std::string platform = read_platform_public_key();
  const std::vector<std::string> chat{"chat", "--gateway", gateway_url, "--api-key", key, "--platform-public-key",
                                      platform};
  auto trusted = chat;
  trusted.insert(trusted.end(), {"--ca-file", pki.ca, "Hello over https"});
  const auto answer = run_cli(trusted);
  EXPECT_EQ(answer.exit_code, 0) << answer.out;
  EXPECT_FALSE(answer.out.empty());
  auto untrusted = chat;
  untrusted.emplace_back("Hello");
  EXPECT_NE(run_cli(untrusted).exit_code, 0);
}
// rvenc up --tls: the gateway on https with a local test CA, stack.json with caFile, a curl line
// with --cacert; curl and rvenc chat through the proxy, which reaches the gateway over TLS.
TEST(UpTls, ServesTheGatewayOnHttpsWithALocalCaAndTheProxyUsesIt) {
  test::TempDir dir;
  const std::string data = dir.file("state");
  test::ChildProcess up({test::rvenc_binary(), "up", "--tls", "--data", data, "--gateway-port", "0", "--enclave-port",
                         "0", "--proxy-port", "0"});
  ASSERT_TRUE(up.wait_for_line("the stack is running", 90s)) << up.output();
  std::ifstream in(data + "/stack.json");
  const auto stack = boost::json::parse(std::string(std::istreambuf_iterator<char>(in), {})).as_object();
  const std::string gateway_url(stack.at("gatewayUrl").as_string());
  const std::string ca(stack.at("caFile").as_string());
  const std::string proxy_url(stack.at("proxyUrl").as_string());
  const std::string api_key(stack.at("apiKey").as_string());
  EXPECT_TRUE(gateway_url.starts_with("https://")) << gateway_url;
  EXPECT_TRUE(proxy_url.starts_with("http://127.0.0.1:")) << proxy_url;  // the proxy stays plain, local
  EXPECT_NE(up.output().find("curl --cacert " + ca + " " + gateway_url + "/healthz"), std::string::npos) << up.output();
  const auto health = sh("curl -sS --fail --cacert " + sh_quote(ca) + " " + gateway_url + "/healthz");
  EXPECT_EQ(health.exit_code, 0);
  EXPECT_EQ(health.out, R"({"status":"ok"})");
  // Non-streaming and streaming through proxy -> https gateway -> enclave.
  const std::string chat = "curl -sS --fail " + proxy_url + "/v1/chat/completions -H " +
                           sh_quote("Authorization: Bearer " + api_key) + " -H 'Content-Type: application/json' -d ";
  const auto whole = sh(chat + sh_quote(R"({"model":"rvenc-demo","messages":[{"role":"user","content":"Hello"}]})"));
  EXPECT_EQ(whole.exit_code, 0) << whole.out;
  EXPECT_NE(whole.out.find("\"choices\""), std::string::npos) << whole.out;
  const auto streamed =
      sh(chat + sh_quote(R"({"model":"rvenc-demo","stream":true,"messages":[{"role":"user","content":"Hello"}]})"));
  EXPECT_EQ(streamed.exit_code, 0) << streamed.out;
  EXPECT_NE(streamed.out.find("data: [DONE]"), std::string::npos) << streamed.out;
  // rvenc chat finds the gateway and its CA in stack.json.
  const auto chatted = run_cli({"chat", "--data", data, "Hello"});
  EXPECT_EQ(chatted.exit_code, 0) << chatted.out;
  EXPECT_EQ(up.stop(SIGINT, 30s), 0) << up.output();
}
}  // namespace
}  // namespace rvenc::gateway
