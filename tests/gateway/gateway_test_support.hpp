// Real-process fixtures for the gateway tests: an enclave (`rvenc enclave --attestation
// simulated`), a gateway in front of it, and a small client that seals version 3 requests with the
// core library and talks HTTP with rvenc_http.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "rvenc/gateway/key_store.hpp"
#include "rvenc/http/client.hpp"
#include "rvenc/protocol/attestation.hpp"
#include "rvenc/protocol/sealing.hpp"
#include "rvenc/protocol/sse.hpp"
#include "support/test_support.hpp"

namespace rvenc::gateway::test_support {

struct CliResult {
  int exit_code = -1;
  std::string out;
};
// Runs `rvenc <args>` and captures its stdout (stderr goes to the test log).
CliResult run_cli(const std::vector<std::string>& args);
// Runs `command` with /bin/sh and captures its stdout (e.g. curl).
CliResult run_shell(const std::string& command);

std::unique_ptr<test::ChildProcess> start_enclave(const test::TempDir& dir, long long demo_delay_ms = 0,
                                                  const std::vector<std::string>& extra_args = {});
std::unique_ptr<test::ChildProcess> start_gateway(const std::vector<std::string>& enclave_urls, const std::string& db,
                                                  const std::string& token_file,
                                                  const std::vector<std::string>& extra_args = {});

using Sealed = test::SealedRequest;
// Fetches and verifies the attestation through `gateway_url` (simulated, signed by the platform
// key in `platform_key_file`); throws when it does not verify.
protocol::AttestationDocument attest(const std::string& gateway_url, const std::string& platform_key_file);
// attest(), then seals a chat request for the first model.
Sealed seal_chat(const std::string& gateway_url, const std::string& platform_key_file, const std::string& prompt = "Hello",
                 protocol::Version version = protocol::Version::v3);
// The first model of GET /rvenc/models through `gateway_url`; throws when there is none.
std::string first_model(const std::string& gateway_url);
// A chat request for `model` sealed to an attestation verified before (many requests, one attestation:
// GET /rvenc/attestation without an API key is rate-limited per client address).
Sealed seal_chat(const protocol::AttestationDocument& doc, const std::string& model, const std::string& prompt = "Hello",
                 protocol::Version version = protocol::Version::v3);

Result<http::Response> post_chat(const std::string& gateway_url, const std::string& body,
                                 std::optional<std::string> api_key);
// The SSE events of a response body.
// Decrypts an event stream; the concatenated plaintexts, or the error.
Result<std::string> open_stream(const Sealed& sealed, const std::vector<protocol::SseEvent>& events);
std::string error_code(const std::string& body);

// Sends `count` requests, the i-th through chat(i) (its status and error code): how many got 200;
// every other answer must be 429 rate_limit_exceeded (else the test fails).
int count_admitted(int count, const std::function<std::pair<unsigned, std::string>(int)>& chat);

// A TCP relay on 127.0.0.1 that passes what `target` sends back in slices of a few bytes, each in
// a send of its own (the other way whole): message and frame boundaries then fall anywhere in what
// a reader gets, so a relay that assumes whole pieces fails. A thread per connection and way.
class SlicingProxy {
 public:
  explicit SlicingProxy(std::uint16_t target_port);
  ~SlicingProxy();
  SlicingProxy(const SlicingProxy&) = delete;
  SlicingProxy& operator=(const SlicingProxy&) = delete;
  [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  void pump(int from, int to, bool sliced);
  std::uint16_t target_port_;
  std::uint16_t port_ = 0;
  int listener_ = -1;
  std::mutex mutex_;
  std::vector<int> sockets_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

// Usage rows of the key once `count` final ones exist (polling up to `timeout`; a stream's
// provisional row comes first).
// Polls `done` until it holds (true) or `guard` passed (false).
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds guard = std::chrono::seconds(20));

std::vector<UsageRow> wait_for_usage(const std::string& db, const std::string& key_id, std::size_t count,
                                     std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace rvenc::gateway::test_support
