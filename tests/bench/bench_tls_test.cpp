// The plumbing of `rvenc bench --tls` (bench/tls.hpp): the nginx TLS listener, the OpenSSL pin file
// (checked against a real `openssl s_server` process: the suite it picks from the probe's default
// offer), the full-handshake probe against a TLS http::Server, nanosecond process CPU, and the
// report's TLS targets. Outcomes only, nothing timed.
#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include <boost/asio/awaitable.hpp>

#include "rvenc/bench/bench.hpp"
#include "rvenc/bench/process.hpp"
#include "rvenc/bench/tls.hpp"
#include "rvenc/http/local_ca.hpp"
#include "rvenc/http/server.hpp"
#include "rvenc/http/tls_server.hpp"
#include "support/test_support.hpp"

namespace rvenc::bench {
namespace {

constexpr unsigned kProbeHandshakes = 5;
constexpr std::string_view kOpenSslDefaultFirstSuite = "TLS_AES_256_GCM_SHA384";

// A TLS http::Server on 127.0.0.1 in this process, serving the bench's certificate.
struct TlsServer {
  std::unique_ptr<http::Server> server;
  explicit TlsServer(const BenchTlsFiles& files) {
    http::ServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.tls = http::TlsServerContext::load(files.cert_file.string(), files.key_file.string()).value();
    server = http::Server::create(std::move(options), [](http::Request&, http::ResponseWriter& writer)
                                                          -> http::awaitable<void> {
               co_await writer.send(http::Response{boost::beast::http::status::no_content, 11});
             }).value();
    server->start();
  }
  ~TlsServer() {
    server->stop(std::chrono::milliseconds(0));
    server->wait();
  }
};

// `openssl s_server` on a free port with the bench's certificate; OPENSSL_CONF when `conf` is set.
struct OpenSslServer {
  std::uint16_t port = 0;
  std::unique_ptr<ChildProcess> process;
  OpenSslServer(const BenchTlsFiles& files, const std::string& conf, const std::string& log) {
    port = free_port().value();
    std::map<std::string, std::string> env;
    if (!conf.empty()) env["OPENSSL_CONF"] = conf;
    process = std::make_unique<ChildProcess>(
        std::vector<std::string>{"/usr/bin/openssl", "s_server", "-quiet", "-accept", "127.0.0.1:" + std::to_string(port),
                                 "-cert", files.cert_file.string(), "-key", files.key_file.string(), "-www"},
        log, env);
  }
};

TEST(BenchTls, NginxListensWithTlsOnlyWhenGivenACertificate) {
  NginxConfig config;
  config.dir = "/tmp/x";
  config.listen_port = 8123;
  config.enclave_port = 8124;
  EXPECT_EQ(render_nginx_config(config).find("ssl"), std::string::npos);
  config.tls_cert_file = "/tmp/x/server.pem";
  config.tls_key_file = "/tmp/x/server.key";
  config.tls_suite = std::string(kPinnedTlsSuite);
  const std::string text = render_nginx_config(config);
  for (const char* needle : {"listen 127.0.0.1:8123 ssl;", "ssl_certificate /tmp/x/server.pem;",
                             "ssl_certificate_key /tmp/x/server.key;", "ssl_protocols TLSv1.3;",
                             "ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;", "ssl_session_tickets on;",
                             "keepalive_requests 1000000;"})
    EXPECT_NE(text.find(needle), std::string::npos) << needle;
}

TEST(BenchTls, PinConfigMakesARealOpenSslServerPickThePinnedSuite) {
  test::TempDir dir;
  auto files = prepare_bench_tls(dir.path() / "tls", kPinnedTlsSuite);
  ASSERT_TRUE(files) << files.error().to_string();
  EXPECT_TRUE(std::filesystem::exists(files->ca_file));
  // Without the pin, the server takes the client's first choice (OpenSSL's default order) ...
  OpenSslServer plain(*files, "", dir.file("plain.log"));
  ASSERT_TRUE(wait_for_port(plain.port, kChildStartTimeout)) << plain.process->output();
  auto unpinned = measure_full_handshakes(plain.port, files->ca_file.string(), 1, plain.process->pid());
  ASSERT_TRUE(unpinned) << unpinned.error().to_string();
  EXPECT_EQ(unpinned->cipher, kOpenSslDefaultFirstSuite);
  // ... with it, the one pinned suite, from the same offer.
  OpenSslServer pinned(*files, files->openssl_conf.string(), dir.file("pinned.log"));
  ASSERT_TRUE(wait_for_port(pinned.port, kChildStartTimeout)) << pinned.process->output();
  auto cost = measure_full_handshakes(pinned.port, files->ca_file.string(), 1, pinned.process->pid());
  ASSERT_TRUE(cost) << cost.error().to_string();
  EXPECT_EQ(cost->protocol, "TLSv1.3");
  EXPECT_EQ(cost->cipher, kPinnedTlsSuite);
}

TEST(BenchTls, ProbeMakesFullHandshakesAndReadsTheFrontsCpu) {
  test::TempDir dir;
  auto files = prepare_bench_tls(dir.path() / "tls", kPinnedTlsSuite);
  ASSERT_TRUE(files) << files.error().to_string();
  TlsServer front(*files);
  const std::size_t before = front.server->accepted_connections();
  auto cost = measure_full_handshakes(front.server->port(), files->ca_file.string(), kProbeHandshakes,
                                      static_cast<int>(::getpid()));
  ASSERT_TRUE(cost) << cost.error().to_string();
  EXPECT_EQ(cost->handshakes, kProbeHandshakes);
  EXPECT_EQ(front.server->accepted_connections() - before, kProbeHandshakes + 1);  // one unmeasured first
  EXPECT_EQ(cost->protocol, "TLSv1.3");
  EXPECT_GT(cost->server_cpu_us, 0);  // this process is the front here: it did the work
  EXPECT_GT(cost->client_cpu_us, 0);
  EXPECT_EQ(front.server->failed_tls_handshakes(), 0u);
}

TEST(BenchTls, ProbeFailsClearlyOnAnUntrustedFrontAndOnAPlainPort) {
  test::TempDir dir;
  auto files = prepare_bench_tls(dir.path() / "tls", kPinnedTlsSuite);
  auto other = prepare_bench_tls(dir.path() / "other", kPinnedTlsSuite);  // another CA
  ASSERT_TRUE(files && other);
  TlsServer front(*files);
  auto untrusted = measure_full_handshakes(front.server->port(), other->ca_file.string(), 1, static_cast<int>(::getpid()));
  ASSERT_FALSE(untrusted);
  EXPECT_EQ(untrusted.error().code, Errc::tls_error);
  http::ServerOptions options;
  options.host = "127.0.0.1";
  auto plain = http::Server::create(std::move(options), [](http::Request&, http::ResponseWriter& writer)
                                                            -> http::awaitable<void> {
                 co_await writer.send(http::Response{boost::beast::http::status::no_content, 11});
               }).value();
  plain->start();
  auto not_tls = measure_full_handshakes(plain->port(), files->ca_file.string(), 1, static_cast<int>(::getpid()));
  plain->stop(std::chrono::milliseconds(0));
  plain->wait();
  ASSERT_FALSE(not_tls);
  EXPECT_EQ(not_tls.error().code, Errc::tls_error);
}

TEST(BenchTls, PreciseCpuOfAProcessAddsItsThreads) {
  const int self = static_cast<int>(::getpid());
  const auto before = process_cpu_seconds_precise(self);
  ASSERT_TRUE(before);
  volatile unsigned long sink = 0;
  for (unsigned long i = 0; i < 20'000'000UL; ++i) sink = sink + i;
  const auto after = process_cpu_seconds_precise(self);
  ASSERT_TRUE(after);
  EXPECT_GT(*after, *before);
  EXPECT_FALSE(process_cpu_seconds_precise(-5).has_value());
}

TEST(BenchTls, ChildGetsItsExtraEnvironmentAndHttpsUrlsAreFound) {
  test::TempDir dir;
  ChildProcess child({"/bin/sh", "-c", "echo \"x listening on https://127.0.0.1:$RVENC_BENCH_TEST_PORT\""},
                     dir.file("child.log"), {{"RVENC_BENCH_TEST_PORT", "8443"}});
  auto url = child.wait_for_url(std::chrono::seconds(10));
  ASSERT_TRUE(url) << url.error().message;
  EXPECT_EQ(*url, "https://127.0.0.1:8443");
}

TEST(BenchTls, TlsReportHasItsOwnTargetsAndHandshakeRows) {
  EXPECT_EQ(targets(true).size(), 2u);
  boost::json::object report{{"mode", "quick"},
                             {"gateway_vs_nginx", 1.05},
                             {"gateway_rss_kib_per_stream", 70.0},
                             {"gateway_tls_handshake_cpu_us", 310.0},
                             {"nginx_tls_handshake_cpu_us", 290.0},
                             {"tls",
                              boost::json::object{{"pinned_suite", kPinnedTlsSuite},
                                                  {"gateway", boost::json::object{{"cipher", kPinnedTlsSuite}}}}}};
  EXPECT_EQ(&targets_of(report), &targets(true));
  const std::string table = summary_table(report);
  const auto line_of = [&](const std::string& description) {
    const auto at = table.find(description);
    EXPECT_NE(at, std::string::npos) << description;
    return at == std::string::npos ? std::string() : table.substr(at, table.find('\n', at) - at);
  };
  EXPECT_TRUE(line_of("gateway throughput / nginx at saturation, TLS").ends_with(" met"));
  EXPECT_TRUE(line_of("gateway RSS per open TLS stream").ends_with("NOT MET"));  // 70 > 64
  EXPECT_NE(line_of("gateway CPU us per new TLS connection").find("310"), std::string::npos);
  EXPECT_NE(line_of("suite pinned to").find("gateway negotiated \"TLS_AES_128_GCM_SHA256\""), std::string::npos);
  report.erase("tls");
  EXPECT_EQ(&targets_of(report), &targets(false));
}

}  // namespace
}  // namespace rvenc::bench
