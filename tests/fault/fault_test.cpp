// Fault tests under load (issue 10 item 4), with real processes: `rvenc enclave` (demo engine or an
// OpenAI-style upstream in this process) and `rvenc gateway` on 127.0.0.1 port 0, a database made
// by `rvenc keys create`, and load from this process: the C++ SDK (async_create on an io_context),
// http::HttpClient and raw Asio sockets. Each test breaks something while requests are in flight and
// checks what every client saw, what the database holds, and what the processes still hold.
//
// Assertions are about correctness only; the timeouts below are guards against hangs.
#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <ctime>
#include <thread>
#include <tuple>

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "enclave/fake_openai.hpp"
#include "gateway/gateway_test_support.hpp"
#include "rvenc/client/client.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/gateway/api_key.hpp"
#include "rvenc/gateway/gateway.hpp"
#include "rvenc/gateway/usage.hpp"
#include "rvenc/http/client.hpp"
#include "rvenc/protocol/sealing.hpp"
#include "support/test_support.hpp"

namespace rvenc::fault {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
namespace gw = gateway::test_support;
using asio::ip::tcp;
using namespace std::chrono_literals;

// Against hangs only: no assertion depends on how fast anything is.
constexpr auto kGuard = std::chrono::milliseconds(60s);
// Demo-engine streams that last long enough to be hit mid-way: kStreamTokens tokens, one per
// kTokenDelayMs (~0.8 s on an idle machine).
constexpr long long kTokenDelayMs = 20;
constexpr int kStreamTokens = 40;
constexpr std::size_t kConcurrentStreams = 32;
constexpr std::string_view kGatewayToken = "fault-test-gateway-token-0123456789";
// The pool of idle keep-alive connections a process may keep to one peer (http::HttpClient default).
constexpr std::size_t kMaxIdlePerHost = http::HttpClientOptions::kDefaultMaxIdlePerHost;

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds guard = kGuard) {
  const auto deadline = std::chrono::steady_clock::now() + guard;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return done();
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

json::object chat_request(int max_tokens, std::string_view model = "rvenc-demo") {
  return {{"model", model},
          {"stream", true},
          {"max_tokens", max_tokens},
          {"messages", json::array{json::object{{"role", "user"}, {"content", "How do faults travel?"}}}}};
}

// The reasoning and content text of one decrypted chunk.
std::string text_of(const json::object& chunk) {
  std::string out;
  const auto& choices = chunk.at("choices").as_array();
  if (choices.empty()) return out;
  const auto& delta = choices[0].at("delta").as_object();
  for (const char* field : {"reasoning_content", "content"})
    if (const auto* v = delta.if_contains(field); v && v->is_string()) out += v->as_string();
  return out;
}

// --- the gateway database, read with the SQLite C API -------------------------------------------

class Database {
 public:
  explicit Database(const std::string& path) {
    // Read-write (never written here) so a database left by a killed gateway can recover its WAL.
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK)
      throw std::runtime_error("cannot open " + path);
    sqlite3_busy_timeout(db_, 10'000);
  }
  ~Database() { sqlite3_close(db_); }
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // request_id -> status of every usage row.
  std::map<std::string, int> usage() {
    std::map<std::string, int> rows;
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, "SELECT request_id, status FROM usage", -1, &stmt, nullptr) != SQLITE_OK)
      throw std::runtime_error(sqlite3_errmsg(db_));
    while (sqlite3_step(stmt) == SQLITE_ROW)
      rows[reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0))] = sqlite3_column_int(stmt, 1);
    sqlite3_finalize(stmt);
    return rows;
  }

  std::string integrity_check() {
    std::string out;
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, "PRAGMA integrity_check", -1, &stmt, nullptr) != SQLITE_OK) return sqlite3_errmsg(db_);
    while (sqlite3_step(stmt) == SQLITE_ROW) out += reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
};

// --- what a process holds: file descriptors and TCP connections from /proc ----------------------

constexpr int kTcpEstablished = 0x01;
constexpr int kTcpListen = 0x0A;

struct TcpConnection {
  std::uint16_t local_port = 0;
  std::uint16_t remote_port = 0;
  int state = 0;
  bool queues_empty = true;  // nothing unsent and nothing unread

  // An idle keep-alive connection: open both ways and nothing in flight. (The end of a stream the
  // process abandoned without closing would hold the unread rest of that stream.)
  [[nodiscard]] bool idle() const { return state == kTcpEstablished && queues_empty; }
};

std::string describe(const TcpConnection& c) {
  return ":" + std::to_string(c.local_port) + " -> :" + std::to_string(c.remote_port) + " state " +
         std::to_string(c.state) + (c.queues_empty ? "" : " with bytes queued");
}

// Socket inode -> connection, for every TCP socket on this machine (/proc/net/tcp{,6}).
std::map<std::string, TcpConnection> tcp_table() {
  std::map<std::string, TcpConnection> table;
  for (const char* path : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
      fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >> inode;
      auto port = [](const std::string& address) {
        return static_cast<std::uint16_t>(std::stoul(address.substr(address.rfind(':') + 1), nullptr, 16));
      };
      if (inode.empty() || inode == "0") continue;
      table[inode] = TcpConnection{port(local), port(remote), std::stoi(state, nullptr, 16),
                                   queues == "00000000:00000000"};
    }
  }
  return table;
}

// A process's descriptors: everything but TCP connections as sorted names (inode numbers and
// journal names dropped, listening sockets by port), and its TCP connections.
struct Census {
  std::vector<std::string> fds;
  std::vector<TcpConnection> connections;
};

Census census(int pid, const std::map<std::string, TcpConnection>& table) {
  Census out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    std::error_code link_ec;
    std::string target = std::filesystem::read_symlink(entry.path(), link_ec).string();
    if (link_ec) continue;  // closed while we looked
    if (target.starts_with("socket:[")) {
      const std::string inode = target.substr(8, target.size() - 9);
      if (auto it = table.find(inode); it != table.end()) {
        if (it->second.state == kTcpListen) {
          out.fds.push_back("tcp listen :" + std::to_string(it->second.local_port));
        } else {
          out.connections.push_back(it->second);
        }
        continue;
      }
      target = "socket (not tcp, or opened after the table was read)";
    } else if (const auto bracket = target.find(":["); bracket != std::string::npos) {
      target = target.substr(0, bracket);  // pipe:[123] -> pipe
    } else if (const auto usage = target.rfind(".usage-"); usage != std::string::npos && target.ends_with(".journal")) {
      target = target.substr(0, usage) + ".usage-*.journal";  // the usage journal: a new name per batch
    }
    out.fds.push_back(target);
  }
  std::sort(out.fds.begin(), out.fds.end());
  return out;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

// The processes under test, the ports that tell pool connections apart, and how many pooled
// keep-alive connections each hop may keep: a pool never holds more than the requests that were
// in flight at once on that hop, nor more than kMaxIdlePerHost.
struct Processes {
  int gateway_pid = 0;
  int enclave_pid = 0;
  std::uint16_t enclave_port = 0;
  std::size_t max_gateway_pool = 0;
  std::optional<std::uint16_t> upstream_port;  // the enclave's model server, if any
  std::size_t max_upstream_pool = 0;
};

// The gateway and enclave at rest: the same descriptors as at the baselines, and no TCP
// connection but idle keep-alive pool connections, each accounted for: the gateway's pool to the
// enclave, the enclave's ends of exactly those connections, and the enclave's pool to its
// upstream model server. Returns what does not fit ("" when at rest).

std::string unaccounted(const Processes& p, const Census& gateway_baseline, const Census& enclave_baseline) {
  const auto table = tcp_table();
  const Census g = census(p.gateway_pid, table);
  const Census e = census(p.enclave_pid, table);
  std::ostringstream out;
  if (g.fds != gateway_baseline.fds)
    out << "gateway descriptors [" << join(g.fds) << "], at baseline [" << join(gateway_baseline.fds) << "]\n";
  if (e.fds != enclave_baseline.fds)
    out << "enclave descriptors [" << join(e.fds) << "], at baseline [" << join(enclave_baseline.fds) << "]\n";
  std::set<std::uint16_t> gateway_pool;  // local ports of the gateway's pooled enclave connections
  for (const auto& c : g.connections) {
    if (c.idle() && c.remote_port == p.enclave_port)
      gateway_pool.insert(c.local_port);
    else
      out << "gateway connection " << describe(c) << "\n";
  }
  if (gateway_pool.size() > std::min(p.max_gateway_pool, kMaxIdlePerHost))
    out << "gateway pool holds " << gateway_pool.size() << " connections\n";
  std::size_t upstream_pool = 0;
  for (const auto& c : e.connections) {
    if (c.idle() && c.local_port == p.enclave_port && gateway_pool.contains(c.remote_port)) continue;
    if (p.upstream_port && c.idle() && c.remote_port == *p.upstream_port) {
      ++upstream_pool;
      continue;
    }
    out << "enclave connection " << describe(c) << "\n";
  }
  if (upstream_pool > std::min(p.max_upstream_pool, kMaxIdlePerHost))
    out << "enclave upstream pool holds " << upstream_pool << " connections\n";
  return out.str();
}

// Sockets close asynchronously, so the check polls; its guard is shorter than the servers' own
// read (30 s) and idle (60 s) timeouts, so those cannot tidy up a leak before it is seen.
constexpr auto kRestGuard = std::chrono::milliseconds(20s);

// Polls until both processes are at rest relative to the baselines; the last finding otherwise.
std::string wait_for_rest(const Processes& p, const Census& gateway_baseline, const Census& enclave_baseline) {
  std::string finding;
  wait_until(
      [&] {
        finding = unaccounted(p, gateway_baseline, enclave_baseline);
        return finding.empty();
      },
      kRestGuard);
  return finding;
}

// Baselines: a census of both processes that the next one repeats, with nothing but pool connections.
bool take_baselines(const Processes& p, Census& gateway_baseline, Census& enclave_baseline) {
  return wait_until(
      [&] {
        const auto table = tcp_table();
        gateway_baseline = census(p.gateway_pid, table);
        enclave_baseline = census(p.enclave_pid, table);
        return unaccounted(p, gateway_baseline, enclave_baseline).empty();
      },
      kRestGuard);
}

long rss_kib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
  return -1;
}

// --- many SDK calls at once ------------------------------------------------------------------

struct CallResult {
  std::optional<Error> error;
  unsigned status = 0;     // the gateway's HTTP status (0: no answer)
  std::string request_id;  // its X-Request-Id
  std::string text;        // the decrypted text that arrived
};

// Runs SDK streaming calls (async_create) on its own io_context thread.
class SdkLoad {
 public:
  SdkLoad(client::Client client, json::object request)
      : client_(std::move(client)), request_(std::move(request)), thread_([this] { ioc_.run(); }) {}
  ~SdkLoad() {
    if (thread_.joinable()) {
      ioc_.stop();
      thread_.join();
    }
  }
  SdkLoad(const SdkLoad&) = delete;
  SdkLoad& operator=(const SdkLoad&) = delete;

  void launch(std::size_t n) {
    launched_ += n;
    for (std::size_t i = 0; i < n; ++i) asio::co_spawn(ioc_, call(), asio::detached);
  }
  // Calls that received at least one chunk.
  [[nodiscard]] std::size_t streaming() const { return streaming_; }
  [[nodiscard]] std::size_t finished() const { return finished_; }

  // Waits until every call ended (the guard only catches hangs).
  std::vector<CallResult> finish() {
    const bool all = wait_until([&] { return finished_ == launched_; });
    EXPECT_TRUE(all) << finished_ << " of " << launched_ << " calls never ended";
    work_.reset();
    if (!all) ioc_.stop();
    thread_.join();
    std::lock_guard lock(mutex_);
    return results_;
  }

 private:
  http::awaitable<void> call() {
    CallResult result;
    bool first = true;
    client::CallOptions options;
    options.on_response = [&result](const client::ResponseMeta& meta) {
      result.status = meta.status;
      result.request_id = meta.header("x-request-id").value_or("");
    };
    auto ended = co_await client_.chat.completions.async_create(
        request_, [&](const client::Chunk& chunk) -> http::awaitable<Status> {
          if (std::exchange(first, false)) ++streaming_;
          result.text += text_of(chunk.object);
          co_return Status{};
        },
        options);
    if (!ended) result.error = ended.error();
    {
      std::lock_guard lock(mutex_);
      results_.push_back(std::move(result));
    }
    ++finished_;
  }

  client::Client client_;
  json::object request_;
  asio::io_context ioc_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(ioc_);
  std::atomic<std::size_t> launched_{0}, streaming_{0}, finished_{0};
  std::mutex mutex_;
  std::vector<CallResult> results_;
  std::thread thread_;  // last: starts once everything above exists
};

// --- the processes ---------------------------------------------------------------------------

class FaultTest : public ::testing::Test {
 protected:
  // `rvenc enclave` with this test's key file, platform key and gateway token, on `listen` (a
  // restart needs the same address, which gateway_test_support's start_enclave cannot give).
  void start_enclave(long long token_delay_ms, std::vector<std::string> extra = {},
                     const std::string& listen = "127.0.0.1:0") {
    std::ofstream(dir.file("gateway.token")) << kGatewayToken << "\n";
    std::vector<std::string> argv{test::rvenc_binary(), "enclave", "--attestation", "simulated", "--listen", listen,
                                  "--key-file", dir.file("enclave.key"), "--platform-key", dir.file("platform.key"),
                                  "--gateway-token-file", dir.file("gateway.token"), "--demo-delay-ms",
                                  std::to_string(token_delay_ms)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    enclave = std::make_unique<test::ChildProcess>(argv);
    auto url = enclave->wait_for_url();
    ASSERT_TRUE(url) << enclave->output();
    enclave_url = *url;
    enclave_port = static_cast<std::uint16_t>(std::stoi(enclave_url.substr(enclave_url.rfind(':') + 1)));
  }

  // `rvenc gateway` on the test database (the API key is made first, with `rvenc keys create`).
  void start_gateway() {
    if (api_key.empty()) {
      auto created = gw::run_cli({"keys", "create", "--db", db, "--name", "fault"});
      ASSERT_EQ(created.exit_code, 0) << created.out;
      api_key = created.out.substr(0, created.out.find('\n'));
      ASSERT_TRUE(gateway::is_well_formed_api_key(api_key)) << created.out;
    }
    gateway = gw::start_gateway({enclave_url}, db, dir.file("gateway.token"));
    auto url = gateway->wait_for_url();
    ASSERT_TRUE(url) << gateway->output();
    gateway_url = *url;
  }

  // An SDK client of the gateway that trusts this test's simulated platform key.
  client::Client make_client() const {
    client::ClientOptions options;
    options.api_key = api_key;
    options.base_url = gateway_url;
    options.request_timeout = 20s;
    std::ifstream in(dir.file("platform.key"), std::ios::binary);
    crypto::Ed25519Seed seed;
    in.read(reinterpret_cast<char*>(seed.span().data()), static_cast<std::streamsize>(seed.span().size()));
    options.attestation.allowed_providers = {"simulated"};
    options.attestation.simulated_platform_key = crypto::ed25519_keypair_from_seed(seed).public_key;
    auto client = client::create_client(std::move(options));
    if (!client) throw std::runtime_error(client.error().to_string());
    return *client;
  }

  // One blocking call; its request id goes to `ids`. The text, or the error.
  static Result<std::string> call(const client::Client& client, const json::object& request,
                                  std::set<std::string>& ids) {
    std::string text;
    client::CallOptions options;
    options.on_response = [&ids](const client::ResponseMeta& meta) {
      if (auto id = meta.header("x-request-id")) ids.insert(*id);
    };
    auto ended = client.chat.completions.create(
        request,
        [&text](const client::Chunk& chunk) -> Status {
          text += text_of(chunk.object);
          return {};
        },
        options);
    if (!ended) return std::unexpected(ended.error());
    return text;
  }

  // The scene of a fault under load: enclave (slow tokens) and gateway up, an SDK client, the
  // streaming request, and its complete answer as the reference (its request id goes to `ids`).
  struct Scene {
    std::optional<client::Client> client;
    json::object request;
    std::string complete;
  };
  void start_scene(Scene& scene, std::set<std::string>& ids) {
    ASSERT_NO_FATAL_FAILURE(start_enclave(kTokenDelayMs));
    ASSERT_NO_FATAL_FAILURE(start_gateway());
    scene.client.emplace(make_client());
    scene.request = chat_request(kStreamTokens);
    auto complete = call(*scene.client, scene.request, ids);
    ASSERT_TRUE(complete) << complete.error().to_string();
    scene.complete = *complete;
  }

  json::object healthz() const {
    auto health = http::fetch("GET", gateway_url + "/healthz");
    if (!health) throw std::runtime_error("healthz: " + health.error().message);
    auto body = json::parse(health->body()).as_object();
    body["httpStatus"] = static_cast<std::int64_t>(health->result_int());
    return body;
  }

  // Every request in `ids` has exactly one usage row and there is no other; the database is intact.
  void expect_usage_exactly(const std::set<std::string>& ids) {
    Database database(db);
    std::map<std::string, int> rows;
    wait_until([&] { return (rows = database.usage()).size() >= ids.size(); });
    // A late or stray row would show up within a few more flushes.
    std::this_thread::sleep_for(3 * gateway::kUsageFlushInterval);
    rows = database.usage();
    EXPECT_EQ(rows.size(), ids.size());
    for (const auto& id : ids) EXPECT_TRUE(rows.contains(id)) << "no usage row for " << id;
    EXPECT_EQ(database.integrity_check(), "ok");
  }

  // The processes still running stop cleanly: exit code 0 on SIGTERM (under ASan this also
  // catches memory errors and leaks at shutdown).
  void TearDown() override {
    for (auto* process : {gateway.get(), enclave.get()})
      if (process && process->running()) {
        EXPECT_EQ(process->stop(SIGTERM), 0) << process->output();
      }
  }

  test::TempDir dir;
  std::string db = dir.file("gateway.db");
  std::string api_key;
  std::unique_ptr<test::ChildProcess> enclave;
  std::unique_ptr<test::ChildProcess> gateway;
  std::string enclave_url;
  std::uint16_t enclave_port = 0;
  std::string gateway_url;
};

// --- 1. kill -9 the enclave under load ---------------------------------------------------------

TEST_F(FaultTest, EnclaveKilledUnderLoadEveryCallEndsAndUsageIsExact) {
  std::set<std::string> ids;  // every request the gateway answered, hence authenticated
  Scene scene;
  ASSERT_NO_FATAL_FAILURE(start_scene(scene, ids));
  const auto& [client, request, complete] = std::tie(*scene.client, scene.request, scene.complete);
  const auto key_id = healthz().at("enclaves").at(0).at("keyId");
  ASSERT_TRUE(key_id.is_string());
  // Sealed while the enclave can still attest; sent once it is gone.
  std::vector<gw::Sealed> probes;
  for (int i = 0; i < 3; ++i) probes.push_back(gw::seal_chat(gateway_url, dir.file("platform.key")));

  SdkLoad load(client, request);
  load.launch(kConcurrentStreams);
  ASSERT_TRUE(wait_until([&] { return load.streaming() == kConcurrentStreams || load.finished() > 0; }));
  EXPECT_EQ(enclave->stop(SIGKILL), 128 + SIGKILL);
  std::size_t interrupted = 0;
  for (const auto& r : load.finish()) {
    ASSERT_FALSE(r.request_id.empty()) << "a call without an answer from the gateway";
    ids.insert(r.request_id);
    if (!r.error) {
      EXPECT_EQ(r.text, complete) << "a success must be the whole answer";
      continue;
    }
    ++interrupted;
    // The gateway's plain error event (or a 503 before the stream), or a stream cut short: typed,
    // never a success, and what did arrive authenticated as a prefix of the answer.
    EXPECT_TRUE(r.error->code == Errc::upstream_error || r.error->code == Errc::truncated_stream ||
                r.error->code == Errc::enclave_unavailable)
        << r.error->to_string();
    EXPECT_TRUE(complete.starts_with(r.text));
  }
  EXPECT_GT(interrupted, 0u) << "the kill hit no stream";

  // The gateway still answers, with OpenAI error JSON, and reports the enclave down.
  for (const auto& probe : probes) {
    auto response = gw::post_chat(gateway_url, probe.body, api_key);
    ASSERT_TRUE(response) << response.error().to_string();
    // 503 enclave_unavailable (issue 28: the client re-attests and re-sends once), not 502.
    EXPECT_EQ(response->result_int(), 503u) << response->body();
    EXPECT_EQ(gw::error_code(response->body()), "enclave_unavailable");
    ids.insert(std::string((*response)["X-Request-Id"]));
  }
  auto health = healthz();
  EXPECT_EQ(health.at("httpStatus").as_int64(), 503);
  EXPECT_EQ(health.at("enclavesUp").as_int64(), 0);

  // Restarted on its address with its key file: the same keyId, and served again.
  ASSERT_NO_FATAL_FAILURE(start_enclave(kTokenDelayMs, {}, enclave_url.substr(std::string("http://").size())));
  Result<std::string> again = fail(Errc::internal_error, "not tried");
  ASSERT_TRUE(wait_until([&] {
    again = call(client, request, ids);
    return again.has_value();
  })) << again.error().to_string();
  EXPECT_EQ(*again, complete);
  health = healthz();
  EXPECT_EQ(health.at("httpStatus").as_int64(), 200);
  EXPECT_EQ(health.at("enclaves").at(0).at("keyId"), key_id);

  expect_usage_exactly(ids);
}

// What a load balancer polls learns of the dead enclave from the streams that broke, not only
// from the next request that fails to connect (or the attestation refresh, every 30 s).
TEST_F(FaultTest, EnclaveKilledMidStreamIsReportedDownAtOnce) {
  ASSERT_NO_FATAL_FAILURE(start_enclave(kTokenDelayMs));
  ASSERT_NO_FATAL_FAILURE(start_gateway());
  SdkLoad load(make_client(), chat_request(kStreamTokens));
  load.launch(4);
  ASSERT_TRUE(wait_until([&] { return load.streaming() == 4 || load.finished() > 0; }));
  EXPECT_EQ(enclave->stop(SIGKILL), 128 + SIGKILL);
  std::size_t interrupted = 0;
  for (const auto& r : load.finish()) interrupted += r.error ? 1 : 0;
  ASSERT_GT(interrupted, 0u) << "the kill hit no stream";
  const auto health = healthz();
  EXPECT_EQ(health.at("httpStatus").as_int64(), 503);
  EXPECT_EQ(health.at("enclavesUp").as_int64(), 0);
}

// A request that the gateway (untrusted) has seen stays refused within the replay window
// (PROTOCOL.md: a keyId + nonce seen within 600 s), also by the enclave restarted with its key file.
TEST_F(FaultTest, EnclaveRestartedWithItsKeyStillRefusesReplays) {
  ASSERT_NO_FATAL_FAILURE(start_enclave(0));
  ASSERT_NO_FATAL_FAILURE(start_gateway());
  const auto sealed = gw::seal_chat(gateway_url, dir.file("platform.key"));
  const std::time_t sealed_by = std::time(nullptr);
  const std::string token(kGatewayToken);
  auto first = gw::post_chat(enclave_url, sealed.body, token);
  ASSERT_TRUE(first);
  ASSERT_EQ(first->result_int(), 200u) << first->body();
  EXPECT_EQ(gw::error_code(gw::post_chat(enclave_url, sealed.body, token)->body()), "replayed_request");
  EXPECT_EQ(enclave->stop(SIGKILL), 128 + SIGKILL);
  // Timestamps have a resolution of one second: the restart must begin in a later second than
  // the sealing (an enclave restarted within the same second cannot tell them apart).
  while (std::time(nullptr) <= sealed_by) std::this_thread::sleep_for(50ms);
  ASSERT_NO_FATAL_FAILURE(start_enclave(0, {}, enclave_url.substr(std::string("http://").size())));
  auto replayed = gw::post_chat(enclave_url, sealed.body, token);
  ASSERT_TRUE(replayed);
  EXPECT_EQ(replayed->result_int(), 400u);
  EXPECT_EQ(gw::error_code(replayed->body()), "replayed_request");
}

// The graceful counterpart: SIGTERM lets the enclave's streams in flight finish (its shutdown
// grace, 10 s by default; they need about 1 s) and it exits 0.
TEST_F(FaultTest, EnclaveSigtermUnderLoadFinishesItsStreams) {
  std::set<std::string> ids;
  Scene scene;
  ASSERT_NO_FATAL_FAILURE(start_scene(scene, ids));
  const auto& [client, request, complete] = std::tie(*scene.client, scene.request, scene.complete);
  SdkLoad load(client, request);
  load.launch(kConcurrentStreams);
  ASSERT_TRUE(wait_until([&] { return load.streaming() == kConcurrentStreams; }));
  enclave->signal(SIGTERM);
  EXPECT_EQ(enclave->stop(0, 30s), 0) << enclave->output();  // signal 0: only waits
  for (const auto& r : load.finish()) {
    EXPECT_FALSE(r.error) << r.error->to_string();
    EXPECT_EQ(r.text, complete);
    ids.insert(r.request_id);
  }
  expect_usage_exactly(ids);
}

// --- 2. restart the gateway under load ------------------------------------------------------------

TEST_F(FaultTest, GatewaySigtermUnderLoadDrainsStreamsAndTheNextGatewayServes) {
  std::set<std::string> ids;
  Scene scene;
  ASSERT_NO_FATAL_FAILURE(start_scene(scene, ids));
  const auto& [client, request, complete] = std::tie(*scene.client, scene.request, scene.complete);

  SdkLoad load(client, request);
  load.launch(kConcurrentStreams);
  ASSERT_TRUE(wait_until([&] { return load.streaming() == kConcurrentStreams; }));
  gateway->signal(SIGTERM);
  // Calls that arrive while the gateway stops: served whole or refused, never half accounted.
  SdkLoad late(client, request);
  late.launch(8);
  // Signal 0 only waits: a second SIGTERM is not part of the scenario.
  EXPECT_EQ(gateway->stop(0, 30s), 0) << gateway->output();

  // Streams in flight at SIGTERM finish within the shutdown grace (10 s; they need < 1 s).
  for (const auto& r : load.finish()) {
    EXPECT_FALSE(r.error) << r.error->to_string();
    EXPECT_EQ(r.text, complete);
    EXPECT_EQ(r.status, 200u);
    ids.insert(r.request_id);
  }
  for (const auto& r : late.finish()) {
    if (r.error) {
      // Refused (or closed unanswered) while stopping: no status, no request id, no usage row.
      EXPECT_EQ(r.error->code, Errc::transport_error) << r.error->to_string();
      EXPECT_EQ(r.status, 0u);
      EXPECT_TRUE(r.request_id.empty());
    } else {
      EXPECT_EQ(r.text, complete);
      ids.insert(r.request_id);
    }
  }

  // A new gateway on the same database serves.
  ASSERT_NO_FATAL_FAILURE(start_gateway());
  const auto after = call(make_client(), request, ids);
  ASSERT_TRUE(after) << after.error().to_string();
  EXPECT_EQ(*after, complete);
  expect_usage_exactly(ids);
}

// kill -9 loses what the gateway has not written yet: the final usage rows of requests still in
// flight (a stream's provisional row, journaled when it starts, is replayed by the next gateway)
// and of requests that ended within the last usage flush interval (kUsageFlushInterval, 200 ms;
// the writer batches them). Rows written before are durable
// (SQLite WAL), the database stays intact, and no row is ever written twice or for nothing.
TEST_F(FaultTest, GatewayKilledUnderLoadLeavesAnIntactDatabase) {
  ASSERT_NO_FATAL_FAILURE(start_enclave(kTokenDelayMs));
  ASSERT_NO_FATAL_FAILURE(start_gateway());
  const auto client = make_client();
  const auto request = chat_request(kStreamTokens);
  std::set<std::string> written;  // requests whose rows are in the database before the kill
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(call(client, chat_request(2), written));
  {
    Database database(db);
    ASSERT_TRUE(wait_until([&] { return database.usage().size() == written.size(); }));
  }
  const auto complete = call(client, request, written);
  ASSERT_TRUE(complete) << complete.error().to_string();
  {
    Database database(db);
    ASSERT_TRUE(wait_until([&] { return database.usage().size() == written.size(); }));
  }

  SdkLoad load(client, request);
  load.launch(kConcurrentStreams);
  ASSERT_TRUE(wait_until([&] { return load.streaming() == kConcurrentStreams || load.finished() > 0; }));
  // Answered just before the kill: their rows still wait for their batch (only in the journal).
  std::set<std::string> recent;
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(call(client, chat_request(2), recent));
  EXPECT_EQ(gateway->stop(SIGKILL), 128 + SIGKILL);
  std::set<std::string> answered = written;
  answered.insert(recent.begin(), recent.end());
  std::size_t interrupted = 0;
  for (const auto& r : load.finish()) {
    if (!r.request_id.empty()) answered.insert(r.request_id);
    if (!r.error) {
      EXPECT_EQ(r.text, *complete);
      continue;
    }
    ++interrupted;
    EXPECT_TRUE(r.error->code == Errc::truncated_stream || r.error->code == Errc::transport_error)
        << r.error->to_string();
    EXPECT_TRUE(complete->starts_with(r.text));
  }
  EXPECT_GT(interrupted, 0u) << "the kill hit no stream";

  {
    Database database(db);
    EXPECT_EQ(database.integrity_check(), "ok");
    const auto rows = database.usage();
    for (const auto& id : written) EXPECT_TRUE(rows.contains(id)) << "a written row was lost: " << id;
    for (const auto& [id, status] : rows) EXPECT_TRUE(answered.contains(id)) << "a row for no request: " << id;
  }

  // A new gateway on the same database writes the journaled rows of the killed one, serves and
  // records.
  ASSERT_NO_FATAL_FAILURE(start_gateway());
  std::set<std::string> next;
  const auto after = call(make_client(), request, next);
  ASSERT_TRUE(after) << after.error().to_string();
  EXPECT_EQ(*after, *complete);
  ASSERT_EQ(next.size(), 1u);
  Database database(db);
  EXPECT_TRUE(wait_until([&] { return database.usage().contains(*next.begin()); }));
  EXPECT_EQ(database.integrity_check(), "ok");
  const auto rows = database.usage();
  for (const auto& id : recent) EXPECT_TRUE(rows.contains(id)) << "the row of a request answered before the kill was lost: " << id;
  for (const auto& [id, status] : rows)
    EXPECT_TRUE(answered.contains(id) || next.contains(id)) << "a row for no request: " << id;
}

// --- 3. an upstream model server that stalls ------------------------------------------------------

TEST_F(FaultTest, StalledUpstreamTimesOutEveryStreamAndReleasesItsResources) {
  // Silent mid-stream for longer than the test runs; the enclave gives up after 300 ms of silence.
  enclave::test::FakeOpenAi upstream(std::chrono::minutes(5));
  ASSERT_NO_FATAL_FAILURE(start_enclave(0, {"--upstream", "stall=" + upstream.base("stall"), "--upstream",
                                            "good=" + upstream.base("ok"), "--upstream-timeout-ms", "300"}));
  ASSERT_NO_FATAL_FAILURE(start_gateway());
  // The gateway had at most 33 requests in flight to the enclave, the enclave one to the good
  // model at a time (stalled upstream connections are closed, never pooled).
  const Processes processes{gateway->pid(), enclave->pid(), enclave_port, kConcurrentStreams + 1,
                            upstream.server->port(), 1};
  const auto good = chat_request(8, "good");
  const auto stall = chat_request(8, "stall");
  std::set<std::string> ids;
  {
    // Warm-up, so lazily made things (pools, resolver threads) exist before the baseline.
    const auto client = make_client();
    ASSERT_EQ(call(client, good, ids).value_or("<error>"), "Upstream says hello.");
    const auto stalled = call(client, stall, ids);
    ASSERT_FALSE(stalled);
    EXPECT_EQ(stalled.error().code, Errc::upstream_timeout) << stalled.error().to_string();
  }  // the client's connections to the gateway close
  Census gateway_baseline, enclave_baseline;
  ASSERT_TRUE(take_baselines(processes, gateway_baseline, enclave_baseline))
      << unaccounted(processes, gateway_baseline, enclave_baseline);

  {
    const auto client = make_client();
    SdkLoad load(client, stall);
    load.launch(kConcurrentStreams);
    // The enclave keeps serving other models while those stall.
    ASSERT_EQ(call(client, good, ids).value_or("<error>"), "Upstream says hello.");
    std::set<std::string> stalled;
    for (const auto& r : load.finish()) {
      ASSERT_TRUE(r.error) << "a stalled stream ended as a success";
      // The enclave's encrypted error event, after the two chunks that came before the silence.
      EXPECT_EQ(r.error->code, Errc::upstream_timeout) << r.error->to_string();
      EXPECT_EQ(r.status, 200u);
      EXPECT_EQ(r.text, "Upstream says ");
      stalled.insert(r.request_id);
    }
    ASSERT_EQ(stalled.size(), kConcurrentStreams);
    ids.insert(stalled.begin(), stalled.end());
    expect_usage_exactly(ids);
    // Status 200: the gateway relayed the enclave's error event and its authenticated done.
    for (const auto& [id, status] : Database(db).usage())
      EXPECT_TRUE(!stalled.contains(id) || status == 200) << id << " has status " << status;
  }

  EXPECT_EQ(wait_for_rest(processes, gateway_baseline, enclave_baseline), "");
  EXPECT_EQ(call(make_client(), good, ids).value_or("<error>"), "Upstream says hello.");
}

// --- 4. 1,000 clients that connect and disconnect at random during streams -----------------------

// What one client does before it disconnects.
enum class Move {
  connect_only,     // connects, waits, closes
  garbage,          // sends bytes that are not HTTP
  partial_head,     // part of the request head
  partial_body,     // the head and part of the body
  send_then_close,  // the whole request, then closes without reading       (authenticated)
  read_head,        // closes once the response head arrived               (authenticated)
  read_events,      // closes after a few events of the stream              (authenticated)
  read_all,         // reads the whole stream and decrypts it              (authenticated)
  unknown_key,      // a well-formed key the gateway does not know: 401
};
constexpr int kMoveCount = 9;

bool authenticated(Move move) {
  return move == Move::send_then_close || move == Move::read_head || move == Move::read_events || move == Move::read_all;
}

struct PlannedClient {
  Move move = Move::connect_only;
  std::chrono::milliseconds pause{0};  // before disconnecting
  std::size_t cut = 0;                 // bytes sent by partial_*, or events read by read_events
  gw::Sealed sealed;                   // the request (moves that send one)
};

struct StormResult {
  std::atomic<std::size_t> done{0};
  std::atomic<std::size_t> failures{0};  // a client that saw something wrong (details in `problems`)
  std::mutex mutex;
  std::vector<std::string> problems;
  std::map<std::string, Move> request_ids;  // X-Request-Id of the http::HttpClient moves

  void problem(std::string what) {
    ++failures;
    std::lock_guard lock(mutex);
    if (problems.size() < 20) problems.push_back(std::move(what));
  }
};

class Storm {
 public:
  static constexpr std::size_t kConcurrency = 64;

  Storm(std::string gateway_url, std::string api_key, client::EncryptionKeys keys)
      : url_(*http::parse_url(gateway_url)), api_key_(std::move(api_key)), keys_(std::move(keys)) {}

  // `count` clients drawn from `seed`, run at most kConcurrency at a time. The number of them
  // whose request reaches authentication.
  std::size_t run(std::size_t count, std::uint32_t seed, StormResult& result) {
    std::mt19937 rng(seed);
    std::vector<PlannedClient> plan(count);
    std::size_t expected_authenticated = 0;
    for (auto& c : plan) {
      c.move = static_cast<Move>(std::uniform_int_distribution<int>(0, kMoveCount - 1)(rng));
      c.pause = std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 15)(rng));
      c.sealed = seal();
      c.cut = std::uniform_int_distribution<std::size_t>(1, 1 << 16)(rng);
      expected_authenticated += authenticated(c.move) ? 1 : 0;
    }
    http::HttpClient client;  // for the moves that read; it closes its pooled connections on return
    asio::io_context ioc;
    std::size_t next = 0;
    for (std::size_t i = 0; i < kConcurrency; ++i) asio::co_spawn(ioc, worker(plan, next, client, result), asio::detached);
    ioc.run_for(kGuard);
    EXPECT_EQ(result.done.load(), count) << "storm clients hung";
    return expected_authenticated;
  }

 private:
  gw::Sealed seal() const {
    return test::seal_with_keys(keys_.shared_secret, keys_.cipher_text, keys_.key_id,
                                json::serialize(chat_request(12)));
  }

  std::string raw_request(const std::string& body, const std::string& key) const {
    return "POST /rvenc/chat/completions HTTP/1.1\r\nHost: " + url_.host_header() +
           "\r\nContent-Type: application/json\r\nAuthorization: Bearer " + key +
           "\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  }

  http::awaitable<void> worker(std::vector<PlannedClient>& plan, std::size_t& next, http::HttpClient& client,
                               StormResult& result) {
    while (next < plan.size()) {
      auto& planned = plan[next++];
      try {
        if (planned.move == Move::read_head || planned.move == Move::read_events || planned.move == Move::read_all)
          co_await with_client(planned, client, result);
        else
          co_await with_socket(planned, result);
      } catch (const std::exception& e) {
        result.problem(std::string("exception: ") + e.what());
      }
      ++result.done;
    }
  }

  static http::awaitable<void> pause(std::chrono::milliseconds duration) {
    asio::steady_timer timer(co_await asio::this_coro::executor, duration);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }

  // The moves that break HTTP, on a raw socket.
  http::awaitable<void> with_socket(const PlannedClient& planned, StormResult& result) {
    tcp::socket socket(co_await asio::this_coro::executor);
    const tcp::endpoint endpoint(asio::ip::make_address(url_.host), url_.port);
    if (auto [ec] = co_await socket.async_connect(endpoint, asio::as_tuple(asio::use_awaitable)); ec) {
      result.problem("connect: " + ec.message());
      co_return;
    }
    const std::string key = planned.move == Move::unknown_key ? unknown_key_ : api_key_;
    const std::string full = raw_request(planned.sealed.body, key);
    const std::size_t head = full.size() - planned.sealed.body.size();
    std::string bytes;
    switch (planned.move) {
      case Move::connect_only: break;
      case Move::garbage: bytes = "\x16\x03\x01\x02\x00 not http at all\r\n\r\n"; break;
      case Move::partial_head: bytes = full.substr(0, planned.cut % head); break;
      case Move::partial_body: bytes = full.substr(0, head + planned.cut % planned.sealed.body.size()); break;
      default: bytes = full; break;
    }
    if (!bytes.empty()) {
      auto [ec, n] = co_await asio::async_write(socket, asio::buffer(bytes), asio::as_tuple(asio::use_awaitable));
      if (ec) result.problem("write: " + ec.message());
    }
    if (planned.move == Move::unknown_key) {
      // Read the answer to the end (Connection: close): a 401 before any stream.
      std::string answer;
      std::array<char, 4096> buffer{};
      for (;;) {
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(buffer), asio::as_tuple(asio::use_awaitable));
        answer.append(buffer.data(), n);
        if (ec) break;
      }
      if (!answer.starts_with("HTTP/1.1 401")) result.problem("unknown key answered " + answer.substr(0, 40));
    } else if (planned.move != Move::send_then_close) {
      co_await pause(planned.pause);
    }
    boost::system::error_code ignored;
    socket.close(ignored);
  }

  // The moves that speak HTTP correctly and then leave, with http::HttpClient.
  http::awaitable<void> with_client(const PlannedClient& planned, http::HttpClient& client, StormResult& result) {
    auto request = http::make_request(http::Verb::post, "/rvenc/chat/completions", planned.sealed.body);
    request.set(http::beast::http::field::authorization, "Bearer " + api_key_);
    http::Timeouts timeouts;
    timeouts.idle = 20s;
    auto opened = co_await client.open(url_, std::move(request), timeouts);
    if (!opened) {
      result.problem("open: " + opened.error().to_string());
      co_return;
    }
    auto& stream = **opened;
    const std::string request_id(stream.header()["X-Request-Id"]);
    {
      std::lock_guard lock(result.mutex);
      result.request_ids[request_id] = planned.move;
    }
    if (stream.status() != 200) {
      result.problem("status " + std::to_string(stream.status()));
      stream.cancel();
      co_return;
    }
    std::string body;
    const std::size_t events_wanted = planned.move == Move::read_events ? 1 + planned.cut % 4 : 0;
    while (planned.move != Move::read_head) {
      auto chunk = co_await stream.read_some();
      if (!chunk) {
        result.problem("read: " + chunk.error().to_string());
        co_return;
      }
      if (!*chunk) break;
      body += **chunk;
      std::size_t events = 0;
      for (auto at = body.find("\n\n"); at != std::string::npos; at = body.find("\n\n", at + 2)) ++events;
      if (planned.move == Move::read_events && events >= events_wanted) break;
    }
    if (planned.move == Move::read_all) {
      auto opened_stream = gw::open_stream(planned.sealed, rvenc::test::sse_events(body));
      if (!opened_stream) result.problem("stream does not open: " + opened_stream.error().to_string());
      co_return;
    }
    co_await pause(planned.pause);
    stream.cancel();
  }

  http::Url url_;
  std::string api_key_;
  std::string unknown_key_ = gateway::generate_api_key(gateway::KeyEnv::live);
  client::EncryptionKeys keys_;
};

std::size_t active_streams(const std::string& gateway_url) {
  auto metrics = http::fetch("GET", gateway_url + "/metrics");
  if (!metrics) return ~std::size_t{0};
  const std::string name = "\nrvenc_gateway_active_streams ";
  const auto at = metrics->body().find(name);
  return at == std::string::npos ? ~std::size_t{0} : std::stoul(metrics->body().substr(at + name.size()));
}

// A leak of a connection's 16 KiB read buffer (or anything larger than ~8 KiB per client) would
// grow the gateway by more than this over 1,000 clients. Allocator caches may legitimately keep
// some of the peak (64 open streams at ~30 KiB each is ~2 MiB) after the storm; the warm-up storm
// with the same mix has already grown them once.
constexpr long kRssToleranceKib = 8 * 1024;

TEST_F(FaultTest, ThousandClientsDisconnectingAtRandomLeaveNoLeak) {
  ASSERT_NO_FATAL_FAILURE(start_enclave(5));
  ASSERT_NO_FATAL_FAILURE(start_gateway());
  const Processes processes{gateway->pid(), enclave->pid(), enclave_port, Storm::kConcurrency, std::nullopt, 0};
  std::set<std::string> ids;
  // A client of its own, gone (with its pooled connection to the gateway) before the baseline.
  const auto keys = make_client().generate_encryption_keys();
  ASSERT_TRUE(keys) << keys.error().to_string();
  Storm storm(gateway_url, api_key, *keys);

  StormResult warm_up;
  std::size_t authenticated_total = storm.run(200, 1, warm_up);
  ASSERT_EQ(warm_up.failures.load(), 0u) << join(warm_up.problems);
  Census gateway_baseline, enclave_baseline;
  ASSERT_TRUE(take_baselines(processes, gateway_baseline, enclave_baseline))
      << unaccounted(processes, gateway_baseline, enclave_baseline);
  const long rss_baseline = rss_kib(gateway->pid());

  StormResult stormed;
  authenticated_total += storm.run(1000, 20261126, stormed);
  EXPECT_EQ(stormed.failures.load(), 0u) << join(stormed.problems);

  EXPECT_EQ(wait_for_rest(processes, gateway_baseline, enclave_baseline), "");
  // The gauge drops when a stream's settle step has run, which may come after its sockets closed.
  wait_until([&] { return active_streams(gateway_url) == 0u; });
  EXPECT_EQ(active_streams(gateway_url), 0u);
  const long rss_after = rss_kib(gateway->pid());
  std::cout << "storm: " << authenticated_total << " requests authenticated; gateway VmRSS " << rss_baseline
            << " -> " << rss_after << " KiB\n";
#ifndef __SANITIZE_ADDRESS__  // ASan keeps freed memory in quarantine; LeakSanitizer checks at exit instead
  EXPECT_LE(rss_after, rss_baseline + kRssToleranceKib) << "gateway VmRSS " << rss_baseline << " -> " << rss_after << " KiB";
#endif

  // One usage row per request that reached authentication, and no other.
  Database database(db);
  std::map<std::string, int> rows;
  wait_until([&] { return (rows = database.usage()).size() >= authenticated_total; });
  std::this_thread::sleep_for(3 * gateway::kUsageFlushInterval);
  rows = database.usage();
  EXPECT_EQ(rows.size(), authenticated_total);
  for (const auto& [id, status] : rows) EXPECT_TRUE(status == 200 || status == gateway::kStatusClientClosed) << id << " " << status;
  for (const auto* storm_result : {&warm_up, &stormed})
    for (const auto& [id, move] : storm_result->request_ids) {
      ASSERT_TRUE(rows.contains(id)) << "no usage row for " << id;
      if (move == Move::read_all) {
        EXPECT_EQ(rows.at(id), 200) << id;
      }
    }
  EXPECT_EQ(database.integrity_check(), "ok");

  // Both processes still serve a normal request.
  const auto complete = call(make_client(), chat_request(4), ids);
  EXPECT_TRUE(complete) << complete.error().to_string();
}

}  // namespace
}  // namespace rvenc::fault

// --- several enclaves: a replica killed or stopped under load (issue 28) ---------------------------

namespace rvenc::fault {
namespace {

// Two replicas of the demo model behind one gateway: the first is the fixture's `enclave`, the
// second has a key file of its own and the same platform key.
class ReplicaFaultTest : public FaultTest {
 protected:
  void start_replicas() {
    ASSERT_NO_FATAL_FAILURE(start_enclave(kTokenDelayMs));
    std::vector<std::string> argv{test::rvenc_binary(), "enclave", "--attestation", "simulated", "--listen", "127.0.0.1:0",
                                  "--key-file", dir.file("enclave-2.key"), "--platform-key", dir.file("platform.key"),
                                  "--gateway-token-file", dir.file("gateway.token"), "--demo-delay-ms",
                                  std::to_string(kTokenDelayMs)};
    second = std::make_unique<test::ChildProcess>(argv);
    auto url = second->wait_for_url();
    ASSERT_TRUE(url) << second->output();
    second_url = *url;
    auto created = gw::run_cli({"keys", "create", "--db", db, "--name", "fault"});
    ASSERT_EQ(created.exit_code, 0) << created.out;
    api_key = created.out.substr(0, created.out.find('\n'));
    gateway = gw::start_gateway({enclave_url, second_url}, db, dir.file("gateway.token"));
    auto gateway_listening = gateway->wait_for_url();
    ASSERT_TRUE(gateway_listening) << gateway->output();
    gateway_url = *gateway_listening;
  }

  // Both replicas answer: the reference answer, and the SDK has the keys of both.
  void warm_up(const client::Client& client, const json::object& request, std::set<std::string>& ids,
               std::string& complete) {
    auto answer = call(client, request, ids);
    ASSERT_TRUE(answer) << answer.error().to_string();
    complete = *answer;
    ASSERT_EQ(client.encryption_keys_for("rvenc-demo").size(), 2u) << "attestation with all=1 gave both replicas";
  }

  // Every request in `ids` (answered, streamed) has exactly one usage row; the other rows are of
  // requests the gateway refused before any event (the 503s the SDK re-sent after), never 200.
  void expect_usage_once_per_answer(const std::set<std::string>& ids) {
    Database database(db);
    std::map<std::string, int> rows;
    wait_until([&] { return (rows = database.usage()).size() >= ids.size(); });
    std::this_thread::sleep_for(3 * gateway::kUsageFlushInterval);
    rows = database.usage();
    for (const auto& id : ids) EXPECT_TRUE(rows.contains(id)) << "no usage row for " << id;
    for (const auto& [id, status] : rows) {
      if (!ids.contains(id)) {
        EXPECT_NE(status, 200) << "a usage row of status 200 for a request no call saw: " << id;
      }
    }
    EXPECT_EQ(database.integrity_check(), "ok");
  }

  void TearDown() override {
    if (second && second->running()) {
      EXPECT_EQ(second->stop(SIGTERM), 0) << second->output();
    }
    FaultTest::TearDown();
  }

  std::unique_ptr<test::ChildProcess> second;
  std::string second_url;
};

// kill -9 one replica while 32 streams run on both: every call ends (whole, or with a typed error
// and an authenticated prefix), every call started after the kill is served by the other replica,
// and usage has exactly one row per request the gateway answered.
TEST_F(ReplicaFaultTest, ReplicaKilledUnderLoadNewRequestsMoveToTheOther) {
  ASSERT_NO_FATAL_FAILURE(start_replicas());
  std::set<std::string> ids;
  auto client = make_client();
  const json::object request = chat_request(kStreamTokens);
  std::string complete;
  ASSERT_NO_FATAL_FAILURE(warm_up(client, request, ids, complete));

  SdkLoad load(client, request);
  load.launch(kConcurrentStreams);
  ASSERT_TRUE(wait_until([&] { return load.streaming() == kConcurrentStreams || load.finished() > 0; }));
  EXPECT_EQ(enclave->stop(SIGKILL), 128 + SIGKILL);
  SdkLoad late(client, request);
  late.launch(16);

  std::size_t interrupted = 0;
  for (const auto& r : load.finish()) {
    if (!r.request_id.empty()) ids.insert(r.request_id);
    if (!r.error) {
      EXPECT_EQ(r.text, complete) << "a success must be the whole answer";
      continue;
    }
    ++interrupted;
    EXPECT_TRUE(r.error->code == Errc::upstream_error || r.error->code == Errc::truncated_stream)
        << r.error->to_string();
    EXPECT_TRUE(complete.starts_with(r.text));
  }
  EXPECT_GT(interrupted, 0u) << "the kill hit no stream (the load did not spread)";
  for (const auto& r : late.finish()) {
    EXPECT_FALSE(r.error) << "a request started after the kill failed: " << r.error->to_string();
    EXPECT_EQ(r.text, complete);
    ids.insert(r.request_id);
  }
  expect_usage_once_per_answer(ids);
}

// SIGTERM to one replica under load: its streams finish (graceful drain), and the calls started
// meanwhile are all served (by the other replica once this one refuses or is gone).
TEST_F(ReplicaFaultTest, ReplicaSigtermUnderLoadFinishesItsStreamsAndTheOtherServesNewOnes) {
  ASSERT_NO_FATAL_FAILURE(start_replicas());
  std::set<std::string> ids;
  auto client = make_client();
  const json::object request = chat_request(kStreamTokens);
  std::string complete;
  ASSERT_NO_FATAL_FAILURE(warm_up(client, request, ids, complete));

  SdkLoad load(client, request);
  load.launch(kConcurrentStreams);
  ASSERT_TRUE(wait_until([&] { return load.streaming() == kConcurrentStreams; }));
  enclave->signal(SIGTERM);
  SdkLoad late(client, request);
  late.launch(16);
  EXPECT_EQ(enclave->stop(0, 30s), 0) << enclave->output();  // signal 0: only waits
  for (auto* batch : {&load, &late})
    for (const auto& r : batch->finish()) {
      EXPECT_FALSE(r.error) << r.error->to_string();
      EXPECT_EQ(r.text, complete);
      ids.insert(r.request_id);
    }
  expect_usage_once_per_answer(ids);
}

}  // namespace
}  // namespace rvenc::fault
