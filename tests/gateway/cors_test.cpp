// The gateway's CORS for browser pages (--cors-origin, issue 22): the origin list parsed strictly,
// preflights answered for the browser routes only, and every answer to an allowed origin labelled
// (errors included), through the real handler and http::RecordingWriter.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "rvenc/gateway/cors.hpp"
#include "rvenc/gateway/gateway.hpp"
#include "support/test_support.hpp"

namespace rvenc::gateway {
namespace {

namespace beast_http = boost::beast::http;
constexpr std::string_view kPage = "http://127.0.0.1:3000";

TEST(CorsOrigins, ParsesRepeatedAndCommaListsAndRefusesWhatIsNotAnOrigin) {
  auto policy = parse_cors_origins({"http://127.0.0.1:3000, HTTP://LocalHost:3000", "https://chat.example"});
  ASSERT_TRUE(policy);
  EXPECT_EQ(policy->origins, (std::vector<std::string>{"http://127.0.0.1:3000", "http://localhost:3000",
                                                       "https://chat.example"}));
  EXPECT_TRUE(policy->allows("http://localhost:3000"));
  EXPECT_FALSE(policy->allows("http://127.0.0.1:3001"));
  EXPECT_FALSE(policy->allows("null"));
  for (const char* bad : {"*", "http://127.0.0.1:3000/chat", "127.0.0.1:3000", "ftp://x", "http://", "http://a b"}) {
    auto refused = parse_cors_origins({bad});
    ASSERT_FALSE(refused) << bad;
    EXPECT_NE(refused.error().message.find("is not an origin"), std::string::npos);
  }
  auto none = parse_cors_origins({});
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->enabled());
}

class CorsHandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GatewayOptions options;
    options.enclaves.push_back(http::parse_url("http://127.0.0.1:" + std::to_string(test::free_port())).value());
    options.db_path = dir.file("gw.db");
    options.cors = parse_cors_origins({std::string(kPage)}).value();
    handler = GatewayHandler::create(options).value();
  }

  http::RecordingWriter call(http::Verb method, std::string target, std::string_view origin) {
    http::Request request{method, target, 11};
    request.set(beast_http::field::origin, origin);
    if (method == http::Verb::options) request.set(beast_http::field::access_control_request_method, "POST");
    request.prepare_payload();
    http::RecordingWriter writer;
    boost::asio::io_context ioc;
    auto done = boost::asio::co_spawn(ioc, handler->handle(request, writer), boost::asio::use_future);
    ioc.run();
    done.get();
    return writer;
  }

  static std::string header(const http::RecordingWriter& w, beast_http::field field) {
    return std::string(w.response ? (*w.response)[field] : (*w.stream_header)[field]);
  }

  test::TempDir dir;
  std::unique_ptr<GatewayHandler> handler;
};

TEST_F(CorsHandlerTest, PreflightFromTheAllowedOriginIs204ForTheBrowserRoutes) {
  for (const char* path : {"/rvenc/chat/completions", "/rvenc/models", "/rvenc/attestation"}) {
    const auto w = call(http::Verb::options, path, kPage);
    EXPECT_EQ(w.status(), 204u) << path;
    EXPECT_EQ(header(w, beast_http::field::access_control_allow_origin), kPage);
    EXPECT_NE(header(w, beast_http::field::access_control_allow_headers).find("authorization"), std::string::npos);
    EXPECT_EQ(header(w, beast_http::field::access_control_allow_credentials), "");
  }
}

TEST_F(CorsHandlerTest, PreflightFromAnotherOriginIs403WithoutAllowHeaders) {
  const auto w = call(http::Verb::options, "/rvenc/chat/completions", "http://evil.example");
  EXPECT_EQ(w.status(), 403u);
  EXPECT_EQ(header(w, beast_http::field::access_control_allow_origin), "");
  EXPECT_NE(w.body().find("origin is not allowed"), std::string::npos);
}

TEST_F(CorsHandlerTest, ErrorsToTheAllowedOriginAreLabelledOtherRoutesAndOriginsAreNot) {
  const auto refused = call(http::Verb::get, "/rvenc/models", kPage);  // no enclave listens: 503
  EXPECT_EQ(refused.status(), 503u);
  EXPECT_EQ(header(refused, beast_http::field::access_control_allow_origin), kPage);
  const auto other = call(http::Verb::get, "/rvenc/models", "http://evil.example");
  EXPECT_EQ(header(other, beast_http::field::access_control_allow_origin), "");
  const auto health = call(http::Verb::get, "/healthz", kPage);
  EXPECT_EQ(header(health, beast_http::field::access_control_allow_origin), "");
}

}  // namespace
}  // namespace rvenc::gateway
