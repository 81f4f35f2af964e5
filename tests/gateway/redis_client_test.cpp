#include <atomic>
#include <mutex>
#include <set>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include "redis_server.hpp"
#include "rvenc/gateway/redis_client.hpp"
#include "rvenc/gateway/redis_revocations.hpp"

namespace rvenc::gateway {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using test::eventually;
using test::RedisServer;
using test::run_sync;

// ---- URLs and RESP ----------------------------------------------------------------------------

TEST(RedisUrl, ParsesHostPortAndDatabase) {
  auto url = parse_redis_url("redis://127.0.0.1:6390/3");
  ASSERT_TRUE(url) << url.error().message;
  EXPECT_EQ(url->host, "127.0.0.1");
  EXPECT_EQ(url->port, 6390);
  EXPECT_EQ(url->db, 3);
  EXPECT_EQ(url->to_string(), "redis://127.0.0.1:6390/3");

  auto defaults = parse_redis_url("redis://cache.internal");
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults->port, kDefaultRedisPort);
  EXPECT_EQ(defaults->db, 0);
  auto v6 = parse_redis_url("redis://[::1]:7000/");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->to_string(), "redis://[::1]:7000/0");
}

TEST(RedisUrl, RejectsWhatItCannotUse) {
  for (const char* bad : {"http://127.0.0.1:6379", "rediss://h:1", "redis://:secret@h:6379", "redis://h:0",
                          "redis://h:99999", "redis://h/abc", "redis://h/-1", "redis://h/1/2", "redis://h?db=1",
                          "redis://", "not a url"}) {
    auto url = parse_redis_url(bad);
    ASSERT_FALSE(url) << bad;
    EXPECT_EQ(url.error().code, Errc::invalid_request) << bad;
    EXPECT_EQ(url.error().message.find("secret"), std::string::npos);
  }
}

TEST(Resp, EncodesCommandsAsBulkArrays) {
  EXPECT_EQ(encode_redis_command({"SET", "k", ""}).value(), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
  EXPECT_EQ(encode_redis_command({std::string("a\r\nb")}).value(), "*1\r\n$4\r\na\r\nb\r\n");
  EXPECT_EQ(encode_redis_command({std::string("\0x", 2)}).value(), std::string("*1\r\n$2\r\n\0x\r\n", 12));
  auto huge = encode_redis_command({std::string(kMaxRedisCommandBytes, 'x')});
  ASSERT_FALSE(huge);
  EXPECT_EQ(huge.error().code, Errc::invalid_request);
}

// Feeds `input` and returns every reply it completes (or the reader's error).
Result<std::vector<RedisValue>> read_all(RedisReplyReader& reader, std::string_view input) {
  if (auto fed = reader.feed(input); !fed) return std::unexpected(fed.error());
  std::vector<RedisValue> replies;
  for (;;) {
    auto reply = reader.next();
    if (!reply) return std::unexpected(reply.error());
    if (!*reply) return replies;
    replies.push_back(std::move(**reply));
  }
}

TEST(Resp, ParsesEveryType) {
  const std::string input = "*6\r\n+OK\r\n-NOSCRIPT No matching script\r\n:-42\r\n$5\r\nhe\r\no\r\n$-1\r\n*1\r\n*0\r\n";
  RedisReplyReader reader;
  auto replies = read_all(reader, input + "+next");
  ASSERT_TRUE(replies) << replies.error().message;
  ASSERT_EQ(replies->size(), 1u);
  EXPECT_GT(reader.buffered(), 0u);  // "+next" waits for its CRLF
  const auto& v = replies->front();
  ASSERT_EQ(v.type, RedisValue::Type::array);
  ASSERT_EQ(v.elements.size(), 6u);
  EXPECT_EQ(v.elements[0].type, RedisValue::Type::simple);
  EXPECT_EQ(v.elements[0].text, "OK");
  EXPECT_TRUE(v.elements[1].is_error("NOSCRIPT"));
  EXPECT_FALSE(v.elements[1].is_error("NOSCRIPTX"));
  EXPECT_FALSE(v.elements[1].is_error("NO"));
  EXPECT_EQ(v.elements[2].integer, -42);
  EXPECT_EQ(v.elements[3].text, "he\r\no");
  EXPECT_TRUE(v.elements[4].is_nil());
  EXPECT_EQ(v.elements[5].elements.size(), 1u);
  auto next = read_all(reader, "\r\n*-1\r\n");
  ASSERT_TRUE(next);
  ASSERT_EQ(next->size(), 2u);
  EXPECT_EQ((*next)[0].text, "next");
  EXPECT_TRUE((*next)[1].is_nil());
}

TEST(Resp, IncompleteInputAsksForMore) {
  const std::string whole = "*2\r\n$5\r\nhello\r\n:7\r\n";
  RedisReplyReader reader;
  for (std::size_t n = 0; n + 1 < whole.size(); ++n) {
    auto replies = read_all(reader, whole.substr(n, 1));
    ASSERT_TRUE(replies) << n;
    EXPECT_TRUE(replies->empty()) << n;
  }
  auto replies = read_all(reader, whole.substr(whole.size() - 1));
  ASSERT_TRUE(replies);
  ASSERT_EQ(replies->size(), 1u);
  EXPECT_EQ(replies->front().elements[0].text, "hello");
  EXPECT_EQ(replies->front().elements[1].integer, 7);
}

TEST(Resp, MalformedInputIsAnError) {
  for (const char* bad : {"?x\r\n", ":12a\r\n", ":\r\n", "$-2\r\n", "$3\r\nabcd\r\n", "*-5\r\n", "\r\n"}) {
    RedisReplyReader reader;
    auto replies = read_all(reader, bad);
    ASSERT_FALSE(replies) << bad;
    EXPECT_EQ(replies.error().code, Errc::upstream_error) << bad;
    EXPECT_FALSE(reader.next()) << "a failed reader stays failed: " << bad;
  }
  std::string deep;  // hiredis parses 7 levels below the top reply
  for (int i = 0; i < 10; ++i) deep += "*1\r\n";
  deep += ":1\r\n";
  RedisReplyReader reader;
  EXPECT_FALSE(read_all(reader, deep));
}

// hiredis 0.14 would allocate whatever element count a server announces (32 GiB for this one).
TEST(Resp, HugeArrayCountIsRefusedBeforeAllocating) {
  RedisReplyReader reader;
  auto replies = read_all(reader, "*2000000000\r\n");
  ASSERT_FALSE(replies);
  EXPECT_NE(replies.error().message.find("2000000000 elements"), std::string::npos) << replies.error().message;
  RedisReplyReader nested;
  EXPECT_FALSE(read_all(nested, "*1\r\n*" + std::to_string(kMaxRedisArrayElements + 1) + "\r\n"));
  RedisReplyReader fits;
  std::string at_limit = "*" + std::to_string(kMaxRedisArrayElements) + "\r\n";
  for (std::size_t i = 0; i < kMaxRedisArrayElements; ++i) at_limit += ":1\r\n";
  auto ok = read_all(fits, at_limit);
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->front().elements.size(), kMaxRedisArrayElements);
}

// A bulk string announced huge and streamed: the reader stops buffering at the bound.
TEST(Resp, HugeBulkStringIsBoundedWhileItArrives) {
  RedisReplyReader reader;
  ASSERT_TRUE(read_all(reader, "$99999999999\r\n"));
  const std::string chunk(64 * 1024, 'x');
  std::size_t fed = 0;
  Result<std::vector<RedisValue>> replies;
  while ((replies = read_all(reader, chunk)) && fed < 2 * kMaxRedisReplyBytes) fed += chunk.size();
  ASSERT_FALSE(replies);
  EXPECT_LE(fed, kMaxRedisReplyBytes);
  EXPECT_LE(reader.buffered(), kMaxRedisReplyBytes);
  EXPECT_NE(replies.error().message.find("larger than 16 MiB"), std::string::npos) << replies.error().message;
  // Many small replies in one stream are not one large reply.
  RedisReplyReader many;
  std::size_t count = 0;
  for (int i = 0; i < 600; ++i) {
    auto some = read_all(many, "$" + std::to_string(chunk.size()) + "\r\n" + chunk + "\r\n");
    ASSERT_TRUE(some) << some.error().message;
    count += some->size();
  }
  EXPECT_EQ(count, 600u);
}

// ---- the client against a real redis-server ---------------------------------------------------

TEST(RedisClient, CommandsAndErrorReplies) {
  RedisServer server;
  ASSERT_TRUE(server.ready());
  RedisClient client(server.options());
  auto set = client.command_sync({"SET", "greeting", "hello\r\nworld"});
  ASSERT_TRUE(set) << set.error().message;
  EXPECT_EQ(set->text, "OK");
  auto get = client.command_sync({"GET", "greeting"});
  ASSERT_TRUE(get);
  EXPECT_EQ(get->type, RedisValue::Type::bulk);
  EXPECT_EQ(get->text, "hello\r\nworld");
  EXPECT_TRUE(client.command_sync({"GET", "missing"})->is_nil());
  auto wrong = client.command_sync({"NOSUCHCOMMAND"});
  ASSERT_TRUE(wrong);  // an error reply is a value
  EXPECT_TRUE(wrong->is_error("ERR"));
  // The connection is still usable after an error reply.
  EXPECT_EQ(client.command_sync({"PING"})->text, "PONG");
}

TEST(RedisClient, SelectsTheDatabaseFromTheUrl) {
  RedisServer server;
  ASSERT_TRUE(server.ready());
  RedisClient db3(server.options(3));
  RedisClient db0(server.options(0));
  ASSERT_TRUE(db3.command_sync({"SET", "where", "three"}));
  EXPECT_TRUE(db0.command_sync({"GET", "where"})->is_nil());
  EXPECT_EQ(db3.command_sync({"GET", "where"})->text, "three");
  RedisOptions bad = server.options(0);
  bad.url.db = 100000;  // beyond the server's 16 databases
  RedisClient unusable(bad);
  auto reply = unusable.command_sync({"PING"});
  ASSERT_FALSE(reply);
  EXPECT_NE(reply.error().message.find("SELECT"), std::string::npos) << reply.error().message;
}

TEST(RedisClient, ConcurrentCallersArePipelinedAndMatchedInOrder) {
  RedisServer server;
  ASSERT_TRUE(server.ready());
  RedisClient client(server.options());
  constexpr int kCallers = 200;
  asio::io_context context;
  std::mutex mutex;
  std::vector<std::int64_t> seen;
  std::atomic<int> failures{0};
  for (int i = 0; i < kCallers; ++i) {
    asio::co_spawn(
        context,
        [&, i]() -> asio::awaitable<void> {
          // Each caller also reads back its own key: a mismatched reply would show.
          // (Commands built before co_await: GCC 12 rejects string literals in braces there.)
          std::vector<std::string> set{"SET", "k" + std::to_string(i), std::to_string(i)};
          std::vector<std::string> incr{"INCR", "counter"};
          std::vector<std::string> get{"GET", "k" + std::to_string(i)};
          auto mine = co_await client.command(std::move(set));
          auto count = co_await client.command(std::move(incr));
          auto back = co_await client.command(std::move(get));
          if (!mine || !count || !back || back->text != std::to_string(i)) {
            ++failures;
            co_return;
          }
          std::lock_guard lock(mutex);
          seen.push_back(count->integer);
        },
        asio::detached);
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([&] { context.run(); });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures, 0);
  ASSERT_EQ(seen.size(), static_cast<std::size_t>(kCallers));
  std::set<std::int64_t> distinct(seen.begin(), seen.end());
  EXPECT_EQ(distinct.size(), static_cast<std::size_t>(kCallers));
  EXPECT_EQ(*distinct.rbegin(), kCallers);
}

TEST(RedisClient, UnreachableServerFailsWithoutHanging) {
  RedisOptions options;
  options.url = RedisUrl{"127.0.0.1", static_cast<std::uint16_t>(rvenc::test::free_port()), 0};
  RedisClient client(options);
  for (int i = 0; i < 3; ++i) {
    auto reply = client.command_sync({"PING"});
    ASSERT_FALSE(reply);
    EXPECT_EQ(reply.error().code, Errc::upstream_error);
    EXPECT_NE(reply.error().message.find(options.url.to_string()), std::string::npos) << reply.error().message;
  }
}

TEST(RedisClient, SilentServerTimesOut) {
  // A listener that accepts and never answers.
  asio::io_context context;
  asio::ip::tcp::acceptor acceptor(context, {asio::ip::make_address("127.0.0.1"), 0});
  asio::ip::tcp::socket accepted(context);
  acceptor.async_accept(accepted, [](boost::system::error_code) {});
  std::thread thread([&] { context.run(); });
  RedisOptions options;
  options.url = RedisUrl{"127.0.0.1", acceptor.local_endpoint().port(), 0};
  options.command_timeout = 200ms;
  {
    RedisClient client(options);
    auto reply = client.command_sync({"PING"});
    ASSERT_FALSE(reply);
    EXPECT_EQ(reply.error().code, Errc::upstream_timeout);
  }
  asio::post(context, [&] {
    acceptor.close();
    accepted.close();
  });
  thread.join();
}

// A hostile "Redis" that answers every command with a bulk string announced at 90 GiB and
// streams bytes for as long as the client reads: the command fails with upstream_error once
// the reply passes the bound (no memory exhaustion, no waiting for the whole string).
TEST(RedisClient, HostileServerStreamingAHugeReplyIsCutOff) {
  asio::io_context context;
  asio::ip::tcp::acceptor acceptor(context, {asio::ip::make_address("127.0.0.1"), 0});
  std::atomic<std::size_t> sent{0};
  asio::co_spawn(
      context,
      [&]() -> asio::awaitable<void> {
        auto socket = co_await acceptor.async_accept(asio::use_awaitable);
        const std::string header = "$99999999999\r\n";
        const std::string body(256 * 1024, 'x');
        co_await asio::async_write(socket, asio::buffer(header), asio::use_awaitable);
        for (;;) {  // ends with an exception when the client closes the connection
          co_await asio::async_write(socket, asio::buffer(body), asio::use_awaitable);
          sent += body.size();
        }
      },
      asio::detached);
  std::thread thread([&] { context.run(); });
  RedisOptions options;
  options.url = RedisUrl{"127.0.0.1", acceptor.local_endpoint().port(), 0};
  options.command_timeout = 20s;  // the bound, not the timeout, must end it
  {
    RedisClient client(options);
    auto reply = client.command_sync({"GET", "k"});
    ASSERT_FALSE(reply);
    EXPECT_EQ(reply.error().code, Errc::upstream_error);
    EXPECT_NE(reply.error().message.find("larger than 16 MiB"), std::string::npos) << reply.error().message;
  }
  EXPECT_LT(sent.load(), 3 * kMaxRedisReplyBytes);
  asio::post(context, [&] { acceptor.close(); });
  context.stop();
  thread.join();
}

TEST(RedisClient, ReconnectsAfterTheServerRestarts) {
  RedisServer server;
  ASSERT_TRUE(server.ready());
  RedisOptions options = server.options(2);
  RedisClient client(options);
  ASSERT_TRUE(client.command_sync({"SET", "before", "1"}));
  server.kill();
  auto down = client.command_sync({"GET", "before"});
  ASSERT_FALSE(down);
  EXPECT_EQ(down.error().code, Errc::upstream_error);
  server.start();
  ASSERT_TRUE(server.ready());
  EXPECT_TRUE(eventually([&] {
    auto reply = client.command_sync({"SET", "after", "1"});
    return reply && reply->text == "OK";
  }));
  // The reconnected connection selected database 2 again.
  RedisClient db2(server.options(2));
  EXPECT_EQ(db2.command_sync({"GET", "after"})->text, "1");
}

// ---- pub/sub revocations ----------------------------------------------------------------------

struct Received {
  std::mutex mutex;
  std::vector<std::string> ids;
  std::atomic<int> resyncs{0};
  bool has(const std::string& id) {
    std::lock_guard lock(mutex);
    return std::find(ids.begin(), ids.end(), id) != ids.end();
  }
  std::size_t count() {
    std::lock_guard lock(mutex);
    return ids.size();
  }
};

TEST(RedisRevocations, PublishedRevocationsReachEverySubscriber) {
  RedisServer server;
  ASSERT_TRUE(server.ready());
  Received a, b;
  auto record = [](Received& r) { return [&r](const std::string& id) { std::lock_guard lock(r.mutex); r.ids.push_back(id); }; };
  RevocationSubscriber sub_a(server.options(), record(a), [&] { ++a.resyncs; });
  RevocationSubscriber sub_b(server.options(1), record(b), [&] { ++b.resyncs; });
  ASSERT_TRUE(sub_a.wait_subscribed(20s));
  ASSERT_TRUE(sub_b.wait_subscribed(20s));
  EXPECT_EQ(a.resyncs, 1);

  auto published = publish_revocation(server.options(), "key_0123456789abcdef");
  ASSERT_TRUE(published) << published.error().message;
  EXPECT_EQ(*published, 2);
  EXPECT_TRUE(eventually([&] { return a.has("key_0123456789abcdef") && b.has("key_0123456789abcdef"); }));

  // Junk on the channel is ignored, the key id is validated before publishing.
  RedisClient client(server.options());
  ASSERT_TRUE(client.command_sync({"PUBLISH", std::string(kRevocationChannel), "not a key id!"}));
  EXPECT_FALSE(publish_revocation(server.options(), std::string(200, 'k')));
  ASSERT_TRUE(publish_revocation(server.options(), "key_fedcba9876543210"));
  EXPECT_TRUE(eventually([&] { return a.has("key_fedcba9876543210"); }));
  EXPECT_EQ(a.count(), 2u);
}

TEST(RedisRevocations, SubscriberResubscribesAfterRedisRestarts) {
  RedisServer server;
  ASSERT_TRUE(server.ready());
  Received r;
  RevocationSubscriber subscriber(
      server.options(), [&](const std::string& id) { std::lock_guard lock(r.mutex); r.ids.push_back(id); },
      [&] { ++r.resyncs; });
  ASSERT_TRUE(subscriber.wait_subscribed(20s));
  server.kill();
  EXPECT_TRUE(eventually([&] { return !subscriber.subscribed(); }));
  auto down = publish_revocation(server.options(), "key_0000000000000001");
  EXPECT_FALSE(down);
  server.start();
  ASSERT_TRUE(server.ready());
  EXPECT_TRUE(subscriber.wait_subscribed(30s));
  EXPECT_GE(r.resyncs, 2);  // told to re-read the database: it may have missed revocations
  ASSERT_TRUE(eventually([&] {
    auto sent = publish_revocation(server.options(), "key_0000000000000002");
    return sent && *sent == 1;
  }));
  EXPECT_TRUE(eventually([&] { return r.has("key_0000000000000002"); }));
}

}  // namespace
}  // namespace rvenc::gateway
