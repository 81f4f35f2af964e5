#include <unistd.h>

#include <cstring>
#include <fstream>

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>

#include "rvenc/bench/bench.hpp"
#include "rvenc/bench/engine.hpp"
#include "rvenc/bench/load.hpp"
#include "rvenc/bench/process.hpp"
#include "rvenc/http/client.hpp"
#include "rvenc/protocol/sse.hpp"
#include "bench/stack_setup.hpp"
#include "support/test_support.hpp"

namespace rvenc::bench {
namespace {

TEST(Quantile, InterpolatesAndHandlesEdges) {
  EXPECT_EQ(quantile({}, 0.5), 0);
  EXPECT_EQ(quantile({7}, 0.99), 7);
  const std::vector<double> v{1, 2, 3, 4, 5};
  EXPECT_DOUBLE_EQ(quantile(v, 0), 1);
  EXPECT_DOUBLE_EQ(quantile(v, 0.5), 3);
  EXPECT_DOUBLE_EQ(quantile(v, 1), 5);
  EXPECT_DOUBLE_EQ(quantile(v, 0.125), 1.5);
  EXPECT_DOUBLE_EQ(quantile(v, 2), 5);  // clamped
}

TEST(Engine, RenderedChunksAreOpenAiChunksWithUsageLast) {
  const std::string first = FastEngine::render_chunk(0, 3);
  const std::string last = FastEngine::render_chunk(2, 3);
  ASSERT_TRUE(first.starts_with("data: ") && first.ends_with("\n\n"));
  const auto a = boost::json::parse(first.substr(6)).as_object();
  EXPECT_EQ(a.at("object").as_string(), "chat.completion.chunk");
  EXPECT_EQ(a.at("choices").as_array()[0].at("delta").at("role").as_string(), "assistant");
  EXPECT_TRUE(a.at("usage").is_null());
  const auto b = boost::json::parse(last.substr(6)).as_object();
  EXPECT_EQ(b.at("choices").as_array()[0].at("finish_reason").as_string(), "stop");
  EXPECT_EQ(b.at("usage").at("completion_tokens").as_int64(), 3);
}

TEST(Engine, StreamsRequestedChunksOverARealSocket) {
  auto engine = FastEngine::start();
  ASSERT_TRUE(engine) << engine.error().message;
  auto response = http::fetch("POST", (*engine)->url() + "/v1/chat/completions",
                              R"({"model":"bench-model","messages":[],"stream":true,"max_tokens":5})");
  ASSERT_TRUE(response) << response.error().message;
  EXPECT_EQ(response->result_int(), 200u);
  protocol::SseParser parser;
  std::vector<protocol::SseEvent> events;
  ASSERT_TRUE(parser.feed(response->body(), events));
  ASSERT_EQ(events.size(), 6u);
  EXPECT_EQ(events.back().data, "[DONE]");
  EXPECT_EQ((*engine)->requests(), 1u);
}

TEST(LoadGenerator, CountsChunksAndRecordsFirstTokenTimes) {
  auto engine = FastEngine::start();
  ASSERT_TRUE(engine);
  auto base = http::parse_url((*engine)->url());
  ASSERT_TRUE(base);
  LoadGenerator load(1);
  auto call = openai_stream_call(std::make_shared<http::HttpClient>(), *base,
                                 R"({"model":"bench-model","messages":[],"stream":true,"max_tokens":4})");
  const auto result = load.run(PhaseSpec{4, std::chrono::milliseconds(50), std::chrono::milliseconds(300)}, call,
                               {static_cast<int>(::getpid())}, {});
  EXPECT_EQ(result.errors, 0u) << result.first_error;
  EXPECT_GT(result.requests, 0u);
  EXPECT_GE(result.chunks, result.requests * 4 - 4 * 4);  // in-flight requests straddle the window
  EXPECT_FALSE(result.ttft_ms.empty());
  EXPECT_TRUE(std::is_sorted(result.ttft_ms.begin(), result.ttft_ms.end()));
  ASSERT_EQ(result.cpu_seconds.size(), 1u);
}

// Issue 26: the embeddings phase's engine answer and its load call (one "chunk" per answer).
TEST(LoadGenerator, EmbeddingsCallsGetTheEnginesListOnce) {
  auto engine = FastEngine::start();
  ASSERT_TRUE(engine);
  auto base = http::parse_url((*engine)->url());
  ASSERT_TRUE(base);
  const auto list = boost::json::parse(FastEngine::embeddings_answer()).as_object();
  ASSERT_EQ(list.at("data").as_array().size(), kEngineEmbeddingBatch);
  EXPECT_EQ(list.at("data").as_array()[0].at("embedding").as_array().size(), kEngineEmbeddingDimensions);
  LoadGenerator load(1);
  auto call = openai_embeddings_call(std::make_shared<http::HttpClient>(), *base, R"({"model":"bench-model","input":["a"]})");
  const auto result = load.run(PhaseSpec{4, std::chrono::milliseconds(50), std::chrono::milliseconds(300)}, call, {}, {});
  EXPECT_EQ(result.errors, 0u) << result.first_error;
  EXPECT_GT(result.requests, 0u);
  EXPECT_LE(result.chunks, result.requests + 4);  // one per answer (in-flight ones straddle the window)
}

// The embeddings phase's floor: "dimensions": 1 gets one number, anything else the whole batch.
TEST(FastEngineEmbeddings, AOneDimensionRequestGetsTheOneNumberAnswer) {
  auto engine = FastEngine::start();
  ASSERT_TRUE(engine);
  auto base = http::parse_url((*engine)->url());
  ASSERT_TRUE(base);
  auto client = std::make_shared<http::HttpClient>();
  boost::asio::io_context io;
  auto answers = boost::asio::co_spawn(
      io,
      [&]() -> http::awaitable<std::vector<std::string>> {
        std::vector<std::string> out;
        for (const char* body : {R"({"model":"m","input":["a"],"dimensions":1})",
                                 R"({"model":"m","input":["a"],"dimensions":16})", R"({"model":"m","input":["a"]})"}) {
          auto response = co_await client->request(
              *base, http::make_request(http::Verb::post, base->join("/v1/embeddings"), body), http::Timeouts{});
          out.push_back(response ? response->body() : "failed");
        }
        co_return out;
      },
      boost::asio::use_future);
  io.run();
  const auto got = answers.get();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], FastEngine::tiny_embeddings_answer());
  EXPECT_EQ(got[1], FastEngine::embeddings_answer());
  EXPECT_EQ(got[2], FastEngine::embeddings_answer());
  const auto tiny = boost::json::parse(got[0]).as_object();
  ASSERT_EQ(tiny.at("data").as_array().size(), 1u);
  EXPECT_EQ(tiny.at("data").as_array()[0].at("embedding").as_array().size(), 1u);
}

TEST(LoadGenerator, HoldOpenKeepsStreamsOpenUntilReleased) {
  auto engine = FastEngine::start();
  ASSERT_TRUE(engine);
  auto base = http::parse_url((*engine)->url());
  ASSERT_TRUE(base);
  LoadGenerator load(1);
  auto call = openai_stream_call(std::make_shared<http::HttpClient>(), *base,
                                 R"({"model":"bench-model","messages":[],"stream":true,"max_tokens":3})");
  (*engine)->set_hold(true);
  bool measured = false;
  auto held = load.hold_open(8, call, std::chrono::seconds(20), [&] { measured = true; },
                             [&] { (*engine)->set_hold(false); });
  EXPECT_TRUE(held) << held.error().message;
  EXPECT_TRUE(measured);
  EXPECT_EQ((*engine)->requests(), 8u);
}

TEST(Process, ReadsCpuAndRssOfThisProcess) {
  const int self = static_cast<int>(::getpid());
  ASSERT_TRUE(process_cpu_seconds(self).has_value());
  ASSERT_TRUE(process_rss_kib(self).has_value());
  EXPECT_GT(*process_rss_kib(self), 0u);
  EXPECT_FALSE(process_rss_kib(-5).has_value());
  EXPECT_FALSE(cpu_model().empty());
}

TEST(Process, ChildOutputAndExitStatus) {
  ChildProcess child({"/bin/sh", "-c", "echo 'x listening on http://127.0.0.1:1234'; exit 3"},
                     testing::TempDir() + "/bench_child.log");
  auto url = child.wait_for_url(std::chrono::seconds(10));
  ASSERT_TRUE(url) << url.error().message;
  EXPECT_EQ(*url, "http://127.0.0.1:1234");
  EXPECT_EQ(child.wait_exit(std::chrono::seconds(10)), 3);
  ChildProcess failing({"/bin/sh", "-c", "echo boom; exit 1"}, testing::TempDir() + "/bench_child2.log");
  auto never = failing.wait_for_url(std::chrono::seconds(10));
  ASSERT_FALSE(never);
  EXPECT_NE(never.error().message.find("boom"), std::string::npos);
}

TEST(Nginx, ConfigForwardsLikeTheGateway) {
  NginxConfig config;
  config.dir = "/tmp/x";
  config.listen_port = 8123;
  config.enclave_port = 8124;
  config.gateway_token = "tok123";
  config.tenant = "key_abc";
  const std::string text = render_nginx_config(config);
  for (const char* needle :
       {"daemon off;", "master_process off;", "listen 127.0.0.1:8123;", "server 127.0.0.1:8124;",
        "proxy_buffering off;", "proxy_http_version 1.1;", "chunked_transfer_encoding on;",
        "proxy_set_header Authorization \"Bearer tok123\";", "proxy_set_header X-Rvenc-Tenant \"key_abc\";",
        "pid /tmp/x/nginx.pid;", "error_log /tmp/x/error.log", "proxy_temp_path /tmp/x/proxy;"})
    EXPECT_NE(text.find(needle), std::string::npos) << needle;
}

TEST(Nginx, RelayConfigIsOnePlainHop) {
  NginxRelayConfig config;
  config.dir = "/tmp/r";
  config.listen_port = 8200;
  config.upstream_port = 8201;
  const std::string text = render_nginx_relay_config(config);
  for (const char* needle : {"daemon off;", "listen 127.0.0.1:8200;", "server 127.0.0.1:8201;", "proxy_pass http://next;",
                             "proxy_buffering off;", "proxy_http_version 1.1;", "pid /tmp/r/nginx.pid;"})
    EXPECT_NE(text.find(needle), std::string::npos) << needle;
  // Nothing the gateway adds: the hop forwards the request as it came.
  EXPECT_EQ(text.find("Authorization"), std::string::npos);
  EXPECT_EQ(text.find("X-Rvenc"), std::string::npos);
}

// The embeddings phase's two plain hops: real nginx processes in a row that hand the engine's
// answer through unchanged, and stop with their handle (the near hop's port then refuses).
TEST(Nginx, TwoRelayHopsForwardTheEnginesAnswerUnchanged) {
  const std::string nginx = "/usr/sbin/nginx";
  if (::access(nginx.c_str(), X_OK) != 0) GTEST_SKIP() << "no " << nginx << " (scripts/setup.sh installs nginx-light)";
  auto engine = FastEngine::start();
  ASSERT_TRUE(engine);
  auto base = http::parse_url((*engine)->url());
  ASSERT_TRUE(base);
  const test::TempDir dir;
  std::uint16_t port = 0;
  {
    auto relays = start_nginx_relays(nginx, dir.path(), base->port);
    ASSERT_TRUE(relays) << relays.error().message;
    ASSERT_NE(relays->port, base->port);
    port = relays->port;
    http::Url through = *base;
    through.port = relays->port;
    auto client = std::make_shared<http::HttpClient>();
    boost::asio::io_context io;
    auto answer = boost::asio::co_spawn(
        io,
        [&]() -> http::awaitable<std::string> {
          auto response = co_await client->request(
              through, http::make_request(http::Verb::post, through.join("/v1/embeddings"), R"({"model":"m","input":["a"]})"),
              http::Timeouts{});
          co_return response ? response->body() : "failed: " + response.error().message;
        },
        boost::asio::use_future);
    io.run();
    EXPECT_EQ(answer.get(), FastEngine::embeddings_answer());
  }
  EXPECT_FALSE(wait_for_port(port, std::chrono::milliseconds(200)));
}

TEST(Report, ProxyCpuSplitsIntoPerRequestAndPerChunk) {
  // 10 us per request + 2 us per chunk, with requests cut at the window's edges in the counts.
  const boost::json::object one_chunk{{"requests", 1000}, {"chunks", 1000}, {"proxy_cpu_s", 0.012}};
  const boost::json::object long_answers{{"requests", 100}, {"chunks", 3150}, {"proxy_cpu_s", 0.0073}};
  const auto split = split_proxy_cpu(one_chunk, long_answers);
  ASSERT_TRUE(split);
  EXPECT_NEAR(split->fixed_us_per_request, 10.0, 1e-9);
  EXPECT_NEAR(split->us_per_chunk, 2.0, 1e-9);
  EXPECT_FALSE(split_proxy_cpu(long_answers, one_chunk));  // not longer answers: nothing to split
}

TEST(Report, SummaryMarksTargetsMetAndNotMet) {
  boost::json::object report{{"mode", "quick"},
                             {"date", "2026-11-26T00:00:00Z"},
                             {"gateway_vs_nginx", 1.2},
                             {"added_ttft_p50_ms", 0.9},
                             {"added_ttft_p99_ms", 1.5},
                             {"fresh_vs_cached_request_cost", 30.0}};
  const std::string table = summary_table(report);
  const auto line_of = [&](const std::string& description) {
    const auto at = table.find(description, table.find("targets"));
    EXPECT_NE(at, std::string::npos) << description;
    return table.substr(at, table.find('\n', at) - at);
  };
  EXPECT_TRUE(line_of("gateway throughput / nginx").ends_with(" met"));
  EXPECT_TRUE(line_of("added TTFT p50").ends_with("NOT MET"));
  EXPECT_TRUE(line_of("added TTFT p99").ends_with(" met"));
  // A figure the run could not produce is never "met".
  EXPECT_TRUE(line_of("gateway RSS per open stream").ends_with("NOT MET"));
  EXPECT_NE(line_of("gateway RSS per open stream").find("n/a"), std::string::npos);
}

// The steps every bench stack shares (stack_setup.hpp): a private directory, the platform key and
// gateway token, an API key from `rvenc keys create` (here a stand-in script that prints what the
// real command prints).
TEST(StackSetup, TempDirIsFreshAndPrivate) {
  auto a = detail::make_temp_dir("rvenc-bench-test");
  auto b = detail::make_temp_dir("rvenc-bench-test");
  ASSERT_TRUE(a && b);
  EXPECT_NE(*a, *b);
  EXPECT_TRUE(a->filename().string().starts_with("rvenc-bench-test-"));
  EXPECT_EQ(std::filesystem::status(*a).permissions(), std::filesystem::perms::owner_all);
  std::filesystem::remove_all(*a);
  std::filesystem::remove_all(*b);
}

TEST(StackSetup, SecretsAreOwnerOnlyAndTheKeyMatchesTheSeed) {
  test::TempDir dir;
  const auto secrets = detail::write_stack_secrets(dir.path());
  const auto read = [&](const char* name) {
    std::ifstream in(dir.path() / name, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const std::string seed = read("platform.key");
  ASSERT_EQ(seed.size(), crypto::kEd25519SeedBytes);
  crypto::Ed25519Seed secret;
  std::memcpy(secret.data(), seed.data(), seed.size());
  EXPECT_EQ(crypto::ed25519_keypair_from_seed(secret).public_key, secrets.platform_public_key);
  EXPECT_EQ(read("gateway.token"), secrets.gateway_token);
  EXPECT_EQ(secrets.gateway_token.size(), 64U);
  EXPECT_EQ(secrets.gateway_token.find_first_not_of("0123456789abcdef"), std::string::npos);
  for (const char* name : {"platform.key", "gateway.token"})
    EXPECT_EQ(std::filesystem::status(dir.path() / name).permissions(),
              std::filesystem::perms::owner_read | std::filesystem::perms::owner_write)
        << name;
}

TEST(StackSetup, ApiKeyAndItsIdComeFromTheKeysCommand) {
  test::TempDir dir;
  const std::string fake = dir.file("fake-rvenc");
  {
    std::ofstream script(fake);
    script << "#!/bin/sh\n"
              "[ \"$1 $2 $3 $5 $6\" = \"keys create --db --name bench\" ] || { echo \"bad args: $*\"; exit 2; }\n"
              "echo 'sk_test_0123456789abcdef'\n"
              "echo 'created key key_42 (bench, test)' >&2\n";
  }
  std::filesystem::permissions(fake, std::filesystem::perms::owner_all);
  auto key = detail::create_api_key(fake, dir.file("rvenc.db"), "bench", dir.path());
  ASSERT_TRUE(key) << key.error().to_string();
  EXPECT_EQ(key->api_key, "sk_test_0123456789abcdef");
  EXPECT_EQ(key->key_id, "key_42");

  // A keys command that fails: the error quotes its output, never hangs.
  auto failed = detail::create_api_key("/bin/false", dir.file("rvenc.db"), "bench", dir.path());
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code, Errc::internal_error);
}

}  // namespace
}  // namespace rvenc::bench
