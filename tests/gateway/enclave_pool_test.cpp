// Several enclaves behind one gateway (PROTOCOL.md section 7), against in-process fake enclaves
// (http::Server answering /healthz and /rvenc/attestation with real X-Wing keys and documents
// that bind the challenge): discovery per model, choice by load, all=1, model_not_found,
// duplicate keyIds, previous keys, version 1, unhealthy within 2 s, /healthz and /metrics.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "rvenc/common/hex.hpp"
#include "rvenc/gateway/gateway.hpp"
#include "gateway_test_support.hpp"
#include "support/test_support.hpp"

namespace rvenc::gateway {
namespace {

namespace json = boost::json;
namespace asio = boost::asio;

// An enclave as far as a gateway's discovery can see: its key, models, capacity, previous keys,
// versions. hang: /healthz never answers (an enclave that stopped answering without closing).
class FakeEnclave {
 public:
  struct Config {
    std::vector<std::string> models;
    std::optional<std::int64_t> capacity;
    std::vector<crypto::KeyId> previous;
    bool allow_v1 = false;
    std::optional<crypto::XWingPublicKey> public_key;  // unset: a fresh one
    // Set: the enclave rotated between the gateway's /healthz and its attestation: the document is
    // of this newer key, listing the key /healthz shows as a previous one.
    std::optional<crypto::XWingPublicKey> rotated_to;
  };

  explicit FakeEnclave(Config config) : config_(std::move(config)) {
    if (!config_.public_key) config_.public_key = crypto::xwing_generate_keypair().public_key;
    http::Router router;
    router.get("/healthz", [this](http::Request& r, http::ResponseWriter& w) { return healthz(r, w); });
    router.get("/rvenc/attestation", [this](http::Request& r, http::ResponseWriter& w) { return attestation(r, w); });
    server_ = http::Server::create(http::ServerOptions{}, router).value();
    server_->start();
    url_ = server_->url();
  }
  ~FakeEnclave() { stop(); }

  [[nodiscard]] const std::string& url() const { return url_; }
  [[nodiscard]] crypto::KeyId key_id() const { return crypto::key_id(*config_.public_key); }
  void stop() {
    if (!server_) return;
    server_->stop(std::chrono::milliseconds(0));
    server_->wait();
    server_.reset();
  }
  std::atomic<bool> hang{false};
  std::atomic<int> attestations{0};

 private:
  http::awaitable<void> healthz(http::Request& request, http::ResponseWriter& writer) {
    if (hang) {
      asio::steady_timer forever(co_await asio::this_coro::executor, std::chrono::hours(1));
      boost::system::error_code ec;
      co_await forever.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      co_return;
    }
    json::array versions;
    if (config_.allow_v1) versions.push_back(1);
    versions.push_back(3);
    // Built before the co_await (GCC 12 miscompiles array temporaries inside one).
    const std::string key = to_hex(key_id());
    const std::string body =
        json::serialize(json::object{{"status", "ok"}, {"keyId", key}, {"versions", std::move(versions)}});
    co_await writer.send(http::json_response(200, body));
    (void)request;
  }

  http::awaitable<void> attestation(http::Request& request, http::ResponseWriter& writer) {
    ++attestations;
    auto challenge = protocol::challenge_from_query(http::target_query(request));
    if (!challenge) {
      co_await writer.send(http::error_response(request, challenge.error()));
      co_return;
    }
    protocol::AttestationDocument doc;
    doc.public_key = config_.rotated_to.value_or(*config_.public_key);
    doc.key_id = crypto::key_id(doc.public_key);
    doc.not_after = 4'000'000'000;
    doc.provider = "simulated";
    doc.report_data = protocol::report_data(doc.public_key, *challenge);
    doc.evidence.assign(64, 0);
    doc.measurement.assign(32, 0);
    doc.models = config_.models;
    doc.capacity = config_.capacity;
    for (const auto& key : config_.previous) doc.previous_keys.push_back({key, 4'000'000'000});
    if (config_.rotated_to) doc.previous_keys.push_back({key_id(), 4'000'000'000});
    co_await writer.send(http::json_response(200, protocol::serialize_attestation(doc)));
  }

  Config config_;
  std::unique_ptr<http::Server> server_;
  std::string url_;
};

template <typename T>
T run(asio::io_context& ioc, http::awaitable<T> task) {
  auto done = asio::co_spawn(ioc, std::move(task), asio::use_future);
  ioc.restart();
  ioc.run();
  return done.get();
}

std::string challenge_hex() { return to_hex(crypto::random_array<protocol::kChallengeBytes>()); }

std::string error_code_of(const std::string& body) {
  return std::string(json::parse(body).at("error").at("code").as_string());
}

class EnclavePoolTest : public ::testing::Test {
 protected:
  // A gateway handler in front of `enclaves`, each checked once.
  void make_handler(const std::vector<FakeEnclave*>& enclaves, std::optional<std::string> admin_token = std::nullopt) {
    GatewayOptions options;
    for (auto* e : enclaves) options.enclaves.push_back(http::parse_url(e->url()).value());
    options.db_path = dir.file("gw.db");
    options.attestation_per_minute = 0;
    if (admin_token) options.admin_token_hash = crypto::sha256(crypto::as_bytes(*admin_token));
    handler = GatewayHandler::create(options).value();
    refresh();
  }
  void refresh() { run(ioc, handler->enclaves().refresh()); }

  http::RecordingWriter get(const std::string& target) {
    http::Request request{http::Verb::get, target, 11};
    http::RecordingWriter writer;
    run(ioc, handler->handle(request, writer));
    return writer;
  }
  // The keyId of the document GET /rvenc/attestation answers (checked to bind the challenge).
  std::string attested_key_id(const std::string& query) {
    const std::string challenge = challenge_hex();
    auto answer = get("/rvenc/attestation?challenge=" + challenge + query);
    EXPECT_EQ(answer.status(), 200u) << answer.body();
    if (answer.status() != 200) return {};
    auto doc = protocol::parse_attestation(answer.body()).value();
    EXPECT_EQ(doc.report_data,
              protocol::expected_report_data(doc, from_hex_exact<protocol::kChallengeBytes>(challenge, "c").value()));
    return to_hex(doc.key_id);
  }
  Result<http::Url> route(std::optional<crypto::KeyId> key_id) { return run(ioc, handler->enclaves().route(key_id)); }

  test::TempDir dir;
  asio::io_context ioc;
  std::unique_ptr<GatewayHandler> handler;
};

TEST_F(EnclavePoolTest, ModelsAreTheUnionOfTheHealthyEnclaves) {
  FakeEnclave a({.models = {"model-a"}});
  FakeEnclave ab({.models = {"model-a", "model-b"}});
  make_handler({&a, &ab});
  auto models = get("/rvenc/models");
  ASSERT_EQ(models.status(), 200u) << models.body();
  const auto list = json::parse(models.body());
  EXPECT_EQ(list.at("object").as_string(), "list");
  std::vector<std::string> ids;
  for (const auto& m : list.at("data").as_array()) {
    ids.emplace_back(m.at("id").as_string());
    EXPECT_EQ(m.at("object").as_string(), "model");
  }
  EXPECT_EQ(ids, (std::vector<std::string>{"model-a", "model-b"}));

  ab.stop();
  refresh();
  ids.clear();
  auto fewer = get("/rvenc/models");
  ASSERT_EQ(fewer.status(), 200u) << fewer.body();
  const auto model_list = json::parse(fewer.body());  // outlives the loop
  for (const auto& m : model_list.at("data").as_array()) ids.emplace_back(m.at("id").as_string());
  EXPECT_EQ(ids, (std::vector<std::string>{"model-a"}));
  a.stop();
  refresh();
  auto none = get("/rvenc/models");
  EXPECT_EQ(none.status(), 503u);
  EXPECT_EQ(error_code_of(none.body()), "enclave_unavailable");
}

TEST_F(EnclavePoolTest, AttestationPerModelGoesToAnEnclaveServingIt) {
  FakeEnclave a({.models = {"model-a"}});
  FakeEnclave b({.models = {"model-b"}});
  FakeEnclave a2({.models = {"model-a"}});
  make_handler({&a, &b, &a2});
  for (int i = 0; i < 8; ++i) EXPECT_EQ(attested_key_id("&model=model-b"), to_hex(b.key_id()));
  // Idle replicas tie: chosen at random, so both serve (missing one in 40 tries: 2^-39).
  std::set<std::string> seen;
  for (int i = 0; i < 40; ++i) {
    const auto key = attested_key_id("&model=model-a");
    EXPECT_NE(key, to_hex(b.key_id()));
    seen.insert(key);
  }
  EXPECT_EQ(seen.size(), 2u);
  // Percent-encoded names are decoded.
  EXPECT_EQ(attested_key_id("&model=model%2Db"), to_hex(b.key_id()));
}

TEST_F(EnclavePoolTest, UnknownModelIs404AndNoEnclaveIs503) {
  FakeEnclave a({.models = {"model-a"}});
  make_handler({&a});
  auto unknown = get("/rvenc/attestation?challenge=" + challenge_hex() + "&model=model-z");
  EXPECT_EQ(unknown.status(), 404u);
  EXPECT_EQ(error_code_of(unknown.body()), "model_not_found");
  EXPECT_EQ(unknown.body().find("model-z"), std::string::npos) << "the name is not echoed";
  auto unknown_all = get("/rvenc/attestation?challenge=" + challenge_hex() + "&model=model-z&all=1");
  EXPECT_EQ(unknown_all.status(), 404u);
  a.stop();
  refresh();
  auto down = get("/rvenc/attestation?challenge=" + challenge_hex() + "&model=model-a");
  EXPECT_EQ(down.status(), 503u);
  EXPECT_EQ(error_code_of(down.body()), "enclave_unavailable");
}

TEST_F(EnclavePoolTest, BadAttestationQueriesAre400) {
  FakeEnclave a({.models = {"model-a"}});
  make_handler({&a});
  const std::string c = "/rvenc/attestation?challenge=" + challenge_hex();
  for (const std::string& target : {std::string("/rvenc/attestation?model=model-a"), c + "&all=2", c + "&model=",
                                   c + "&model=a&model=b", c + "&model=" + std::string(300, 'x'),
                                   std::string("/rvenc/attestation?challenge=00")}) {
    auto answer = get(target);
    EXPECT_EQ(answer.status(), 400u) << target;
    EXPECT_EQ(error_code_of(answer.body()), "invalid_request") << target;
  }
  EXPECT_EQ(a.attestations.load(), 1) << "only the pool's own check reached the enclave";
}

TEST_F(EnclavePoolTest, AllListsEveryReplicaBoundToTheChallenge) {
  FakeEnclave a({.models = {"model-a"}, .capacity = 4});
  FakeEnclave b({.models = {"model-b"}});
  FakeEnclave a2({.models = {"model-a"}});
  make_handler({&a, &b, &a2});
  const std::string challenge = challenge_hex();
  auto answer = get("/rvenc/attestation?challenge=" + challenge + "&model=model-a&all=1");
  ASSERT_EQ(answer.status(), 200u) << answer.body();
  std::set<std::string> keys;
  const auto all_answer = json::parse(answer.body());  // outlives the loop
  for (const auto& value : all_answer.at("enclaves").as_array()) {
    auto doc = protocol::parse_attestation(json::serialize(value)).value();
    EXPECT_EQ(doc.report_data,
              protocol::expected_report_data(doc, from_hex_exact<protocol::kChallengeBytes>(challenge, "c").value()));
    EXPECT_EQ(doc.models, std::vector<std::string>{"model-a"});
    keys.insert(to_hex(doc.key_id));
  }
  EXPECT_EQ(keys, (std::set<std::string>{to_hex(a.key_id()), to_hex(a2.key_id())}));
  // Without a model: every healthy enclave.
  auto every = get("/rvenc/attestation?challenge=" + challenge + "&all=1");
  ASSERT_EQ(every.status(), 200u);
  EXPECT_EQ(json::parse(every.body()).at("enclaves").as_array().size(), 3u);
}

TEST_F(EnclavePoolTest, ChoosesTheLeastLoadedRelativeToCapacity) {
  FakeEnclave big({.models = {"m"}, .capacity = 10});
  FakeEnclave small({.models = {"m"}, .capacity = 2});
  make_handler({&big, &small});
  auto& pool = handler->enclaves();
  const auto big_url = http::parse_url(big.url()).value();
  const auto small_url = http::parse_url(small.url()).value();
  {
    // 1 of 10 against 1 of 2: the big one, every time.
    const auto on_big = pool.track(big_url);
    const auto on_small = pool.track(small_url);
    for (int i = 0; i < 10; ++i) EXPECT_EQ(attested_key_id("&model=m"), to_hex(big.key_id()));
    // 6 of 10 against 1 of 2 (0.6 > 0.5): the small one.
    std::vector<std::unique_ptr<EnclavePool::Ticket>> more;
    for (int i = 0; i < 5; ++i) more.push_back(std::make_unique<EnclavePool::Ticket>(pool, big_url));
    for (int i = 0; i < 10; ++i) EXPECT_EQ(attested_key_id("&model=m"), to_hex(small.key_id()));
  }
  for (const auto& e : pool.snapshot()) {
    EXPECT_EQ(e.in_flight, 0u) << "tickets give their slot back";
    EXPECT_EQ(e.requests, e.url.to_string() == big_url.to_string() ? 6u : 1u);
  }
}

TEST_F(EnclavePoolTest, DuplicateKeyIdIsAConfigurationErrorForBoth) {
  const auto shared = crypto::xwing_generate_keypair().public_key;
  FakeEnclave one({.models = {"m"}, .public_key = shared});
  FakeEnclave two({.models = {"m"}, .public_key = shared});
  FakeEnclave other({.models = {"m"}});
  make_handler({&one, &two, &other});
  for (const auto& e : handler->enclaves().snapshot()) {
    const bool duplicate = e.url.to_string() != http::parse_url(other.url()).value().to_string();
    EXPECT_EQ(e.healthy, !duplicate) << e.url.origin();
    if (duplicate) {
      EXPECT_NE(e.last_error.find("configuration error"), std::string::npos) << e.last_error;
    }
  }
  refresh();  // stays so at the next check
  EXPECT_EQ(handler->enclaves().healthy_count(), 1u);
  auto routed = route(one.key_id());
  ASSERT_FALSE(routed);
  EXPECT_EQ(routed.error().code, Errc::enclave_unavailable);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(attested_key_id("&model=m"), to_hex(other.key_id()));
}

TEST_F(EnclavePoolTest, PreviousKeysRouteToTheirEnclave) {
  const auto old_key = crypto::key_id(crypto::xwing_generate_keypair().public_key);
  FakeEnclave a({.models = {"m"}});
  FakeEnclave rotated({.models = {"m"}, .previous = {old_key}});
  make_handler({&a, &rotated});
  auto routed = route(old_key);
  ASSERT_TRUE(routed) << routed.error().to_string();
  EXPECT_EQ(routed->to_string(), http::parse_url(rotated.url()).value().to_string());
  auto current = route(rotated.key_id());
  ASSERT_TRUE(current);
  EXPECT_EQ(current->to_string(), routed->to_string());
  auto unknown = route(crypto::key_id(crypto::xwing_generate_keypair().public_key));
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, Errc::unknown_key_id);
  rotated.stop();
  refresh();
  auto down = route(old_key);
  ASSERT_FALSE(down);
  EXPECT_EQ(down.error().code, Errc::enclave_unavailable);
}

// Issue 21 item 5: an enclave rotating its key (rvenc enclave --key-rotation-hours) between the
// gateway's health check and its attestation stays in service, and both keys route to it.
TEST_F(EnclavePoolTest, ARotationBetweenHealthCheckAndAttestationKeepsTheEnclaveInService) {
  const auto newer = crypto::xwing_generate_keypair().public_key;
  FakeEnclave rotating({.models = {"m"}, .rotated_to = newer});
  make_handler({&rotating});
  const auto url = http::parse_url(rotating.url()).value().to_string();
  auto old_key = route(rotating.key_id());
  ASSERT_TRUE(old_key) << old_key.error().to_string();
  EXPECT_EQ(old_key->to_string(), url);
  auto new_key = route(crypto::key_id(newer));
  ASSERT_TRUE(new_key) << new_key.error().to_string();
  EXPECT_EQ(new_key->to_string(), url);
}

TEST_F(EnclavePoolTest, VersionOneOnlyWhenExactlyOneEnclaveAllowsIt) {
  FakeEnclave v1({.models = {"m"}, .allow_v1 = true});
  FakeEnclave v3({.models = {"m"}});
  make_handler({&v3, &v1});
  auto routed = route(std::nullopt);
  ASSERT_TRUE(routed);
  EXPECT_EQ(routed->to_string(), http::parse_url(v1.url()).value().to_string());

  FakeEnclave another_v1({.models = {"m"}, .allow_v1 = true});
  make_handler({&v1, &another_v1});
  auto two = route(std::nullopt);
  ASSERT_FALSE(two);
  EXPECT_EQ(two.error().code, Errc::unsupported_version);
  FakeEnclave another_v3({.models = {"m"}});
  make_handler({&v3, &another_v3});
  auto none = route(std::nullopt);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, Errc::unsupported_version);
  // One enclave: it decides for itself (it refuses version 1 with its own answer).
  make_handler({&v3});
  EXPECT_TRUE(route(std::nullopt));
}

// The background checks of a running gateway: an enclave that is killed (connection refused) or
// hangs (no answer) is out of service within about 2 s (interval 0.5 s + check bounded by 1 s).
TEST_F(EnclavePoolTest, AnEnclaveThatStopsAnsweringIsUnhealthyWithinTwoSeconds) {
  FakeEnclave killed({.models = {"m"}});
  FakeEnclave hung({.models = {"m"}});
  FakeEnclave fine({.models = {"m"}});
  GatewayOptions options;
  for (auto* e : {&killed, &hung, &fine}) options.enclaves.push_back(http::parse_url(e->url()).value());
  options.db_path = dir.file("gw.db");
  auto gateway = Gateway::create(options).value();
  gateway->start();
  gateway->refresh_enclaves();
  ASSERT_EQ(gateway->handler().enclaves().healthy_count(), 3u);
  const auto healthy = [&](const std::string& url) {
    for (const auto& e : gateway->handler().enclaves().snapshot())
      if (e.url.to_string() == http::parse_url(url).value().to_string()) return e.healthy;
    return false;
  };
  const auto started = std::chrono::steady_clock::now();
  killed.stop();
  hung.hang = true;
  // Generous bounds for a loaded machine; the elapsed times are reported, not asserted tightly.
  ASSERT_TRUE(test_support::wait_until([&] { return !healthy(killed.url()) && !healthy(hung.url()); }, std::chrono::seconds(20)));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cout << "killed and hung enclaves out of service after " << seconds << " s\n";
  EXPECT_TRUE(healthy(fine.url())) << "a hung enclave delays no other's check";
  gateway->stop();
  gateway->wait();
}

TEST_F(EnclavePoolTest, HealthAndMetricsShowEachEnclave) {
  FakeEnclave a({.models = {"model-a"}, .capacity = 8});
  FakeEnclave b({.models = {"model-b"}});
  make_handler({&a, &b}, "admin-secret");
  const auto a_url = http::parse_url(a.url()).value();
  const auto ticket = handler->enclaves().track(a_url);

  http::Request request{http::Verb::get, "/metrics", 11};
  request.set(boost::beast::http::field::authorization, "Bearer admin-secret");
  http::RecordingWriter metrics;
  run(ioc, handler->handle(request, metrics));
  ASSERT_EQ(metrics.status(), 200u);
  EXPECT_NE(metrics.body().find("rvenc_gateway_enclave_requests_total{enclave=\"" + a_url.origin() + "\"} 1"),
            std::string::npos)
      << metrics.body();
  EXPECT_NE(metrics.body().find("rvenc_gateway_enclave_in_flight{enclave=\"" + a_url.origin() + "\"} 1"),
            std::string::npos);
  EXPECT_NE(metrics.body().find("rvenc_gateway_enclave_in_flight{enclave=\"" +
                                http::parse_url(b.url()).value().origin() + "\"} 0"),
            std::string::npos);
  EXPECT_EQ(get("/metrics").status(), 401u) << "behind the admin token";

  request.target("/healthz");
  http::RecordingWriter health;
  run(ioc, handler->handle(request, health));
  ASSERT_EQ(health.status(), 200u);
  const auto list = json::parse(health.body()).at("enclaves").as_array();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].at("models").as_array().at(0).as_string(), "model-a");
  EXPECT_EQ(list[0].at("inFlight").as_int64(), 1);
  EXPECT_EQ(list[0].at("capacity").as_int64(), 8);
  EXPECT_TRUE(list[1].at("capacity").is_null());
  EXPECT_EQ(list[1].at("inFlight").as_int64(), 0);
  EXPECT_FALSE(json::parse(get("/healthz").body()).as_object().contains("enclaves")) << "public answer: status only";
}

}  // namespace
}  // namespace rvenc::gateway
