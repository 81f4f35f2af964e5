// EnclaveServer in-process, the way `rvenc up` runs it.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include "enclave_test_support.hpp"
#include "rvenc/enclave/server.hpp"
#include "rvenc/http/client.hpp"
#include "support/test_support.hpp"

namespace rvenc::enclave {
namespace {

EnclaveOptions simulated_options(const rvenc::test::TempDir& dir) {
  EnclaveOptions options;
  options.key_file = dir.file("enclave.key");
  options.attestation.mode = "simulated";
  options.attestation.platform_key_file = dir.file("platform.key");
  return options;
}

TEST(EnclaveServer, StartsServesAndStopsInProcess) {
  rvenc::test::TempDir dir;
  auto options = simulated_options(dir);
  options.demo_model = "house-demo";
  options.threads = 2;
  auto server = EnclaveServer::create(options);
  ASSERT_TRUE(server) << server.error().to_string();
  EXPECT_NE((*server)->port(), 0);
  const auto lines = (*server)->describe();
  const auto has = [&](std::string_view text) {
    return std::any_of(lines.begin(), lines.end(), [&](const std::string& l) { return l.find(text) != std::string::npos; });
  };
  EXPECT_TRUE(has("platform public key"));
  EXPECT_TRUE(has("model house-demo: built-in demo engine"));
  EXPECT_TRUE(has("local use only"));

  (*server)->start();
  const auto sealed = test::seal((*server)->service().current_key()->public_key(), test::chat_json("house-demo", "hi there"));
  auto response = http::fetch("POST", (*server)->url() + "/rvenc/chat/completions", sealed.body);
  ASSERT_TRUE(response) << response.error().to_string();
  ASSERT_EQ(response->result_int(), 200u) << response->body();
  EXPECT_TRUE(test::open_stream(sealed, response->body()).done);
  (*server)->stop();
  (*server)->wait();
  EXPECT_FALSE(http::fetch("GET", (*server)->url() + "/healthz", {}, {}, std::chrono::seconds(5)));
}

TEST(EnclaveServer, CreateAndDestroyWithoutServing) {
  rvenc::test::TempDir dir;
  auto server = EnclaveServer::create(simulated_options(dir));
  ASSERT_TRUE(server) << server.error().to_string();
}

TEST(EnclaveServer, RefusesBadOptionsWithTheRightCodes) {
  rvenc::test::TempDir dir;
  auto options = simulated_options(dir);
  options.upstreams = {"no-equals-sign"};
  auto bad_upstream = EnclaveServer::create(options);
  ASSERT_FALSE(bad_upstream);
  EXPECT_EQ(bad_upstream.error().code, Errc::invalid_request);

  options = simulated_options(dir);
  options.upstreams = {"rvenc-demo=http://127.0.0.1:1/v1"};
  options.demo_model = "rvenc-demo";
  EXPECT_FALSE(EnclaveServer::create(options));

  options = simulated_options(dir);
  options.gateway_token_file = dir.file("missing.token");
  auto no_token = EnclaveServer::create(options);
  ASSERT_FALSE(no_token);
  EXPECT_EQ(no_token.error().code, Errc::invalid_request);

  // The port is taken by a running enclave.
  auto first = EnclaveServer::create(simulated_options(dir));
  ASSERT_TRUE(first);
  options = simulated_options(dir);
  options.port = (*first)->port();
  auto taken = EnclaveServer::create(options);
  ASSERT_FALSE(taken);
  EXPECT_EQ(taken.error().code, Errc::transport_error);
}

}  // namespace
}  // namespace rvenc::enclave
