// Key rotation end to end (issue 21 item 5): real `rvenc enclave --key-rotation-hours` (a new key
// about every 2 s), `rvenc gateway`, and the SDK streaming across several rotations.
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>

#include "rvenc/client/client.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/http/client.hpp"
#include "support/test_support.hpp"

namespace rvenc::client {
namespace {

namespace json = boost::json;
using test::ChildProcess;

// 0.0005 h = 1.8 s, rounded to 2 s; keys then live 2 s + a 2 s grace.
constexpr std::string_view kRotationHours = "0.0005";
// About 85 tokens of the demo answer at 30 ms each: every stream outlives a rotation period.
constexpr std::string_view kDemoDelayMs = "30";
constexpr std::int64_t kRotationsToSee = 4;

void write_secret_file(const std::string& path, std::string_view bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
  ::chmod(path.c_str(), 0600);
}

std::string run_to_end(std::vector<std::string> args) {
  args.insert(args.begin(), test::rvenc_binary());
  ChildProcess process(args, {{"RVENC_API_KEY", ""}});
  (void)process.wait_exit(std::chrono::seconds(60));
  return process.output();
}

std::int64_t rotations_of(const std::string& enclave_url) {
  auto health = http::fetch("GET", enclave_url + "/healthz");
  if (!health || health->result_int() != 200) return -1;
  return json::parse(health->body()).at("keyRotations").as_int64();
}

TEST(KeyRotationEndToEnd, SdkStreamsAcrossSeveralRotationsWithoutAnError) {
  test::TempDir dir;
  crypto::Ed25519Seed seed;
  crypto::random_bytes(seed.span());
  write_secret_file(dir.file("platform.key"), crypto::as_chars(seed.span()));
  write_secret_file(dir.file("token"), to_hex(crypto::random_array<32>()));
  ChildProcess enclave({test::rvenc_binary(), "enclave", "--listen", "127.0.0.1:0", "--attestation", "simulated",
                        "--key-file", dir.file("enclave.key"), "--platform-key", dir.file("platform.key"),
                        "--gateway-token-file", dir.file("token"), "--demo-delay-ms", std::string(kDemoDelayMs),
                        "--key-rotation-hours", std::string(kRotationHours)});
  const auto enclave_url = enclave.wait_for_url();
  ASSERT_TRUE(enclave_url) << enclave.output();
  EXPECT_NE(enclave.output().find("a new key every 2 s"), std::string::npos) << enclave.output();

  std::string api_key;
  std::istringstream created(run_to_end({"keys", "create", "--db", dir.file("rvenc.db"), "--name", "rot", "--test"}));
  for (std::string line; std::getline(created, line);)
    if (line.starts_with("sk_test_")) api_key = line;
  ASSERT_FALSE(api_key.empty());
  ChildProcess gateway({test::rvenc_binary(), "gateway", "--listen", "127.0.0.1:0", "--enclave", *enclave_url, "--db",
                        dir.file("rvenc.db"), "--enclave-token-file", dir.file("token")});
  const auto gateway_url = gateway.wait_for_url();
  ASSERT_TRUE(gateway_url) << gateway.output();

  ClientOptions options;
  options.api_key = api_key;
  options.base_url = *gateway_url;
  options.attestation.simulated_platform_key = crypto::ed25519_keypair_from_seed(seed).public_key;
  auto client = create_client(options);
  ASSERT_TRUE(client) << client.error().to_string();

  const json::object request{{"model", "rvenc-demo"},
                             {"messages", json::array{json::object{{"role", "user"}, {"content", "rotate"}}}},
                             {"stream", true}};
  std::set<std::string> key_ids;
  int streams = 0;
  // Bounded generously for a loaded machine; the assertions are on outcomes, not on timing.
  const auto guard = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (rotations_of(*enclave_url) < kRotationsToSee && std::chrono::steady_clock::now() < guard) {
    std::size_t chunks = 0;
    auto done = client->chat.completions.create(request, [&](const Chunk&) -> Status {
      ++chunks;
      return {};
    });
    ASSERT_TRUE(done) << "stream " << streams << ": " << done.error().to_string() << "\nenclave:\n"
                      << enclave.output() << "\ngateway:\n" << gateway.output();
    EXPECT_GT(chunks, 10u);
    ++streams;
    for (const auto& keys : client->encryption_keys_for("rvenc-demo")) key_ids.insert(to_hex(keys.key_id));
  }
  ASSERT_GE(rotations_of(*enclave_url), kRotationsToSee) << "the enclave did not rotate in time";
  // The client followed the rotations: it used several keys, each a key the enclave made.
  EXPECT_GE(key_ids.size(), 2u) << streams << " streams";
  EXPECT_NE(enclave.output().find("enclave key rotated"), std::string::npos);
  EXPECT_NE(enclave.output().find("retired"), std::string::npos) << "expired previous keys are dropped";
}

}  // namespace
}  // namespace rvenc::client
