#include <gtest/gtest.h>

#include "rvenc/http/server.hpp"
#include "rvenc/http/url.hpp"

namespace rvenc::http {
namespace {

TEST(Url, ParsesHostPortAndTarget) {
  auto url = parse_url("http://127.0.0.1:8080/v1/chat?x=1");
  ASSERT_TRUE(url) << url.error().to_string();
  EXPECT_EQ(url->scheme, "http");
  EXPECT_EQ(url->host, "127.0.0.1");
  EXPECT_EQ(url->port, 8080);
  EXPECT_EQ(url->target, "/v1/chat?x=1");
  EXPECT_EQ(url->origin(), "http://127.0.0.1:8080");
  EXPECT_EQ(url->host_header(), "127.0.0.1:8080");
  EXPECT_EQ(url->join("/models"), "/v1/chat/models");
}

TEST(Url, DefaultsPortAndPath) {
  auto url = parse_url("http://example.test");
  ASSERT_TRUE(url);
  EXPECT_EQ(url->port, 80);
  EXPECT_EQ(url->target, "/");
  EXPECT_EQ(url->host_header(), "example.test");
  EXPECT_EQ(url->join("/v1/models"), "/v1/models");
}

TEST(Url, Ipv6Literal) {
  auto url = parse_url("http://[::1]:9000/");
  ASSERT_TRUE(url);
  EXPECT_EQ(url->host, "::1");
  EXPECT_EQ(url->origin(), "http://[::1]:9000");
}

TEST(Url, RejectsUnsupportedSchemeSayingWhichAreSupported) {
  auto url = parse_url("ftp://example.test/");
  ASSERT_FALSE(url);
  EXPECT_EQ(url.error().code, Errc::invalid_request);
  EXPECT_NE(url.error().message.find("only http:// and https://"), std::string::npos);
}

TEST(Url, HttpsDefaultsToPort443) {
  auto url = parse_url("https://example.test/v1");
  ASSERT_TRUE(url);
  EXPECT_TRUE(url->secure());
  EXPECT_EQ(url->port, 443);
  EXPECT_EQ(url->host_header(), "example.test");
  EXPECT_EQ(url->origin(), "https://example.test:443");
  auto other = parse_url("https://example.test:8443/");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->host_header(), "example.test:8443");
  EXPECT_FALSE(parse_url("http://example.test/")->secure());
}

TEST(Url, RejectsGarbageAndBadPorts) {
  EXPECT_FALSE(parse_url("not a url"));
  EXPECT_FALSE(parse_url("http://:80/"));
  EXPECT_FALSE(parse_url("http://host:99999/"));
  EXPECT_FALSE(parse_url("http://user:pw@host/"));
  EXPECT_FALSE(parse_url(""));
}

TEST(Types, ErrorResponseIsOpenAiJson) {
  Response response = error_response(Error{Errc::rate_limit_exceeded, "slow down"});
  EXPECT_EQ(response.result_int(), 429u);
  EXPECT_EQ(response[beast::http::field::content_type], "application/json");
  EXPECT_NE(response.body().find("\"rate_limit_exceeded\""), std::string::npos);
  EXPECT_NE(response.body().find("slow down"), std::string::npos);
  EXPECT_EQ(response[beast::http::field::content_length], std::to_string(response.body().size()));
}

TEST(Types, TargetPathAndQuery) {
  Request request{Verb::get, "/v1/models?limit=2", kHttp11};
  EXPECT_EQ(target_path(request), "/v1/models");
  EXPECT_EQ(target_query(request), "limit=2");
  Request plain{Verb::get, "/x", kHttp11};
  EXPECT_EQ(target_query(plain), "");
}

}  // namespace
}  // namespace rvenc::http
