// The gateway as a real process between real clients and a real `rvenc enclave` process.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

#include <signal.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "gateway_test_support.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/gateway/api_key.hpp"
#include "rvenc/gateway/gateway.hpp"

namespace rvenc::gateway {
namespace {

using namespace test_support;
using namespace std::chrono_literals;
namespace beast_http = boost::beast::http;

class GatewayIntegration : public ::testing::Test {
 protected:
  void start(long long demo_delay_ms = 0, const std::vector<std::string>& gateway_flags = {}) {
    enclave = start_enclave(dir, demo_delay_ms);
    auto url = enclave->wait_for_url();
    ASSERT_TRUE(url) << enclave->output();
    enclave_url = *url;
    gateway = start_gateway({enclave_url}, db, dir.file("gateway.token"), gateway_flags);
    auto gw = gateway->wait_for_url();
    ASSERT_TRUE(gw) << gateway->output();
    gateway_url = *gw;
  }

  CreatedKey create_key(const std::string& name, KeyLimits limits = {}) {
    auto store = KeyStore::open(db);
    return store.value().create_key(name, KeyEnv::live, limits).value();
  }

  Sealed seal(const std::string& prompt = "Hello") { return seal_chat(gateway_url, dir.file("platform.key"), prompt); }

  test::TempDir dir;
  std::string db = dir.file("gateway.db");
  std::unique_ptr<test::ChildProcess> enclave;
  std::unique_ptr<test::ChildProcess> gateway;
  std::string enclave_url;
  std::string gateway_url;
};

// The same over both links to the enclave: rvenc-mux connections (the default) and HTTP/1.1.
class GatewayLink : public GatewayIntegration, public ::testing::WithParamInterface<bool> {
 protected:
  [[nodiscard]] static bool mux() { return GetParam(); }
};

TEST_P(GatewayLink, StreamsThroughStripsUsageAndRecordsItOnce) {
  ASSERT_NO_FATAL_FAILURE(start(0, mux() ? std::vector<std::string>{} : std::vector<std::string>{"--enclave-http1"}));
  EXPECT_NE(gateway->output().find("keyId"), std::string::npos);
  EXPECT_NE(gateway->output().find(mux() ? "rvenc-mux connections" : "HTTP/1.1, a connection per stream"),
            std::string::npos)
      << gateway->output();
  const auto key = create_key("stream", {100, 100000, 2});
  const auto sealed = seal();
  auto response = post_chat(gateway_url, sealed.body, key.key);
  ASSERT_TRUE(response) << response.error().message;
  ASSERT_EQ(response->result_int(), 200u) << response->body();
  EXPECT_TRUE(std::string((*response)[beast_http::field::content_type]).starts_with("text/event-stream"));
  EXPECT_EQ((*response)["x-ratelimit-limit-requests"], "100");
  EXPECT_EQ((*response)["x-ratelimit-remaining-requests"], "99");
  EXPECT_EQ((*response)["x-ratelimit-limit-tokens"], "100000");
  EXPECT_FALSE((*response)["x-ratelimit-reset-tokens"].empty());
  EXPECT_FALSE((*response)["X-Request-Id"].empty());

  const auto events = rvenc::test::sse_events(response->body());
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].event, "init");  // version 3's salt, relayed untouched
  for (const auto& e : events) EXPECT_NE(e.event, "usage");
  auto plaintext = open_stream(sealed, events);  // every forwarded byte still authenticates
  ASSERT_TRUE(plaintext) << plaintext.error().message;
  EXPECT_NE(plaintext->find("[DONE]"), std::string::npos);

  auto rows = wait_for_usage(db, key.record.id, 1);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].status, 200);
  EXPECT_GT(rows[0].prompt_tokens, 0);
  EXPECT_GT(rows[0].completion_tokens, 0);
  EXPECT_EQ(rows[0].bytes_in, static_cast<std::int64_t>(sealed.body.size()));
  EXPECT_EQ(rows[0].bytes_out, static_cast<std::int64_t>(response->body().size()));

  auto health = http::fetch("GET", gateway_url + "/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->result_int(), 200u);
  EXPECT_EQ(boost::json::parse(health->body()).at("enclavesUp").as_int64(), 1);
  auto metrics = http::fetch("GET", gateway_url + "/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body().find("rvenc_gateway_requests_total{code=\"200\"}"), std::string::npos);
  EXPECT_NE(metrics->body().find("rvenc_gateway_added_latency_seconds_count 1"), std::string::npos);
}

// Whatever pieces the enclave's bytes arrive in (a message, frame or chunk boundary anywhere in a
// read), the client gets the whole answer with its authenticated end, and the row is written.
TEST_P(GatewayLink, EnclaveBytesArrivingInSlicesMakeTheWholeAnswer) {
  enclave = start_enclave(dir);
  auto url = enclave->wait_for_url();
  ASSERT_TRUE(url) << enclave->output();
  SlicingProxy slicer(http::parse_url(*url).value().port);
  gateway = start_gateway({slicer.url()}, db, dir.file("gateway.token"),
                          mux() ? std::vector<std::string>{} : std::vector<std::string>{"--enclave-http1"});
  auto gw = gateway->wait_for_url();
  ASSERT_TRUE(gw) << gateway->output();
  gateway_url = *gw;
  const auto key = create_key("sliced");
  for (int i = 0; i < 2; ++i) {
    const auto sealed = seal();
    auto response = post_chat(gateway_url, sealed.body, key.key);
    ASSERT_TRUE(response) << response.error().message;
    ASSERT_EQ(response->result_int(), 200u) << response->body();
    auto plaintext = open_stream(sealed, rvenc::test::sse_events(response->body()));
    ASSERT_TRUE(plaintext) << plaintext.error().message;
    EXPECT_NE(plaintext->find("[DONE]"), std::string::npos);
  }
  const auto rows = wait_for_usage(db, key.record.id, 2);
  ASSERT_EQ(rows.size(), 2u);
  for (const auto& row : rows) {
    EXPECT_EQ(row.status, 200);
    EXPECT_GT(row.completion_tokens, 0);
  }
}

// Reads an event stream from the gateway and gives up (closes) or keeps reading per `keep_reading`.
struct StreamRead {
  unsigned status = 0;
  std::string body;
};
StreamRead read_stream(const std::string& gateway_url, const std::string& body, const std::string& key,
                       const std::function<bool(const std::string&)>& keep_reading);

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Issue 30 item 2: a client that cuts its stream early still pays its prompt (the enclave's
// provisional usage), counted as ceil(bytes / 4) even without a space in it, and the key's
// tokens-per-minute limit holds: the next such request is refused. Over rvenc-mux the enclave's
// trailer adds the tokens it generated before it stopped.
TEST_P(GatewayLink, ACutStreamPaysItsPromptAndTheTokenLimitHolds) {
  ASSERT_NO_FATAL_FAILURE(start(200, mux() ? std::vector<std::string>{} : std::vector<std::string>{"--enclave-http1"}));
  const auto key = create_key("cut", {0, 150'000, 0});
  const std::string prompt(400'000, 'x');  // 400 KB, one "word"
  auto read = read_stream(gateway_url, seal(prompt).body, key.key,
                          [](const std::string& body) { return count_of(body, "event: data") < 3; });
  EXPECT_EQ(read.status, 200u);
  EXPECT_EQ(read.body.find("event: usage"), std::string::npos);  // stripped, as ever
  auto rows = wait_for_usage(db, key.record.id, 1, 20s);
  ASSERT_EQ(rows.size(), 1u);
  ASSERT_TRUE(rows[0].final) << gateway->output() << enclave->output();
  EXPECT_EQ(rows[0].status, kStatusClientClosed);
  EXPECT_GE(rows[0].prompt_tokens, 100'000);
  if (mux()) {
    EXPECT_GE(rows[0].completion_tokens, 3);
  }
  // The same request again: the prompt does not fit in what is left of the minute's budget.
  auto second = post_chat(gateway_url, seal(prompt).body, key.key);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(second->result_int(), 429u) << second->body();
  EXPECT_EQ(error_code(second->body()), "rate_limit_exceeded");
  EXPECT_FALSE((*second)[beast_http::field::retry_after].empty());
}

INSTANTIATE_TEST_SUITE_P(Links, GatewayLink, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& link) { return link.param ? "Mux" : "Http1"; });

TEST_F(GatewayIntegration, AuthFailuresAndRevokeTakesEffect) {
  ASSERT_NO_FATAL_FAILURE(start());
  const auto key = create_key("auth");
  const auto sealed = seal();

  auto missing = post_chat(gateway_url, sealed.body, std::nullopt);
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->result_int(), 401u);
  EXPECT_EQ(error_code(missing->body()), "invalid_api_key");
  const std::string unknown_key = generate_api_key(KeyEnv::live);
  auto unknown = post_chat(gateway_url, sealed.body, unknown_key);
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->result_int(), 401u);
  EXPECT_EQ(gateway->output().find(unknown_key), std::string::npos);  // never logged

  auto ok = post_chat(gateway_url, seal().body, key.key);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->result_int(), 200u);

  auto revoke = run_cli({"keys", "revoke", "--db", db, key.record.id});
  EXPECT_EQ(revoke.exit_code, 0);
  unsigned status = 0;
  for (int i = 0; i < 50 && status != 403; ++i) {
    auto after = post_chat(gateway_url, sealed.body, key.key);
    ASSERT_TRUE(after);
    status = after->result_int();
    if (status == 403) EXPECT_EQ(error_code(after->body()), "key_revoked");
    else std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(status, 403u);
}

TEST_F(GatewayIntegration, BadEnvelopesStopAtTheGateway) {
  ASSERT_NO_FATAL_FAILURE(start());
  const auto key = create_key("envelopes");
  const auto sealed = seal();
  auto v = boost::json::parse(sealed.body).as_object();
  auto with = [&](const char* field, boost::json::value value) {
    auto copy = v;
    copy[field] = std::move(value);
    return boost::json::serialize(copy);
  };
  auto without = [&](const char* field) {
    auto copy = v;
    copy.erase(field);
    return boost::json::serialize(copy);
  };
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not json", "invalid_request"},
      {"[]", "invalid_request"},
      {with("extra", 1), "invalid_request"},
      {without("nonce"), "invalid_request"},
      {without("cipherText"), "invalid_request"},
      {with("nonce", "zz"), "invalid_request"},
      {with("nonce", "00"), "invalid_request"},
      {with("cipherText", "00ff"), "invalid_request"},
      {with("keyId", "0011"), "invalid_request"},
      {with("timestamp", "now"), "invalid_request"},
      {with("encryptedInference", "xyz"), "invalid_request"},
      {with("version", 4), "unsupported_version"},
      {with("keyId", "0000000000000000"), "unknown_key_id"},
  };
  for (const auto& [body, code] : cases) {
    auto response = post_chat(gateway_url, body, key.key);
    ASSERT_TRUE(response);
    EXPECT_EQ(error_code(response->body()), code) << body.substr(0, 80);
    // Raised by the gateway itself: the enclave never saw it.
    EXPECT_NE(response->body().find("\"source\":\"gateway\""), std::string::npos) << response->body();
  }
  auto rows = wait_for_usage(db, key.record.id, cases.size());
  EXPECT_EQ(rows.size(), cases.size());
}

TEST_F(GatewayIntegration, RequestsPerMinuteLimit) {
  ASSERT_NO_FATAL_FAILURE(start());
  const auto key = create_key("rpm", {2, 0, 0});
  for (int i = 0; i < 2; ++i) {
    auto ok = post_chat(gateway_url, seal().body, key.key);
    ASSERT_TRUE(ok);
    EXPECT_EQ(ok->result_int(), 200u);
  }
  auto third = post_chat(gateway_url, seal().body, key.key);
  ASSERT_TRUE(third);
  EXPECT_EQ(third->result_int(), 429u);
  EXPECT_EQ(error_code(third->body()), "rate_limit_exceeded");
  EXPECT_GE(std::stoi(std::string((*third)[beast_http::field::retry_after])), 1);
  EXPECT_EQ((*third)["x-ratelimit-limit-requests"], "2");
  EXPECT_EQ((*third)["x-ratelimit-remaining-requests"], "0");
  EXPECT_FALSE((*third)["x-ratelimit-reset-requests"].empty());
}

TEST_F(GatewayIntegration, TokensAreChargedFromTheUsageEvent) {
  ASSERT_NO_FATAL_FAILURE(start());
  // Fewer tokens per minute than one demo completion uses: the next request waits.
  const auto key = create_key("tpm", {0, 5, 0});
  auto first = post_chat(gateway_url, seal().body, key.key);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->result_int(), 200u);
  EXPECT_EQ((*first)["x-ratelimit-limit-tokens"], "5");
  auto second = post_chat(gateway_url, seal().body, key.key);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->result_int(), 429u);
  EXPECT_EQ((*second)["x-ratelimit-remaining-tokens"], "0");
  EXPECT_FALSE((*second)[beast_http::field::retry_after].empty());
}

StreamRead read_stream(const std::string& gateway_url, const std::string& body, const std::string& key,
                       const std::function<bool(const std::string&)>& keep_reading) {
  boost::asio::io_context ioc;
  http::HttpClient client;
  StreamRead result;
  auto task = [&]() -> http::awaitable<void> {
    auto url = http::parse_url(gateway_url).value();
    auto request = http::make_request(http::Verb::post, "/rvenc/chat/completions", body);
    request.set(beast_http::field::authorization, "Bearer " + key);
    auto stream = co_await client.open(url, std::move(request));
    if (!stream) co_return;
    result.status = (*stream)->status();
    for (;;) {
      auto chunk = co_await (*stream)->read_some();
      if (!chunk || !*chunk) co_return;
      result.body += **chunk;
      if (!keep_reading(result.body)) {
        (*stream)->cancel();
        co_return;
      }
    }
  };
  auto done = boost::asio::co_spawn(ioc, task(), boost::asio::use_future);
  ioc.run();
  done.get();
  return result;
}

TEST_F(GatewayIntegration, ConcurrentStreamLimit) {
  ASSERT_NO_FATAL_FAILURE(start(50));
  const auto key = create_key("streams", {0, 0, 1});
  const auto sealed = seal();
  const auto second = seal();
  std::atomic<bool> streaming{false};
  std::thread slow([&] {
    (void)read_stream(gateway_url, sealed.body, key.key, [&](const std::string&) {
      streaming = true;
      return true;
    });
  });
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!streaming && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(streaming);
  auto response = post_chat(gateway_url, second.body, key.key);
  slow.join();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->result_int(), 429u);
  EXPECT_EQ(error_code(response->body()), "rate_limit_exceeded");
  // The slot is free again once the first stream ended.
  auto after = post_chat(gateway_url, second.body, key.key);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->result_int(), 200u);
}

TEST_F(GatewayIntegration, ClientDisconnectMidStreamIsRecordedOnce) {
  ASSERT_NO_FATAL_FAILURE(start(200));
  const auto key = create_key("disconnect");
  auto read = read_stream(gateway_url, seal().body, key.key,
                          [](const std::string& body) { return body.find("event: data") == std::string::npos; });
  EXPECT_EQ(read.status, 200u);
  auto rows = wait_for_usage(db, key.record.id, 1);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].status, kStatusClientClosed);
  // Charged its prompt and what the enclave generated before it stopped (its rvenc-mux trailer).
  EXPECT_GT(rows[0].prompt_tokens, 0);
  EXPECT_GE(rows[0].completion_tokens, 1);
  // Later writes (none expected) would show up here after another flush interval or two.
  std::this_thread::sleep_for(4 * kUsageFlushInterval);
  EXPECT_EQ(wait_for_usage(db, key.record.id, 2, 0ms).size(), 1u);
}

TEST_F(GatewayIntegration, EnclaveKilledMidStreamGivesOneGatewayErrorEvent) {
  ASSERT_NO_FATAL_FAILURE(start(300));
  const auto key = create_key("killed");
  const auto sealed = seal();
  bool killed = false;
  auto read = read_stream(gateway_url, sealed.body, key.key, [&](const std::string& body) {
    if (!killed && body.find("event: data") != std::string::npos) {
      enclave->signal(SIGKILL);
      killed = true;
    }
    return true;
  });
  ASSERT_TRUE(killed);
  EXPECT_EQ(read.status, 200u);
  const auto events = rvenc::test::sse_events(read.body);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().event, "error");
  const auto error = boost::json::parse(events.back().data).at("error");
  EXPECT_EQ(error.at("type").as_string(), "upstream_error");
  EXPECT_EQ(error.at("code").as_string(), "upstream_error");
  EXPECT_EQ(error.at("source").as_string(), "gateway");
  EXPECT_FALSE(error.at("message").as_string().empty());
  int gateway_errors = 0;
  for (const auto& e : events) gateway_errors += e.event == "error" ? 1 : 0;
  EXPECT_EQ(gateway_errors, 1);
  EXPECT_EQ(wait_for_usage(db, key.record.id, 1).at(0).status, 502);

  // The enclave is gone now: the next request is a 503 enclave_unavailable before any stream
  // (PROTOCOL.md section 7: the client re-attests and re-sends once).
  auto after = post_chat(gateway_url, sealed.body, key.key);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->result_int(), 503u);
  EXPECT_EQ(error_code(after->body()), "enclave_unavailable");
}

TEST_F(GatewayIntegration, RoutesByKeyIdAcrossEnclaves) {
  enclave = start_enclave(dir);
  auto first_url = enclave->wait_for_url();
  ASSERT_TRUE(first_url) << enclave->output();
  // Its own X-Wing key, the same gateway token and platform key: the gateway now answers
  // attestation from either enclave (chosen for load), and seal() checks the first's platform key.
  test::TempDir second_dir;
  std::filesystem::copy_file(dir.file("platform.key"), second_dir.file("platform.key"));
  auto second = start_enclave(second_dir);
  auto second_url = second->wait_for_url();
  ASSERT_TRUE(second_url) << second->output();
  gateway = start_gateway({*first_url, *second_url}, db, dir.file("gateway.token"));
  auto url = gateway->wait_for_url();
  ASSERT_TRUE(url) << gateway->output();
  gateway_url = *url;
  const auto key = create_key("routing");

  // Sealed to the second enclave's key (attested directly): the gateway finds it by keyId.
  const auto to_second = seal_chat(*second_url, second_dir.file("platform.key"));
  auto response = post_chat(gateway_url, to_second.body, key.key);
  ASSERT_TRUE(response);
  ASSERT_EQ(response->result_int(), 200u) << response->body();
  EXPECT_TRUE(open_stream(to_second, rvenc::test::sse_events(response->body())));
  // And the default enclave's key still goes to the default enclave.
  const auto to_first = seal();
  auto first = post_chat(gateway_url, to_first.body, key.key);
  ASSERT_TRUE(first);
  ASSERT_EQ(first->result_int(), 200u) << first->body();
  EXPECT_TRUE(open_stream(to_first, rvenc::test::sse_events(first->body())));
}

TEST_F(GatewayIntegration, EnclaveErrorsPassThroughAndV1GoesToTheDefault) {
  ASSERT_NO_FATAL_FAILURE(start());  // without --allow-v1
  const auto key = create_key("v1");
  const auto v1 = seal_chat(gateway_url, dir.file("platform.key"), "Hello", protocol::Version::v1);
  auto refused = post_chat(gateway_url, v1.body, key.key);
  ASSERT_TRUE(refused);
  // The enclave's own answer, status and body unchanged (not raised by the gateway).
  EXPECT_EQ(refused->result_int(), 400u);
  EXPECT_EQ(error_code(refused->body()), "unsupported_version");
  EXPECT_EQ(refused->body().find("\"source\":\"gateway\""), std::string::npos);
  EXPECT_EQ(wait_for_usage(db, key.record.id, 1).at(0).status, 400);

  gateway.reset();
  enclave = start_enclave(dir, 0, {"--allow-v1"});
  auto url = enclave->wait_for_url();
  ASSERT_TRUE(url) << enclave->output();
  gateway = start_gateway({*url}, db, dir.file("gateway.token"));
  auto gw = gateway->wait_for_url();
  ASSERT_TRUE(gw) << gateway->output();
  const auto allowed = seal_chat(*gw, dir.file("platform.key"), "Hello", protocol::Version::v1);
  auto response = post_chat(*gw, allowed.body, key.key);
  ASSERT_TRUE(response);
  ASSERT_EQ(response->result_int(), 200u) << response->body();
  EXPECT_TRUE(open_stream(allowed, rvenc::test::sse_events(response->body())));
}

TEST_F(GatewayIntegration, EnclaveDownIs503EnclaveUnavailable) {
  const std::string nobody = "http://127.0.0.1:" + std::to_string(test::free_port());
  gateway = start_gateway({nobody}, db, "");
  auto url = gateway->wait_for_url();
  ASSERT_TRUE(url) << gateway->output();
  auto attestation = http::fetch("GET", *url + "/rvenc/attestation?challenge=" + std::string(64, '0'));
  ASSERT_TRUE(attestation);
  EXPECT_EQ(attestation->result_int(), 503u);
  EXPECT_EQ(error_code(attestation->body()), "enclave_unavailable");
  auto health = http::fetch("GET", *url + "/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->result_int(), 503u);
}

TEST_F(GatewayIntegration, KeysCommandLine) {
  auto created = run_cli({"keys", "create", "--db", db, "--name", "cli", "--test", "--rpm", "7"});
  ASSERT_EQ(created.exit_code, 0);
  ASSERT_FALSE(created.out.empty());
  const std::string key = created.out.substr(0, created.out.find('\n'));
  EXPECT_TRUE(is_well_formed_api_key(key)) << created.out;
  EXPECT_TRUE(key.starts_with("sk_test_"));
  EXPECT_EQ(created.out, key + "\n");

  auto list = run_cli({"keys", "list", "--db", db, "--json"});
  ASSERT_EQ(list.exit_code, 0);
  const auto keys = boost::json::parse(list.out).as_array();
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].at("key").as_string(), "…" + key.substr(key.size() - 4));
  EXPECT_EQ(keys[0].at("env").as_string(), "test");
  EXPECT_EQ(keys[0].at("rpm").as_int64(), 7);
  EXPECT_EQ(list.out.find(key), std::string::npos);

  EXPECT_EQ(run_cli({"keys", "revoke", "--db", db, "key_doesnotexist"}).exit_code, 1);
  EXPECT_EQ(run_cli({"keys", "revoke", "--db", db, key}).exit_code, 0);
  EXPECT_TRUE(boost::json::parse(run_cli({"keys", "list", "--db", db, "--json"}).out).as_array()[0].at("revoked").as_bool());
  auto usage = run_cli({"keys", "usage", "--db", db, "--json"});
  EXPECT_EQ(usage.exit_code, 0);
  EXPECT_EQ(boost::json::parse(usage.out).at("keys").as_array().size(), 1u);
  EXPECT_EQ(run_cli({"gateway", "--listen", "nonsense", "--enclave", "http://127.0.0.1:1", "--db", db}).exit_code, 2);
}

// Before: fixed printf widths, so a name longer than 16 characters pushed every later column out of
// line (and '…' counted as 3). Now each column starts at the same place in every line.
TEST_F(GatewayIntegration, KeysTablesStayAligned) {
  ASSERT_EQ(run_cli({"keys", "create", "--db", db, "--name", "a-much-longer-key-name-than-sixteen", "--test"}).exit_code, 0);
  ASSERT_EQ(run_cli({"keys", "create", "--db", db, "--name", "short", "--test"}).exit_code, 0);
  // Columns by characters: '…' is 3 bytes but one column.
  const auto width = [](std::string_view text) {
    return std::count_if(text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xc0) != 0x80; });
  };
  for (const std::string command : {"list", "usage"}) {
    auto out = run_cli({"keys", command, "--db", db});
    ASSERT_EQ(out.exit_code, 0) << out.out;
    std::istringstream lines(out.out);
    std::string header, first, second;
    std::getline(lines, header);
    std::getline(lines, first);
    std::getline(lines, second);
    if (command == "list") {  // the last column (REVOKED, left-aligned) starts at the same place
      const auto title = width(header.substr(0, header.find("REVOKED")));
      EXPECT_EQ(width(first.substr(0, first.rfind(" no") + 1)), title) << out.out;
      EXPECT_EQ(width(second.substr(0, second.rfind(" no") + 1)), title) << out.out;
    } else {  // numbers align right: every row ends where the title row ends
      EXPECT_EQ(width(first), width(header)) << out.out;
      EXPECT_EQ(width(second), width(header)) << out.out;
    }
  }
}

}  // namespace
}  // namespace rvenc::gateway
