// The proxy over real sockets: ProxyServer on 127.0.0.1:0 in front of an in-process
// gateway+enclave stand-in (real HTTP, real X-Wing and sealing, scripted event streams).
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>

#include "client/fake_gateway.hpp"
#include "rvenc/protocol/shaping.hpp"
#include "rvenc/http/client.hpp"
#include "rvenc/proxy/service.hpp"
#include "support/test_support.hpp"

namespace rvenc::proxy {
namespace {

namespace json = boost::json;
namespace bhttp = boost::beast::http;

constexpr std::string_view kChatBody = R"({"model":"demo","messages":[{"role":"user","content":"Hello"}]})";

std::string chunk(std::string_view delta, std::string_view finish = "null", std::string_view usage = "null") {
  return R"({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1764004858,"model":"demo","choices":[{"index":0,"delta":)" +
         std::string(delta) + R"(,"logprobs":null,"finish_reason":)" + std::string(finish) + R"(}],"usage":)" +
         std::string(usage) + "}";
}

class ProxyTest : public ::testing::Test {
 protected:
  void SetUp() override { start({}); }

  void start(ProxyOptions options) {
    proxy_.reset();
    options.host = "127.0.0.1";
    options.port = 0;
    options.gateway_url = gateway_.url();
    options.platform_public_key = gateway_.platform_public_key();
    auto proxy = ProxyServer::create(options);
    ASSERT_TRUE(proxy) << proxy.error().to_string();
    proxy_ = std::move(*proxy);
    proxy_->start();
  }

  Result<http::Response> post(std::string_view body, std::string_view key = test::FakeGateway::kApiKey) {
    http::Fields headers;
    if (!key.empty()) headers.set(bhttp::field::authorization, "Bearer " + std::string(key));
    headers.set(bhttp::field::content_type, "application/json");
    return http::fetch("POST", proxy_->url() + "/v1/chat/completions", std::string(body), headers);
  }

  static json::object error_of(const http::Response& response) {
    return json::parse(response.body()).as_object().at("error").as_object();
  }

  test::FakeGateway gateway_;
  std::unique_ptr<ProxyServer> proxy_;
};

TEST_F(ProxyTest, HealthzAndModels) {
  auto health = http::fetch("GET", proxy_->url() + "/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->result_int(), 200u);

  http::Fields headers;
  headers.set(bhttp::field::authorization, "Bearer " + std::string(test::FakeGateway::kApiKey));
  auto models = http::fetch("GET", proxy_->url() + "/v1/models", {}, headers);
  ASSERT_TRUE(models);
  ASSERT_EQ(models->result_int(), 200u) << models->body();
  const auto list = json::parse(models->body()).as_object();
  EXPECT_EQ(list.at("data").as_array()[0].at("id").as_string(), "demo");
}

// A key the gateway accepted is not checked again for every GET /v1/models within models_ttl.
TEST_F(ProxyTest, ModelsOfAnAcceptedKeyAreCachedBriefly) {
  http::Fields headers;
  headers.set(bhttp::field::authorization, "Bearer " + std::string(test::FakeGateway::kApiKey));
  const auto list_models = [&] {
    auto models = http::fetch("GET", proxy_->url() + "/v1/models", {}, headers);
    ASSERT_TRUE(models);
    EXPECT_EQ(models->result_int(), 200u) << models->body();
  };
  list_models();
  list_models();
  EXPECT_EQ(gateway_.models_requests.load(), 1);

  ProxyOptions uncached;
  uncached.models_ttl = std::chrono::seconds(0);
  start(uncached);
  list_models();
  list_models();
  EXPECT_EQ(gateway_.models_requests.load(), 3);
}

TEST_F(ProxyTest, MissingKeyIs401WithOpenAiErrorJson) {
  auto response = post(kChatBody, "");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->result_int(), 401u);
  const auto error = error_of(*response);
  EXPECT_EQ(error.at("code").as_string(), "invalid_api_key");
  EXPECT_EQ(error.at("type").as_string(), "authentication_error");
  EXPECT_TRUE(error.at("param").is_null());

  auto models = http::fetch("GET", proxy_->url() + "/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(models->result_int(), 401u);
}

// The proxy reads API keys with the one Bearer parser (common/auth.hpp, RFC 6750) the gateway uses.
TEST_F(ProxyTest, BearerRules) {
  const std::string key(test::FakeGateway::kApiKey);
  auto status_with = [&](const std::string& authorization) {
    http::Fields headers;
    headers.set(bhttp::field::authorization, authorization);
    auto models = http::fetch("GET", proxy_->url() + "/v1/models", {}, headers);
    EXPECT_TRUE(models);
    return models ? models->result_int() : 0u;
  };
  for (const std::string& accepted : {"bearer " + key, "BEARER " + key, "Bearer  " + key, "Bearer " + key + " "})
    EXPECT_EQ(status_with(accepted), 200u) << accepted;
  for (const std::string& refused : {"Bearer\t" + key, "Bearer " + key + " x", "Bearer " + key + ";"})
    EXPECT_EQ(status_with(refused), 401u) << refused;
}

TEST_F(ProxyTest, KeyTheGatewayRefusesIs401) {
  const std::string wrong = "sk_test_wrongwrongwrongwrongwrongwrong";
  auto response = post(kChatBody, wrong);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->result_int(), 401u) << response->body();
  EXPECT_EQ(error_of(*response).at("code").as_string(), "invalid_api_key");
  EXPECT_FALSE(proxy_->service().cache().contains(wrong)) << "a refused key keeps no client";
}

TEST_F(ProxyTest, BadBodyIs400AndUnknownModelIs404) {
  auto bad = post("{not json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->result_int(), 400u);
  EXPECT_EQ(error_of(*bad).at("type").as_string(), "invalid_request_error");

  auto unknown = post(R"({"model":"no-such-model","messages":[{"role":"user","content":"x"}]})");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->result_int(), 404u);
  EXPECT_EQ(error_of(*unknown).at("code").as_string(), "model_not_found");
  EXPECT_EQ(gateway_.chat_requests.load(), 0) << "an unknown model never reaches the gateway";
}

TEST_F(ProxyTest, NonStreamingAssemblesAChatCompletion) {
  gateway_.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    return test::Reply{.pieces = test::FakeGateway::sealed(
                           sealer, {chunk(R"({"role":"assistant","content":"Hel"})"), chunk(R"({"content":"lo"})"),
                                    chunk("{}", R"("stop")", R"({"prompt_tokens":5,"completion_tokens":2})")})};
  });
  auto response = post(kChatBody);
  ASSERT_TRUE(response);
  ASSERT_EQ(response->result_int(), 200u) << response->body();
  const auto completion = json::parse(response->body()).as_object();
  EXPECT_EQ(completion.at("object").as_string(), "chat.completion");
  const auto& choice = completion.at("choices").as_array()[0].as_object();
  EXPECT_EQ(choice.at("message").at("content").as_string(), "Hello");
  EXPECT_EQ(choice.at("finish_reason").as_string(), "stop");
  EXPECT_EQ(completion.at("usage").at("total_tokens").as_int64(), 7);
  // The request reached the enclave as sent.
  EXPECT_EQ(gateway_.last_request().at("messages").as_array()[0].at("content").as_string(), "Hello");
}

TEST_F(ProxyTest, StreamingRelaysChunksThenUsageThenDone) {
  gateway_.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    return test::Reply{.pieces = test::FakeGateway::sealed(
                           sealer, {chunk(R"({"role":"assistant","content":"Hi"})"),
                                    chunk("{}", R"("stop")", R"({"prompt_tokens":5,"completion_tokens":1})")})};
  });
  auto response = post(R"({"model":"demo","messages":[{"role":"user","content":"x"}],"stream":true,)"
                       R"("stream_options":{"include_usage":true}})");
  ASSERT_TRUE(response);
  ASSERT_EQ(response->result_int(), 200u) << response->body();
  EXPECT_EQ((*response)[bhttp::field::content_type], "text/event-stream");
  const std::string& body = response->body();
  std::vector<std::string> events;
  for (std::size_t pos = 0; pos < body.size();) {
    const auto end = body.find("\n\n", pos);
    ASSERT_NE(end, std::string::npos) << body;
    events.push_back(body.substr(pos, end - pos));
    pos = end + 2;
  }
  ASSERT_EQ(events.size(), 4u) << body;
  EXPECT_NE(events[0].find(R"("content":"Hi")"), std::string::npos);
  const auto usage_chunk = json::parse(events[2].substr(6)).as_object();
  EXPECT_TRUE(usage_chunk.at("choices").as_array().empty());
  EXPECT_EQ(usage_chunk.at("usage").at("total_tokens").as_int64(), 6);
  EXPECT_EQ(events[3], "data: [DONE]");
}

TEST_F(ProxyTest, ErrorMidStreamIsAnErrorObjectWithoutDone) {
  gateway_.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    return test::Reply{.pieces = {sealer.seal_event(protocol::EventKind::data, chunk(R"({"content":"par"})")),
                                  protocol::format_event("error", R"({"error":{"message":"enclave connection lost",)"
                                                                  R"("type":"upstream_error","code":"upstream_error",)"
                                                                  R"("source":"gateway"}})")}};
  });
  auto response = post(R"({"model":"demo","messages":[{"role":"user","content":"x"}],"stream":true})");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->result_int(), 200u);
  const std::string& body = response->body();
  EXPECT_NE(body.find(R"("content":"par")"), std::string::npos) << body;
  const auto error_at = body.find(R"(data: {"error":)");
  ASSERT_NE(error_at, std::string::npos) << body;
  EXPECT_EQ(body.find("[DONE]"), std::string::npos) << body;
  EXPECT_TRUE(body.ends_with("\n\n"));
}

TEST_F(ProxyTest, TruncatedStreamIsAnErrorNotASilentEnd) {
  gateway_.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    return test::Reply{.pieces = {sealer.seal_event(protocol::EventKind::data, chunk(R"({"content":"par"})"))}};
  });
  auto streaming = post(R"({"model":"demo","messages":[{"role":"user","content":"x"}],"stream":true})");
  ASSERT_TRUE(streaming);
  EXPECT_NE(streaming->body().find(R"("code":"truncated_stream")"), std::string::npos) << streaming->body();
  EXPECT_EQ(streaming->body().find("[DONE]"), std::string::npos);

  auto whole = post(kChatBody);
  ASSERT_TRUE(whole);
  EXPECT_EQ(whole->result_int(), 502u);
  EXPECT_EQ(error_of(*whole).at("code").as_string(), "truncated_stream");
}

TEST_F(ProxyTest, RateLimitPassesStatusAndHeadersThrough) {
  gateway_.set_script([](protocol::ResponseSealer&, const protocol::ChatRequest&) {
    http::Response limited = http::error_response(Error{Errc::rate_limit_exceeded, "too many requests"});
    limited.set(bhttp::field::retry_after, "7");
    limited.set("x-ratelimit-limit-requests", "10");
    limited.set("x-ratelimit-remaining-requests", "0");
    return test::Reply{.error = std::move(limited)};
  });
  for (bool stream : {false, true}) {
    auto response = post(std::string(R"({"model":"demo","messages":[{"role":"user","content":"x"}],"stream":)") +
                         (stream ? "true" : "false") + "}");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->result_int(), 429u);
    EXPECT_EQ((*response)[bhttp::field::retry_after], "7");
    EXPECT_EQ((*response)["x-ratelimit-limit-requests"], "10");
    EXPECT_EQ((*response)["x-ratelimit-remaining-requests"], "0");
    EXPECT_EQ(error_of(*response).at("type").as_string(), "rate_limit_error");
  }
}

TEST_F(ProxyTest, KeysAreReusedAndSurviveAnEnclaveKeyChange) {
  ProxyOptions options;
  options.cache.dek.max_requests = 0;
  start(options);
  for (int i = 0; i < 3; ++i) {
    auto response = post(kChatBody);
    ASSERT_TRUE(response);
    ASSERT_EQ(response->result_int(), 200u) << response->body();
  }
  EXPECT_EQ(gateway_.attestation_requests.load(), 1);
  gateway_.rotate_key();
  auto response = post(kChatBody);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->result_int(), 200u) << response->body();
  EXPECT_EQ(gateway_.attestation_requests.load(), 2);
}

// Issue 30 item 3: a proxy restarted with another --measurement and a stored DEK re-attests
// instead of using the stored keys; when the enclave does not match, requests fail with
// attestation_failed and none reaches the gateway.
TEST_F(ProxyTest, RestartWithOtherTrustSettingsDoesNotUseTheStoredKeys) {
  test::TempDir dir;
  ProxyOptions options;
  options.dek_store = dir.file("deks.json");
  options.measurement = gateway_.measurement();
  start(options);
  auto first = post(kChatBody);
  ASSERT_TRUE(first);
  ASSERT_EQ(first->result_int(), 200u) << first->body();
  ASSERT_EQ(gateway_.chat_requests.load(), 1);
  ASSERT_EQ(gateway_.attestation_requests.load(), 1);

  options.measurement = std::vector<std::uint8_t>(gateway_.measurement().size(), 0x5A);
  start(options);
  for (int i = 0; i < 2; ++i) {
    auto refused = post(kChatBody);
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->result_int(), 502u) << refused->body();
    EXPECT_EQ(error_of(*refused).at("code").as_string(), "attestation_failed");
  }
  EXPECT_EQ(gateway_.chat_requests.load(), 1) << "no request went out with the stored keys";
  EXPECT_EQ(gateway_.attestation_requests.load(), 3);

  // Back to the settings the enclave matches: fresh keys from a fresh attestation.
  options.measurement = gateway_.measurement();
  start(options);
  auto again = post(kChatBody);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->result_int(), 200u) << again->body();
  EXPECT_EQ(gateway_.attestation_requests.load(), 4);
  proxy_.reset();  // it writes the store on the way out, while `dir` still exists
}

// Handler level (no proxy socket): a client that leaves mid-stream gets nothing more, no [DONE].
TEST(ProxyService, StopsWritingWhenTheClientLeaves) {
  test::FakeGateway gateway;
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    std::vector<std::string> chunks(50, chunk(R"({"content":"token"})"));
    return test::Reply{.pieces = test::FakeGateway::sealed(sealer, chunks)};
  });
  ProxyOptions options;
  options.gateway_url = gateway.url();
  options.platform_public_key = gateway.platform_public_key();
  ProxyService service(options, nullptr);

  http::Request request{http::Verb::post, "/v1/chat/completions", http::kHttp11};
  request.set(bhttp::field::authorization, "Bearer " + std::string(test::FakeGateway::kApiKey));
  request.body() = R"({"model":"demo","messages":[{"role":"user","content":"x"}],"stream":true})";
  http::RecordingWriter writer;
  writer.disconnect_after_writes(2);

  boost::asio::io_context io;
  auto done = boost::asio::co_spawn(io, service.chat_completions(request, writer), boost::asio::use_future);
  io.run();
  done.get();
  ASSERT_TRUE(writer.stream_header);
  EXPECT_EQ(writer.chunks.size(), 2u);
  EXPECT_FALSE(writer.stream_ended);
  EXPECT_EQ(writer.body().find("[DONE]"), std::string::npos);
}

TEST(ProxyServer, RefusesANonLoopbackAddressUnlessAllowed) {
  ProxyOptions options;
  options.host = "0.0.0.0";
  options.port = 0;
  auto refused = ProxyServer::create(options);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::invalid_request);
  EXPECT_NE(refused.error().message.find("--allow-remote"), std::string::npos);
  EXPECT_NE(refused.error().message.find("decrypted traffic"), std::string::npos);

  EXPECT_TRUE(is_loopback_host("127.0.0.1"));
  EXPECT_TRUE(is_loopback_host("127.1.2.3"));
  EXPECT_TRUE(is_loopback_host("::1"));
  EXPECT_TRUE(is_loopback_host("[::1]"));
  EXPECT_TRUE(is_loopback_host("localhost"));
  EXPECT_FALSE(is_loopback_host("0.0.0.0"));
  EXPECT_FALSE(is_loopback_host("::"));
  EXPECT_FALSE(is_loopback_host("192.168.1.10"));
  EXPECT_FALSE(is_loopback_host("example.com"));
}

TEST(ProxyServer, ParsesListenAddresses) {
  auto v4 = http::parse_listen_address("127.0.0.1:3000");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->first, "127.0.0.1");
  EXPECT_EQ(v4->second, 3000);
  auto v6 = http::parse_listen_address("[::1]:0");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->first, "::1");
  EXPECT_EQ(v6->second, 0);
  for (std::string_view bad : {"", "127.0.0.1", ":3000", "127.0.0.1:", "127.0.0.1:70000", "127.0.0.1:3x", "::1:3000",
                               "[::1]3000"}) {
    EXPECT_FALSE(http::parse_listen_address(bad)) << bad;
  }
}

// --shaping: the proxy's SDK asks for it inside the encrypted request, and the proxy's answer never
// carries a filler or a shaped record, only the chunks they held (docs/traffic-shaping.md).
TEST_F(ProxyTest, ShapedStreamsReachTheCallerAsPlainChunks) {
  ProxyOptions options;
  options.shaping = protocol::ShapingMode::cadence;
  start(options);
  gateway_.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    protocol::ShapedWriter writer(128);
    std::vector<std::string> records{writer.next_record()};  // a filler
    writer.push(chunk(R"({"role":"assistant","content":")" + std::string(150, 'H') + R"("})"));
    writer.push(chunk("{}", R"("stop")", R"({"prompt_tokens":5,"completion_tokens":1})"));
    while (!writer.empty()) records.push_back(writer.next_record());
    records.push_back(writer.next_record());  // and one more after the content
    return test::Reply{.pieces = test::FakeGateway::sealed(sealer, records)};
  });
  auto response = post(kChatBody);
  ASSERT_TRUE(response);
  ASSERT_EQ(response->result_int(), 200u) << response->body();
  const auto completion = json::parse(response->body()).as_object();
  EXPECT_EQ(completion.at("choices").at(0).at("message").at("content").as_string(), std::string(150, 'H'));
  EXPECT_EQ(response->body().find("rvenc_filler"), std::string::npos) << response->body();
  EXPECT_EQ(gateway_.last_request().at("rvenc_shaping").at("mode").as_string(), "cadence");
}

}  // namespace
}  // namespace rvenc::proxy

