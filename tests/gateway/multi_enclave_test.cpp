// Several real enclaves behind one real gateway (the rvenc binary; PROTOCOL.md section 7): the
// models' union, attestation per model and all=1, chat to each model, --max-streams answered with
// 503 enclave_busy and Retry-After, and a killed enclave's keyId answered with 503
// enclave_unavailable while its replica serves the re-attested request.
#include <gtest/gtest.h>

#include <csignal>
#include <set>
#include <thread>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "gateway_test_support.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/gateway/key_store.hpp"

namespace rvenc::gateway::test_support {
namespace {

namespace json = boost::json;

struct Enclave {
  std::unique_ptr<test::TempDir> dir = std::make_unique<test::TempDir>();
  std::unique_ptr<test::ChildProcess> process;
  std::string url;
  std::string key_id;  // from its /healthz
};

std::string key_id_of(const std::string& enclave_url) {
  auto health = http::fetch("GET", enclave_url + "/healthz");
  if (!health || health->result_int() != 200) return {};
  return std::string(json::parse(health->body()).at("keyId").as_string());
}

// The documents GET /rvenc/attestation?...&all=1 answers, each checked to bind `challenge`.
std::vector<protocol::AttestationDocument> attest_all(const std::string& gateway_url, const std::string& model) {
  const auto challenge = crypto::random_array<protocol::kChallengeBytes>();
  auto response = http::fetch("GET", gateway_url + "/rvenc/attestation?challenge=" + to_hex(challenge) +
                                         "&model=" + model + "&all=1");
  if (!response || response->result_int() != 200) return {};
  std::vector<protocol::AttestationDocument> docs;
  const auto all_answer = json::parse(response->body());  // outlives the loop
  for (const auto& value : all_answer.at("enclaves").as_array()) {
    auto doc = protocol::parse_attestation(json::serialize(value));
    if (doc && doc->report_data == protocol::expected_report_data(*doc, challenge)) docs.push_back(*doc);
  }
  return docs;
}

Sealed seal_for(const protocol::AttestationDocument& doc, const std::string& model) {
  const std::string plaintext =
      R"({"model":")" + model + R"(","stream":true,"messages":[{"role":"user","content":"Hello"}]})";
  return test::seal(doc.public_key, plaintext, protocol::Version::v3, std::nullopt, doc.key_id);
}

class MultiEnclave : public ::testing::Test {
 protected:
  void add_enclave(const std::string& model, long long delay_ms = 0, std::vector<std::string> extra = {}) {
    Enclave e;
    extra.insert(extra.end(), {"--demo-model", model});
    e.process = start_enclave(*e.dir, delay_ms, extra);
    auto url = e.process->wait_for_url();
    ASSERT_TRUE(url) << e.process->output();
    e.url = *url;
    e.key_id = key_id_of(e.url);
    ASSERT_FALSE(e.key_id.empty());
    enclaves.push_back(std::move(e));
  }
  void start_gateway_process() {
    std::vector<std::string> urls;
    for (const auto& e : enclaves) urls.push_back(e.url);
    gateway = start_gateway(urls, db, enclaves.front().dir->file("gateway.token"));
    auto url = gateway->wait_for_url();
    ASSERT_TRUE(url) << gateway->output();
    gateway_url = *url;
    api_key = KeyStore::open(db).value().create_key("multi", KeyEnv::live, {}).value().key;
  }

  test::TempDir dir;
  std::string db = dir.file("gw.db");
  std::vector<Enclave> enclaves;
  std::unique_ptr<test::ChildProcess> gateway;
  std::string gateway_url;
  std::string api_key;
};

TEST_F(MultiEnclave, ModelsAttestationAndChatPerModel) {
  ASSERT_NO_FATAL_FAILURE(add_enclave("model-a"));
  ASSERT_NO_FATAL_FAILURE(add_enclave("model-a"));
  ASSERT_NO_FATAL_FAILURE(add_enclave("model-b"));
  ASSERT_NO_FATAL_FAILURE(start_gateway_process());

  auto models = http::fetch("GET", gateway_url + "/rvenc/models");
  ASSERT_TRUE(models && models->result_int() == 200);
  std::vector<std::string> ids;
  const auto model_list = json::parse(models->body());  // outlives the loop
  for (const auto& m : model_list.at("data").as_array()) ids.emplace_back(m.at("id").as_string());
  EXPECT_EQ(ids, (std::vector<std::string>{"model-a", "model-b"}));

  // model-b: only the third enclave.
  auto b_docs = attest_all(gateway_url, "model-b");
  ASSERT_EQ(b_docs.size(), 1u);
  EXPECT_EQ(to_hex(b_docs[0].key_id), enclaves[2].key_id);
  EXPECT_EQ(b_docs[0].models, std::vector<std::string>{"model-b"});
  EXPECT_FALSE(b_docs[0].capacity);
  const auto challenge = crypto::random_array<protocol::kChallengeBytes>();
  auto one = http::fetch("GET", gateway_url + "/rvenc/attestation?challenge=" + to_hex(challenge) + "&model=model-b");
  ASSERT_TRUE(one && one->result_int() == 200);
  EXPECT_EQ(to_hex(protocol::parse_attestation(one->body()).value().key_id), enclaves[2].key_id);

  // model-a: both replicas, each answering a request sealed to it.
  auto a_docs = attest_all(gateway_url, "model-a");
  ASSERT_EQ(a_docs.size(), 2u);
  std::set<std::string> a_keys;
  for (const auto& doc : a_docs) a_keys.insert(to_hex(doc.key_id));
  EXPECT_EQ(a_keys, (std::set<std::string>{enclaves[0].key_id, enclaves[1].key_id}));
  for (const auto& [doc, model] : {std::pair{a_docs[0], "model-a"}, std::pair{a_docs[1], "model-a"},
                                   std::pair{b_docs[0], "model-b"}}) {
    const auto sealed = seal_for(doc, model);
    auto response = post_chat(gateway_url, sealed.body, api_key);
    ASSERT_TRUE(response);
    ASSERT_EQ(response->result_int(), 200u) << response->body();
    EXPECT_TRUE(open_stream(sealed, test::sse_events(response->body())));
  }

  auto unknown = http::fetch("GET", gateway_url + "/rvenc/attestation?challenge=" + to_hex(challenge) + "&model=model-z");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->result_int(), 404u);
  EXPECT_EQ(error_code(unknown->body()), "model_not_found");
}

TEST_F(MultiEnclave, MaxStreamsIsEnforcedByTheEnclaveWithRetryAfter) {
  ASSERT_NO_FATAL_FAILURE(add_enclave("model-a", 40, {"--max-streams", "1"}));
  ASSERT_NO_FATAL_FAILURE(start_gateway_process());
  auto docs = attest_all(gateway_url, "model-a");
  ASSERT_EQ(docs.size(), 1u);
  ASSERT_EQ(docs[0].capacity, 1);

  const auto first = seal_for(docs[0], "model-a");
  Result<http::Response> first_answer = fail(Errc::internal_error, "not run");
  std::thread running([&] { first_answer = post_chat(gateway_url, first.body, api_key); });
  const auto in_flight = [&] {
    auto health = http::fetch("GET", enclaves[0].url + "/healthz");
    return health && json::parse(health->body()).at("inFlight").as_int64() == 1;
  };
  const bool started = wait_until(in_flight);
  const auto second = seal_for(docs[0], "model-a");
  auto busy = post_chat(gateway_url, second.body, api_key);
  running.join();
  ASSERT_TRUE(started) << "the first stream never ran";
  ASSERT_TRUE(busy);
  EXPECT_EQ(busy->result_int(), 503u) << busy->body();
  EXPECT_EQ(error_code(busy->body()), "enclave_busy");
  EXPECT_EQ((*busy)[boost::beast::http::field::retry_after], "1");
  ASSERT_TRUE(first_answer);
  EXPECT_EQ(first_answer->result_int(), 200u);
  EXPECT_TRUE(open_stream(first, test::sse_events(first_answer->body())));
  // With the slot back, the refused request (sealed anew) is served.
  const auto again = seal_for(docs[0], "model-a");
  auto served = post_chat(gateway_url, again.body, api_key);
  ASSERT_TRUE(served);
  EXPECT_EQ(served->result_int(), 200u) << served->body();
}

TEST_F(MultiEnclave, KilledEnclaveIs503EnclaveUnavailableAndItsReplicaServes) {
  ASSERT_NO_FATAL_FAILURE(add_enclave("model-a"));
  ASSERT_NO_FATAL_FAILURE(add_enclave("model-a"));
  ASSERT_NO_FATAL_FAILURE(start_gateway_process());
  auto docs = attest_all(gateway_url, "model-a");
  ASSERT_EQ(docs.size(), 2u);
  const auto& doc_of_first = to_hex(docs[0].key_id) == enclaves[0].key_id ? docs[0] : docs[1];
  const auto to_killed = seal_for(doc_of_first, "model-a");
  EXPECT_EQ(enclaves[0].process->stop(SIGKILL), 128 + SIGKILL);

  auto refused = post_chat(gateway_url, to_killed.body, api_key);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->result_int(), 503u) << refused->body();
  EXPECT_EQ(error_code(refused->body()), "enclave_unavailable");
  // Re-attested for the model: the replica that is up, which serves the request sealed anew.
  ASSERT_TRUE(wait_until([&] { return attest_all(gateway_url, "model-a").size() == 1; }));
  auto now = attest_all(gateway_url, "model-a");
  ASSERT_EQ(now.size(), 1u);
  EXPECT_EQ(to_hex(now[0].key_id), enclaves[1].key_id);
  const auto resent = seal_for(now[0], "model-a");
  auto served = post_chat(gateway_url, resent.body, api_key);
  ASSERT_TRUE(served);
  EXPECT_EQ(served->result_int(), 200u) << served->body();
  EXPECT_TRUE(open_stream(resent, test::sse_events(served->body())));
}

}  // namespace
}  // namespace rvenc::gateway::test_support
