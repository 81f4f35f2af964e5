// The enclave's evidence queue is bounded: attestation requests beyond
// ServiceOptions::max_attestation_queue get 503 overloaded at once instead of waiting behind a
// slow (hardware) provider.
#include <atomic>
#include <chrono>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include "enclave_test_support.hpp"
#include "rvenc/enclave/service.hpp"

namespace rvenc::enclave {
namespace {

using namespace std::chrono_literals;

// Evidence that takes `delay` per report, one at a time, like a real platform.
class SlowProvider final : public AttestationProvider {
 public:
  explicit SlowProvider(std::chrono::milliseconds delay) : delay_(delay) {}
  [[nodiscard]] std::string_view name() const override { return "sev-snp"; }
  [[nodiscard]] std::span<const std::uint8_t> measurement() const override { return measurement_; }
  [[nodiscard]] Result<std::vector<std::uint8_t>> evidence(const protocol::ReportData& report_data) override {
    std::this_thread::sleep_for(delay_);
    ++reports;
    return std::vector<std::uint8_t>(report_data.begin(), report_data.end());
  }
  std::atomic<int> reports{0};

 private:
  std::chrono::milliseconds delay_;
  std::array<std::uint8_t, 48> measurement_{};
};

TEST(AttestationQueue, RequestsBeyondTheBoundAreOverloadedAtOnce) {
  crypto::XWingSeed seed;
  crypto::random_bytes(seed.span());
  auto provider = std::make_shared<SlowProvider>(200ms);
  ServiceOptions options;
  options.max_attestation_queue = 3;
  std::map<std::string, std::shared_ptr<Engine>> engines;
  engines["rvenc-demo"] = std::make_shared<DemoEngine>();
  EnclaveService service(options, std::make_shared<EnclaveKey>(seed, 2'000'000'000), provider, std::move(engines));
  const auto router = service.router();

  // Eight requests at once, on one thread: each reaches the queue before any report is done.
  constexpr int kRequests = 8;
  std::vector<http::RecordingWriter> writers(kRequests);
  std::vector<http::Request> requests;
  for (int i = 0; i < kRequests; ++i)
    requests.emplace_back(http::Verb::get, "/rvenc/attestation?challenge=" + std::string(64, 'a'), http::kHttp11);
  boost::asio::io_context context;
  for (int i = 0; i < kRequests; ++i)
    boost::asio::co_spawn(context, router(requests[i], writers[i]), boost::asio::detached);
  context.run();

  int ok = 0;
  int overloaded = 0;
  for (const auto& writer : writers) {
    if (writer.status() == 200) ++ok;
    if (writer.status() == 503 && test::error_code_of(writer.body()) == "overloaded") {
      ++overloaded;
      EXPECT_EQ(writer.response->at(boost::beast::http::field::retry_after), "1");
    }
  }
  EXPECT_EQ(ok, 3);
  EXPECT_EQ(overloaded, kRequests - 3);
  EXPECT_EQ(provider->reports.load(), 3);

  // The queue drained: the next request gets its evidence.
  http::Request next{http::Verb::get, "/rvenc/attestation?challenge=" + std::string(64, 'b'), http::kHttp11};
  http::RecordingWriter writer;
  test::run_coroutine([&]() -> http::awaitable<void> { co_await router(next, writer); });
  EXPECT_EQ(writer.status(), 200u);
}

}  // namespace
}  // namespace rvenc::enclave
