// The gateway's checks through its real handler and http::RecordingWriter (no sockets): an
// enclave URL nobody listens on stands in for "no enclave", so nothing here can reach one.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>

#include "rvenc/gateway/gateway.hpp"
#include "rvenc/protocol/sealing.hpp"
#include "support/test_support.hpp"

namespace rvenc::gateway {
namespace {

namespace beast_http = boost::beast::http;

std::string error_code_of(const std::string& body) {
  return std::string(boost::json::parse(body).at("error").at("code").as_string());
}

std::string sealed_body() {
  return test::seal(crypto::xwing_generate_keypair().public_key,
                    R"({"model":"rvenc-demo","messages":[{"role":"user","content":"hi"}]})")
      .body;
}

class MiddlewareTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = KeyStore::open(db);
    ASSERT_TRUE(store);
    live = store->create_key("live", KeyEnv::live, {}).value();
    limited = store->create_key("limited", KeyEnv::test, {1, 0, 0}).value();
    revoked = store->create_key("revoked", KeyEnv::live, {}).value();
    ASSERT_TRUE(store->revoke(revoked.record.id));
    make_handler(kDefaultMaxBody);
  }

  void make_handler(std::uint64_t max_body, std::int64_t attestation_per_minute = kDefaultAttestationPerMinute) {
    GatewayOptions options;
    options.attestation_per_minute = attestation_per_minute;
    options.enclaves.push_back(http::parse_url("http://127.0.0.1:" + std::to_string(test::free_port())).value());
    options.db_path = db;
    options.max_body = max_body;
    handler = GatewayHandler::create(options).value();
  }

  http::RecordingWriter call(http::Verb method, std::string target, std::string body = {},
                             std::optional<std::string> key = std::nullopt) {
    http::Request request{method, target, 11};
    if (key) request.set(beast_http::field::authorization, "Bearer " + *key);
    request.body() = std::move(body);
    request.prepare_payload();
    http::RecordingWriter writer;
    writer.address = from;
    boost::asio::io_context ioc;
    auto done = boost::asio::co_spawn(ioc, handler->handle(request, writer), boost::asio::use_future);
    ioc.run();
    done.get();
    return writer;
  }

  test::TempDir dir;
  std::string db = dir.file("gw.db");
  CreatedKey live, limited, revoked;
  std::unique_ptr<GatewayHandler> handler;
  std::optional<http::IpAddress> from;  // the client address of the requests call() makes
};

TEST_F(MiddlewareTest, AllowList) {
  auto unknown = call(http::Verb::get, "/v1/models");
  EXPECT_EQ(unknown.status(), 404u);
  EXPECT_EQ(error_code_of(unknown.body()), "not_found");
  auto wrong_method = call(http::Verb::get, "/rvenc/chat/completions");
  EXPECT_EQ(wrong_method.status(), 405u);
  EXPECT_EQ(wrong_method.response->at(beast_http::field::allow), "POST");
  EXPECT_EQ(call(http::Verb::delete_, "/metrics").status(), 405u);
}

TEST_F(MiddlewareTest, AuthFailures) {
  const std::string body = sealed_body();
  auto missing = call(http::Verb::post, "/rvenc/chat/completions", body);
  EXPECT_EQ(missing.status(), 401u);
  EXPECT_EQ(error_code_of(missing.body()), "invalid_api_key");
  auto malformed = call(http::Verb::post, "/rvenc/chat/completions", body, std::string("sk_live_tooshort"));
  EXPECT_EQ(malformed.status(), 401u);
  const std::string unknown_key = generate_api_key(KeyEnv::live);
  auto unknown = call(http::Verb::post, "/rvenc/chat/completions", body, unknown_key);
  EXPECT_EQ(unknown.status(), 401u);
  EXPECT_EQ(unknown.body().find(unknown_key), std::string::npos);
  auto gone = call(http::Verb::post, "/rvenc/chat/completions", body, revoked.key);
  EXPECT_EQ(gone.status(), 403u);
  EXPECT_EQ(error_code_of(gone.body()), "key_revoked");
  EXPECT_FALSE(gone.response->at("X-Request-Id").empty());
}

TEST_F(MiddlewareTest, HeaderLimit) {
  http::Request request{http::Verb::get, "/healthz", 11};
  request.set("X-Padding", std::string(kMaxHeaderBytes, 'a'));
  http::RecordingWriter writer;
  boost::asio::io_context ioc;
  auto done = boost::asio::co_spawn(ioc, handler->handle(request, writer), boost::asio::use_future);
  ioc.run();
  done.get();
  EXPECT_EQ(writer.status(), 431u);
  EXPECT_EQ(error_code_of(writer.body()), "request_too_large");
}

TEST_F(MiddlewareTest, BodyLimit) {
  make_handler(1024);
  auto big = call(http::Verb::post, "/rvenc/chat/completions", std::string(2048, 'x'), live.key);
  EXPECT_EQ(big.status(), 413u);
  EXPECT_EQ(error_code_of(big.body()), "request_too_large");
}

TEST_F(MiddlewareTest, EnvelopeIsCheckedBeforeForwarding) {
  auto bad_json = call(http::Verb::post, "/rvenc/chat/completions", "{not json", live.key);
  EXPECT_EQ(bad_json.status(), 400u);
  EXPECT_EQ(error_code_of(bad_json.body()), "invalid_request");
  auto v4 = call(http::Verb::post, "/rvenc/chat/completions", R"({"version":4})", live.key);
  EXPECT_EQ(v4.status(), 400u);
  EXPECT_EQ(error_code_of(v4.body()), "unsupported_version");
  // A valid envelope passes every check; with no enclave answering its keyId is unknown.
  auto valid = call(http::Verb::post, "/rvenc/chat/completions", sealed_body(), live.key);
  EXPECT_EQ(valid.status(), 404u);
  EXPECT_EQ(error_code_of(valid.body()), "unknown_key_id");
}

TEST_F(MiddlewareTest, RateLimitHeadersAndRetryAfter) {
  const std::string body = sealed_body();
  auto first = call(http::Verb::post, "/rvenc/chat/completions", body, limited.key);
  EXPECT_EQ(first.response->at("x-ratelimit-limit-requests"), "1");
  EXPECT_EQ(first.response->at("x-ratelimit-remaining-requests"), "0");
  auto second = call(http::Verb::post, "/rvenc/chat/completions", body, limited.key);
  EXPECT_EQ(second.status(), 429u);
  EXPECT_EQ(error_code_of(second.body()), "rate_limit_exceeded");
  EXPECT_FALSE(second.response->at(beast_http::field::retry_after).empty());
  EXPECT_FALSE(second.response->at("x-ratelimit-reset-requests").empty());
}

TEST_F(MiddlewareTest, UsageRowPerAuthenticatedRequest) {
  (void)call(http::Verb::post, "/rvenc/chat/completions", "{}", live.key);
  (void)call(http::Verb::post, "/rvenc/chat/completions", "{}");  // not authenticated: no row
  handler->usage().flush();
  auto rows = KeyStore::open(db).value().recent_usage(10).value();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].key_id, live.record.id);
  EXPECT_EQ(rows[0].status, 400);
  EXPECT_EQ(rows[0].bytes_in, 2);
}

TEST_F(MiddlewareTest, StepsStopAtTheFirstAnswer) {
  int ran = 0;
  auto pass = [&ran](RequestContext&) -> http::awaitable<std::optional<http::Response>> {
    ++ran;
    co_return std::nullopt;
  };
  auto stop = [&ran](RequestContext&) -> http::awaitable<std::optional<http::Response>> {
    ++ran;
    co_return http::json_response(418, "{}");
  };
  auto pass_now = [&ran](RequestContext&) -> StepResult {
    ++ran;
    return std::nullopt;
  };
  // Synchronous and asynchronous steps mixed, in order.
  const std::vector<Step> steps{SyncStep{pass_now}, AsyncStep{pass}, AsyncStep{stop}, SyncStep{pass_now}};
  http::Request request{http::Verb::get, "/", 11};
  RequestContext context(request);
  boost::asio::io_context ioc;
  auto result = boost::asio::co_spawn(ioc, run_steps(steps, context), boost::asio::use_future);
  ioc.run();
  auto response = result.get();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->result_int(), 418u);
  EXPECT_EQ(ran, 3);
}

TEST_F(MiddlewareTest, HealthAndMetricsWithoutEnclaves) {
  auto health = call(http::Verb::get, "/healthz");
  EXPECT_EQ(health.status(), 503u);
  EXPECT_EQ(boost::json::parse(health.body()).at("enclavesUp").as_int64(), 0);
  (void)call(http::Verb::get, "/nope");
  auto metrics = call(http::Verb::get, "/metrics");
  EXPECT_EQ(metrics.status(), 200u);
  EXPECT_NE(metrics.body().find("rvenc_gateway_requests_total{code=\"404\"} 1"), std::string::npos);
  EXPECT_NE(metrics.body().find("rvenc_gateway_added_latency_seconds_count"), std::string::npos);
  // No enclave answers: 503 enclave_unavailable (the client may re-attest later), not 502.
  auto attestation = call(http::Verb::get, "/rvenc/attestation?challenge=" + std::string(64, '0'));
  EXPECT_EQ(attestation.status(), 503u);
  EXPECT_EQ(error_code_of(attestation.body()), "enclave_unavailable");
  auto models = call(http::Verb::get, "/rvenc/models");
  EXPECT_EQ(models.status(), 503u);
  EXPECT_EQ(error_code_of(models.body()), "enclave_unavailable");
  // A bad challenge is the caller's error, found by the gateway.
  auto bad = call(http::Verb::get, "/rvenc/attestation?challenge=00");
  EXPECT_EQ(bad.status(), 400u);
  EXPECT_EQ(error_code_of(bad.body()), "invalid_request");
}

// Attestation needs no API key, so it is limited per client address; a valid key is not limited.
TEST_F(MiddlewareTest, UnauthenticatedAttestationIsLimitedPerAddress) {
  make_handler(kDefaultMaxBody, 1);  // one a minute asked for; two (one enclave, twice) allowed
  const std::string target = "/rvenc/attestation?challenge=" + std::string(64, '0');
  from = boost::asio::ip::make_address("198.51.100.7");
  for (int i = 0; i < 2; ++i) EXPECT_EQ(call(http::Verb::get, target).status(), 503u) << i;  // no enclave: passed
  auto limited_call = call(http::Verb::get, target);
  EXPECT_EQ(limited_call.status(), 429u);
  EXPECT_EQ(error_code_of(limited_call.body()), "rate_limit_exceeded");
  EXPECT_FALSE(limited_call.response->at(beast_http::field::retry_after).empty());
  EXPECT_EQ(call(http::Verb::get, target, {}, live.key).status(), 503u);     // a valid key: not limited
  EXPECT_EQ(call(http::Verb::get, target, {}, revoked.key).status(), 429u);  // a revoked one is no key
  EXPECT_EQ(call(http::Verb::get, "/rvenc/models").status(), 503u);          // only attestation is limited
  from = boost::asio::ip::make_address("198.51.100.8");
  EXPECT_EQ(call(http::Verb::get, target).status(), 503u);  // another address has its own budget
}

}  // namespace
}  // namespace rvenc::gateway
