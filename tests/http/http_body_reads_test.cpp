// How many reads a large response body takes through http::HttpClient::open (issue 26, the embeddings
// latency): an upstream that sends its whole answer at once and then neither closes nor sends
// more. The body must end on its Content-Length (or the chunked end) with the connection still
// open, in a few reads: each read is a turn of the event loop, and the 4 KiB reads this replaced
// made a 200 KiB answer wait for 50 turns of a busy loop. The reads are counted, never timed.
#include <future>
#include <string>

#include <gtest/gtest.h>

#include "http/wire.hpp"
#include "http_test_util.hpp"

namespace rvenc::http {
namespace {

using namespace test;

constexpr auto kStayOpen = CannedServer::AfterAnswer::stay_open;  // the upstream neither closes nor sends more

std::string json_like_body(std::size_t size) {
  std::string body;
  while (body.size() < size) body += "-2.3299999999999998E-1,";
  body.resize(size);
  return body;
}

struct Counted {
  std::string body;
  int reads = 0;  // reads that handed out body bytes
  bool ended = false;
  bool finished = false;
};

// Opens GET / on `url`, waits until the server sent everything, then reads the body to its end.
Counted read_whole_body(const Url& url, std::future<void>& sent) {
  Counted counted;
  run_coroutine([&]() -> awaitable<void> {
    HttpClient client;
    auto stream = co_await client.open(url, make_request(Verb::get, "/"));
    EXPECT_TRUE(stream) << (stream ? "" : stream.error().to_string());
    if (!stream) co_return;
    sent.wait();
    for (;;) {
      auto bytes = co_await (*stream)->read_some();
      EXPECT_TRUE(bytes) << (bytes ? "" : bytes.error().to_string());
      if (!bytes) co_return;
      if (!*bytes) break;
      counted.body += **bytes;
      ++counted.reads;
    }
    counted.ended = true;
    counted.finished = (*stream)->finished();
  });
  return counted;
}

// The body arrived whole, ended (finished) while the server kept the connection open, in at most
// `max_reads` reads.
void expect_whole_body_in(const Counted& counted, const std::string& body, int max_reads) {
  EXPECT_TRUE(counted.ended);
  EXPECT_TRUE(counted.finished);
  EXPECT_EQ(counted.body, body);
  EXPECT_LE(counted.reads, max_reads);
}

// 48 KiB with a Content-Length (an embeddings answer is 50-200 KiB; 48 KiB stays within any
// loopback receive window, so all of it is in the client's socket when reading starts): what the
// first read of the head did not bring comes in one read. The old reads took 4 KiB each (12).
TEST(ClientBodyReads, ContentLengthBodyEndsInOneReadWithTheConnectionOpen) {
  const std::string body = json_like_body(48 * 1024);
  CannedServer server("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body,
                      kStayOpen);
  // The part the head's read brought, then the rest at once.
  expect_whole_body_in(read_whole_body(server.url, server.sent), body, 2);
}

// The same amount chunked (no length known): reads double after each one that filled its space
// (4, 8, 16, 32 KiB ...), so 48 KiB takes a handful of reads, not 12.
TEST(ClientBodyReads, ChunkedBodyReadsGrowWhileTheyComeFull) {
  std::string wire = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
  std::string body;
  for (int i = 0; i < 48; ++i) {
    const std::string part = json_like_body(1024);
    body += part;
    wire += "400\r\n" + part + "\r\n";
  }
  wire += "0\r\n\r\n";
  CannedServer server(std::move(wire), kStayOpen);
  expect_whole_body_in(read_whole_body(server.url, server.sent), body, 5);
}

// A stream of small events keeps small reads (memory per open stream): the space only grows
// after reads that came full.
TEST(ClientBodyReads, ReadSpaceGrowsOnlyAfterFullReads) {
  detail::BodyReadSpace space;
  EXPECT_EQ(space.next(4096, boost::none), 4096U);
  space.read(4096, 100);
  EXPECT_EQ(space.next(4096, boost::none), 4096U);
  space.read(4096, 4096);
  EXPECT_EQ(space.next(4096, boost::none), 8192U);
  for (int i = 0; i < 10; ++i) space.read(space.next(4096, boost::none), space.next(4096, boost::none));
  EXPECT_EQ(space.next(4096, boost::none), detail::kMaxReadSpace);
  // A known remainder is read whole, up to the bound.
  detail::BodyReadSpace fresh;
  EXPECT_EQ(fresh.next(4096, 150'000), 150'000U);
  EXPECT_EQ(fresh.next(4096, 100), 4096U);
  EXPECT_EQ(fresh.next(4096, std::uint64_t{1} << 40), detail::kMaxKnownBodyReadSpace);
}

}  // namespace
}  // namespace rvenc::http
