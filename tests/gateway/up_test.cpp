// `rvenc up` as a user runs it: state in a fresh directory, free ports, one request through the
// gateway with the key it wrote to stack.json, then Ctrl-C.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <boost/json/parse.hpp>

#include "gateway_test_support.hpp"
#include "rvenc/gateway/api_key.hpp"
#include "rvenc/http/client.hpp"

namespace rvenc::gateway {
namespace {

using namespace test_support;
using namespace std::chrono_literals;

std::optional<boost::json::object> wait_for_stack(const std::string& path, test::ChildProcess& up) {
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline && up.running()) {
    std::ifstream in(path);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    boost::system::error_code ec;
    auto value = boost::json::parse(text, ec);
    if (!ec && value.is_object()) return value.as_object();
    std::this_thread::sleep_for(100ms);
  }
  return std::nullopt;
}

std::string string_at(const boost::json::object& o, const char* key) { return std::string(o.at(key).as_string()); }

TEST(Up, RunsTheStackWritesStateAndStopsOnSigint) {
  test::TempDir dir;
  const std::string data = dir.file("state");
  const std::vector<std::string> argv{test::rvenc_binary(), "up", "--data", data, "--gateway-port", "0",
                                      "--enclave-port", "0", "--proxy-port", "0"};
  std::string api_key;
  {
    test::ChildProcess up(argv);
    auto stack = wait_for_stack(data + "/stack.json", up);
    ASSERT_TRUE(stack) << up.output();
    for (const char* key : {"gatewayUrl", "enclaveUrl", "proxyUrl", "apiKey", "platformPublicKey", "db", "adminToken"})
      EXPECT_TRUE(stack->contains(key)) << key;
    EXPECT_EQ(stack->size(), 7u);
    struct stat st{};
    ASSERT_EQ(stat((data + "/stack.json").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    for (const char* file : {"/gateway.token", "/admin.token", "/rvenc.db", "/platform.key", "/enclave.key"}) {
      ASSERT_EQ(stat((data + file).c_str(), &st), 0) << file;
      EXPECT_EQ(st.st_mode & 0077, 0u) << file;
    }
    EXPECT_EQ(string_at(*stack, "db"), std::filesystem::absolute(data + "/rvenc.db").string());
    api_key = string_at(*stack, "apiKey");
    EXPECT_TRUE(api_key.starts_with("sk_test_"));
    EXPECT_TRUE(is_well_formed_api_key(api_key));
    EXPECT_EQ(string_at(*stack, "platformPublicKey").size(), 64u);

    const std::string gateway_url = string_at(*stack, "gatewayUrl");
    // The gateway's details are for whoever holds stack.json's adminToken.
    auto public_health = http::fetch("GET", gateway_url + "/healthz");
    ASSERT_TRUE(public_health);
    EXPECT_EQ(public_health->body(), R"({"status":"ok"})");
    http::Fields admin;
    admin.set(boost::beast::http::field::authorization, "Bearer " + string_at(*stack, "adminToken"));
    auto details = http::fetch("GET", gateway_url + "/healthz", {}, admin);
    ASSERT_TRUE(details);
    EXPECT_EQ(boost::json::parse(details->body()).at("enclavesUp").as_int64(), 1);
    auto metrics = http::fetch("GET", gateway_url + "/metrics");
    ASSERT_TRUE(metrics);
    EXPECT_EQ(metrics->result_int(), 401u);
    const auto sealed = seal_chat(gateway_url, data + "/platform.key");
    auto response = post_chat(gateway_url, sealed.body, api_key);
    ASSERT_TRUE(response);
    ASSERT_EQ(response->result_int(), 200u) << response->body();
    EXPECT_TRUE(open_stream(sealed, rvenc::test::sse_events(response->body())));
    // The ready curl line goes through the proxy with the stack's key.
    const std::string proxy_url = string_at(*stack, "proxyUrl");
    EXPECT_NE(up.output().find("curl -s " + proxy_url + "/v1/chat/completions -H \"Authorization: Bearer " + api_key),
              std::string::npos)
        << up.output();
    auto proxy_health = http::fetch("GET", proxy_url + "/healthz");
    ASSERT_TRUE(proxy_health);
    EXPECT_EQ(proxy_health->result_int(), 200u);

    EXPECT_EQ(up.stop(SIGINT, 30s), 0) << up.output();
  }
  // A second start reuses the key it created the first time.
  std::filesystem::rename(data + "/stack.json", data + "/stack.json.old");
  std::filesystem::copy_file(data + "/stack.json.old", data + "/stack.json");
  const auto first_write = std::filesystem::last_write_time(data + "/stack.json");
  test::ChildProcess again(argv);
  std::optional<boost::json::object> stack;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline && again.running() &&
         std::filesystem::last_write_time(data + "/stack.json") == first_write)
    std::this_thread::sleep_for(100ms);
  stack = wait_for_stack(data + "/stack.json", again);
  ASSERT_TRUE(stack) << again.output();
  EXPECT_EQ(string_at(*stack, "apiKey"), api_key);
  EXPECT_EQ(again.stop(SIGTERM, 30s), 0);
}

}  // namespace
}  // namespace rvenc::gateway
