// `rvenc up` as a user runs it: state in a fresh directory, free ports, one request through the
// gateway with the key it wrote to stack.json, then Ctrl-C; one `up` per directory (up.lock), what
// clients and `rvenc keys` do next to a running or stopped stack.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <set>
#include <fstream>
#include <thread>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

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

constexpr auto kExitWait = 60s;

std::vector<std::string> up_argv(const std::string& data) {
  return {test::rvenc_binary(), "up",  "--data", data, "--gateway-port", "0", "--enclave-port", "0",
          "--proxy-port",        "0"};
}

boost::json::object read_stack(const std::string& data) {
  std::ifstream in(data + "/stack.json");
  return boost::json::parse(std::string((std::istreambuf_iterator<char>(in)), {})).as_object();
}

// stack.json's "running", or nullopt when it is missing or not a boolean.
std::optional<bool> running_of(const boost::json::object& stack) {
  const auto* running = stack.if_contains("running");
  if (running == nullptr || !running->is_bool()) return std::nullopt;
  return running->as_bool();
}

void write_stack(const std::string& data, const boost::json::object& stack) {
  std::ofstream(data + "/stack.json", std::ios::trunc) << boost::json::serialize(stack);
}

// Runs `rvenc ARGS...` to its end (bounded); its exit status and output.
std::pair<int, std::string> run_rvenc(std::vector<std::string> args) {
  args.insert(args.begin(), test::rvenc_binary());
  test::ChildProcess child(args);
  const int status = child.wait_exit(kExitWait);
  return {status, child.output()};
}

// Issue 28 item 5: `rvenc up --enclaves N` runs N demo enclaves behind the gateway, each with its
// own key, models per enclave from --demo-model.
TEST(Up, SeveralEnclavesWithTheirOwnKeysAndModels) {
  test::TempDir dir;
  const std::string data = dir.file("state");
  auto argv = up_argv(data);
  argv.insert(argv.end(), {"--enclaves", "3", "--demo-model", "model-a", "--demo-model", "model-a", "--demo-model",
                           "model-b"});
  test::ChildProcess up(argv);
  auto stack = wait_for_stack(data + "/stack.json", up);
  ASSERT_TRUE(stack) << up.output();
  const auto& urls = stack->at("enclaveUrls").as_array();
  ASSERT_EQ(urls.size(), 3u);
  EXPECT_EQ(urls.at(0), stack->at("enclaveUrl"));
  std::set<std::string> key_ids;
  for (const auto& url : urls) {
    auto health = http::fetch("GET", std::string(url.as_string()) + "/healthz");
    ASSERT_TRUE(health && health->result_int() == 200);
    key_ids.insert(std::string(boost::json::parse(health->body()).at("keyId").as_string()));
  }
  EXPECT_EQ(key_ids.size(), 3u) << "every enclave has its own key";
  struct stat st{};
  for (const char* file : {"/enclave.key", "/enclave-2.key", "/enclave-3.key"})
    EXPECT_EQ(stat((data + file).c_str(), &st), 0) << file;
  auto models = http::fetch("GET", string_at(*stack, "gatewayUrl") + "/rvenc/models");
  ASSERT_TRUE(models && models->result_int() == 200);
  std::vector<std::string> ids;
  for (const auto& m : boost::json::parse(models->body()).at("data").as_array()) ids.emplace_back(m.at("id").as_string());
  EXPECT_EQ(ids, (std::vector<std::string>{"model-a", "model-b"}));
  EXPECT_EQ(up.stop(SIGINT, 30s), 0) << up.output();

  auto wrong = up_argv(dir.file("other"));
  wrong.erase(wrong.begin());
  wrong.insert(wrong.end(), {"--enclaves", "3", "--demo-model", "a", "--demo-model", "b"});
  const auto [status, output] = run_rvenc(wrong);
  EXPECT_EQ(status, 2) << output;  // usage
  EXPECT_NE(output.find("once per enclave"), std::string::npos) << output;
}

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
    for (const char* key :
         {"gatewayUrl", "enclaveUrl", "enclaveUrls", "proxyUrl", "apiKey", "platformPublicKey", "db", "adminToken",
          "running"})
      EXPECT_TRUE(stack->contains(key)) << key;
    EXPECT_EQ(stack->size(), 9u);
    ASSERT_EQ(stack->at("enclaveUrls").as_array().size(), 1u);
    EXPECT_EQ(stack->at("enclaveUrls").as_array().at(0), stack->at("enclaveUrl"));
    EXPECT_EQ(running_of(*stack), true);
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

TEST(Up, OneStackPerDirectoryAndClientsSayWhenItStopped) {
  test::TempDir dir;
  const std::string data = dir.file("state");
  test::ChildProcess first(up_argv(data));
  auto stack = wait_for_stack(data + "/stack.json", first);
  ASSERT_TRUE(stack) << first.output();
  EXPECT_EQ(running_of(*stack), true);
  const std::string gateway_url = string_at(*stack, "gatewayUrl");

  // A second `up` on the same directory is refused, naming the running one; the first keeps serving.
  {
    test::ChildProcess second(up_argv(data));
    EXPECT_EQ(second.wait_exit(kExitWait), 3) << second.output();
    EXPECT_NE(second.output().find("(pid " + std::to_string(first.pid()) + ")"), std::string::npos) << second.output();
    EXPECT_NE(second.output().find(gateway_url), std::string::npos) << second.output();
  }
  EXPECT_TRUE(first.running());
  auto health = http::fetch("GET", gateway_url + "/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->result_int(), 200u);
  EXPECT_EQ(read_stack(data).at("apiKey"), stack->at("apiKey"));

  // `rvenc keys --data` next to the running stack uses its database.
  const auto [listed, list_output] = run_rvenc({"keys", "list", "--data", data});
  EXPECT_EQ(listed, 0) << list_output;
  EXPECT_NE(list_output.find("rvenc-up"), std::string::npos) << list_output;

  ASSERT_EQ(first.stop(SIGTERM, 30s), 0) << first.output();
  const auto stopped = read_stack(data);
  EXPECT_EQ(running_of(stopped), false);
  EXPECT_EQ(stopped.at("apiKey"), stack->at("apiKey"));  // kept for the next `up`

  const std::string not_running =
      "the stack in " + data + " is not running (start it with rvenc up --data " + data + ")";
  const auto [chat_status, chat_output] = run_rvenc({"chat", "--data", data, "hi"});
  EXPECT_EQ(chat_status, 3) << chat_output;
  EXPECT_NE(chat_output.find(not_running), std::string::npos) << chat_output;
  EXPECT_EQ(chat_output.find("refused"), std::string::npos) << chat_output;

  // An `up` killed before it could say so leaves "running": true; nobody holds up.lock, so still not running.
  auto killed = stopped;
  killed["running"] = true;
  write_stack(data, killed);
  const auto [attest_status, attest_output] = run_rvenc({"attest", "--data", data});
  EXPECT_EQ(attest_status, 3) << attest_output;
  EXPECT_NE(attest_output.find(not_running), std::string::npos) << attest_output;
}

TEST(Keys, OnlyCreateMakesANewDatabaseAndSaysSo) {
  test::TempDir dir;
  const std::string missing = dir.file("missing.db");
  for (std::vector<std::string> args : {std::vector<std::string>{"keys", "list", "--db", missing},
                                        {"keys", "usage", "--db", missing},
                                        {"keys", "revoke", "--db", missing, "key_x"}}) {
    const auto [status, output] = run_rvenc(args);
    EXPECT_EQ(status, 1) << args[1] << ": " << output;
    EXPECT_NE(output.find("database " + missing + " does not exist"), std::string::npos) << output;
    EXPECT_FALSE(std::filesystem::exists(missing)) << args[1];
  }
  const auto [no_db, no_db_output] = run_rvenc({"keys", "list", "--data", dir.file("nowhere")});
  EXPECT_EQ(no_db, 1) << no_db_output;
  EXPECT_FALSE(std::filesystem::exists(dir.file("nowhere")));

  const std::string fresh = dir.file("fresh.db");
  const auto [created, created_output] = run_rvenc({"keys", "create", "--db", fresh, "--name", "a"});
  EXPECT_EQ(created, 0) << created_output;
  EXPECT_NE(created_output.find("created a new key database at " + fresh), std::string::npos) << created_output;
  const auto [again, again_output] = run_rvenc({"keys", "create", "--db", fresh, "--name", "b"});
  EXPECT_EQ(again, 0) << again_output;
  EXPECT_EQ(again_output.find("created a new key database"), std::string::npos) << again_output;
  const auto [listed, list_output] = run_rvenc({"keys", "list", "--db", fresh});
  EXPECT_EQ(listed, 0) << list_output;
  EXPECT_NE(list_output.find(" b "), std::string::npos) << list_output;
}

}  // namespace
}  // namespace rvenc::gateway
