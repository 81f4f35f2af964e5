// The client SDK against an in-process fake gateway (real sockets, real crypto): streaming and
// non-streaming success, every stream failure, HTTP errors, key rotation, timeouts, attestation.
#include <gtest/gtest.h>

#include <atomic>
#include <ctime>
#include <functional>
#include <thread>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "fake_gateway.hpp"
#include "rvenc/client/client.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/http/url.hpp"
#include "support/tls_support.hpp"

namespace rvenc::client {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using test::chunk_json;
using test::FakeGateway;
using test::Reply;

json::object hello_request(std::string_view content = "Hello") {
  return json::object{{"model", "demo"}, {"messages", json::array{json::object{{"role", "user"}, {"content", content}}}}};
}

ClientOptions options_for(const FakeGateway& gateway) {
  ClientOptions options;
  options.api_key = std::string(FakeGateway::kApiKey);
  options.base_url = gateway.url();
  options.attestation.simulated_platform_key = gateway.platform_public_key();
  return options;
}

Client make_client(ClientOptions options) {
  auto client = create_client(std::move(options));
  if (!client) throw std::runtime_error(client.error().to_string());
  return std::move(*client);
}
Client client_for(const FakeGateway& gateway) { return make_client(options_for(gateway)); }

// A non-streaming async_create on `io` whose result lands in `out` (cancellable through `slot`).
void spawn_create(asio::io_context& io, const Client& client, std::optional<Result<json::object>>& out,
                  asio::cancellation_slot slot = {}) {
  asio::co_spawn(io, client.chat.completions.async_create(hello_request()),
                 asio::bind_cancellation_slot(slot, [&out](std::exception_ptr e, Result<json::object> r) {
                   out = e ? Result<json::object>(fail(Errc::internal_error, "exception")) : std::move(r);
                 }));
}

// Returns once `done()` holds, looking every 10 ms (polling, not timing).
http::awaitable<void> until(std::function<bool()> done) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!done()) {
    timer.expires_after(std::chrono::milliseconds(10));
    co_await timer.async_wait(asio::use_awaitable);
  }
}

// Collects streamed chunks' delta content.
struct Collected {
  std::vector<std::string> contents;
  ChunkHandler handler() {
    return [this](const Chunk& chunk) -> Status {
      const auto& delta = chunk.object.at("choices").as_array().at(0).as_object().at("delta").as_object();
      if (const auto* content = delta.if_contains("content"); content && content->is_string())
        contents.emplace_back(content->as_string());
      return {};
    };
  }
};

// Flips one hex digit of the payload of an SSE piece "event: k\ndata: <hex>\n\n".
std::string flip_payload(std::string piece) {
  const auto at = piece.size() - 4;
  piece[at] = piece[at] == '0' ? '1' : '0';
  return piece;
}

std::vector<std::string> three_chunks(protocol::ResponseSealer& sealer) {
  return FakeGateway::sealed(sealer, {chunk_json({{"role", "assistant"}, {"content", "Hel"}}), chunk_json({{"content", "lo"}}),
                                      chunk_json({{"content", "!"}}, "stop")});
}

TEST(ClientStream, StreamsDecryptedChunksInOrder) {
  FakeGateway gateway;
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    return Reply{.pieces = three_chunks(sealer)};
  });
  auto client = client_for(gateway);
  Collected collected;
  std::optional<ResponseMeta> meta;
  auto done = client.chat.completions.create(hello_request(), collected.handler(),
                                             {.on_response = [&](const ResponseMeta& m) { meta = m; }});
  ASSERT_TRUE(done) << done.error().to_string();
  EXPECT_EQ(collected.contents, (std::vector<std::string>{"Hel", "lo", "!"}));
  ASSERT_TRUE(meta);
  EXPECT_EQ(meta->status, 200u);
  // The fake decrypted exactly what we sent.
  EXPECT_EQ(json::serialize(gateway.last_request()), json::serialize(hello_request()));
  EXPECT_EQ(gateway.attestation_requests, 1);
}

TEST(ClientStream, NonStreamingAssemblesReasoningToolCallsAndUsage) {
  FakeGateway gateway;
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    json::object tool_start{{"index", 0}, {"id", "call_1"}, {"type", "function"},
                            {"function", {{"name", "get_weather"}, {"arguments", "{\"city\":"}}}};
    json::object tool_more{{"index", 0}, {"function", {{"arguments", "\"Paris\"}"}}}};
    std::string last = chunk_json({{"content", "."}}, "tool_calls");
    auto with_usage = json::parse(last).as_object();
    with_usage["usage"] = {{"prompt_tokens", 12}, {"completion_tokens", 5}, {"total_tokens", 17}};
    return Reply{.pieces = FakeGateway::sealed(
                     sealer, {chunk_json({{"role", "assistant"}, {"reasoning_content", "Think"}}),
                              chunk_json({{"reasoning_content", "ing"}}), chunk_json({{"content", "Let me check"}}),
                              chunk_json({{"tool_calls", json::array{tool_start}}}),
                              chunk_json({{"tool_calls", json::array{tool_more}}}), json::serialize(with_usage)})};
  });
  auto client = client_for(gateway);
  auto completion = client.chat.completions.create(hello_request());
  ASSERT_TRUE(completion) << completion.error().to_string();
  EXPECT_EQ(completion->at("object").as_string(), "chat.completion");
  const auto& choice = completion->at("choices").as_array().at(0).as_object();
  const auto& message = choice.at("message").as_object();
  EXPECT_EQ(message.at("content").as_string(), "Let me check.");
  EXPECT_EQ(message.at("reasoning_content").as_string(), "Thinking");
  const auto& call = message.at("tool_calls").as_array().at(0).as_object();
  EXPECT_EQ(call.at("id").as_string(), "call_1");
  EXPECT_EQ(call.at("function").at("name").as_string(), "get_weather");
  EXPECT_EQ(call.at("function").at("arguments").as_string(), "{\"city\":\"Paris\"}");
  EXPECT_EQ(choice.at("finish_reason").as_string(), "tool_calls");
  EXPECT_EQ(completion->at("usage").at("total_tokens").to_number<int>(), 17);
}

TEST(ClientStream, IgnoresCommentsAndUnknownEventKindsAndSplitsAnywhere) {
  FakeGateway gateway;
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    auto events = three_chunks(sealer);
    std::string all = ": keep-alive\n\nevent: usage\ndata: {\"prompt_tokens\":1}\n\n";
    for (const auto& e : events) all += e;
    // Re-cut the text into 7-byte pieces so events straddle writes.
    Reply reply;
    for (std::size_t i = 0; i < all.size(); i += 7) reply.pieces.push_back(all.substr(i, 7));
    return reply;
  });
  auto client = client_for(gateway);
  Collected collected;
  auto done = client.chat.completions.create(hello_request(), collected.handler());
  ASSERT_TRUE(done) << done.error().to_string();
  EXPECT_EQ(collected.contents, (std::vector<std::string>{"Hel", "lo", "!"}));
}

TEST(ClientStream, TamperedEventIsRejected) {
  FakeGateway gateway;
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    auto pieces = three_chunks(sealer);
    pieces[1] = flip_payload(pieces[1]);
    return Reply{.pieces = pieces};
  });
  auto client = client_for(gateway);
  Collected collected;
  auto done = client.chat.completions.create(hello_request(), collected.handler());
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error().code, Errc::tampered_stream) << done.error().to_string();
  EXPECT_EQ(collected.contents, (std::vector<std::string>{"Hel"}));  // what came before, nothing after
}

TEST(ClientStream, ReorderedEventsAreRejected) {
  FakeGateway gateway;
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    auto pieces = three_chunks(sealer);
    std::swap(pieces[0], pieces[1]);
    return Reply{.pieces = pieces};
  });
  auto client = client_for(gateway);
  auto completion = client.chat.completions.create(hello_request());
  ASSERT_FALSE(completion);
  EXPECT_EQ(completion.error().code, Errc::tampered_stream);
}

TEST(ClientStream, MissingDoneIsTruncated) {
  FakeGateway gateway;
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    auto pieces = three_chunks(sealer);
    pieces.pop_back();
    return Reply{.pieces = pieces};
  });
  auto client = client_for(gateway);
  Collected collected;
  auto done = client.chat.completions.create(hello_request(), collected.handler());
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error().code, Errc::truncated_stream);
  EXPECT_EQ(collected.contents.size(), 3u);
}

TEST(ClientStream, ConnectionCutMidStreamIsTruncated) {
  FakeGateway gateway;
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    auto pieces = three_chunks(sealer);
    pieces.pop_back();
    return Reply{.pieces = pieces, .cut = true};
  });
  auto client = client_for(gateway);
  auto completion = client.chat.completions.create(hello_request());
  ASSERT_FALSE(completion);
  EXPECT_EQ(completion.error().code, Errc::truncated_stream) << completion.error().to_string();
}

TEST(ClientStream, OversizeEventIsRejected) {
  FakeGateway gateway;
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    return Reply{.pieces = FakeGateway::sealed(sealer, {chunk_json({{"content", std::string(4096, 'x')}}, "stop")})};
  });
  auto options = options_for(gateway);
  options.max_buffer_size = 1024;
  auto client = make_client(options);
  auto completion = client.chat.completions.create(hello_request());
  ASSERT_FALSE(completion);
  EXPECT_EQ(completion.error().code, Errc::event_too_large);
  EXPECT_NE(completion.error().message.find("1024"), std::string::npos) << completion.error().message;
}

TEST(ClientStream, EncryptedErrorEventSurfacesTheEnclavesCode) {
  FakeGateway gateway;
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    Reply reply;
    reply.pieces.push_back(sealer.seal_event(protocol::EventKind::data, chunk_json({{"content", "partial"}})));
    reply.pieces.push_back(sealer.seal_event(protocol::EventKind::error,
                                             openai_error_body(Error{Errc::upstream_timeout, "the engine timed out"})));
    reply.pieces.push_back(sealer.seal_event(protocol::EventKind::done, "[DONE]"));
    return reply;
  });
  auto client = client_for(gateway);
  Collected collected;
  auto done = client.chat.completions.create(hello_request(), collected.handler());
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error().code, Errc::upstream_timeout);
  EXPECT_EQ(done.error().message, "the engine timed out");
  EXPECT_EQ(collected.contents, (std::vector<std::string>{"partial"}));
}

TEST(ClientStream, AnErrorEventWithoutItsDoneIsTruncated) {
  // PROTOCOL.md: the enclave's error event is followed by done; a stream cut between the two is
  // truncated (shared/vectors/v3.json "no done (truncated)"), not the error it announced.
  FakeGateway gateway;
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    Reply reply;
    reply.pieces.push_back(sealer.seal_event(protocol::EventKind::data, chunk_json({{"content", "partial"}})));
    reply.pieces.push_back(sealer.seal_event(protocol::EventKind::error,
                                             openai_error_body(Error{Errc::upstream_timeout, "the engine timed out"})));
    return reply;
  });
  auto client = client_for(gateway);
  Collected collected;
  auto done = client.chat.completions.create(hello_request(), collected.handler());
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error().code, Errc::truncated_stream) << done.error().to_string();
}

TEST(ClientStream, AVersion3StreamWithAnotherSaltIsTampered) {
  // The gateway (or anyone on the path) swaps the init event's salt: nothing opens.
  FakeGateway gateway;
  gateway.set_script([](protocol::ResponseSealer&, const protocol::ChatRequest&) {
    crypto::SharedSecret secret;
    crypto::random_bytes(secret.span());
    protocol::ResponseSealer other(protocol::Version::v3, secret, crypto::random_nonce());
    return Reply{.pieces = FakeGateway::sealed(other, {chunk_json({{"content", "forged"}}, "stop")})};
  });
  auto client = client_for(gateway);
  auto completion = client.chat.completions.create(hello_request());
  ASSERT_FALSE(completion);
  EXPECT_EQ(completion.error().code, Errc::tampered_stream) << completion.error().to_string();
}

TEST(ClientStream, GatewaysPlainErrorEventIsUpstreamError) {
  FakeGateway gateway;
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    Reply reply;
    reply.pieces.push_back(sealer.seal_event(protocol::EventKind::data, chunk_json({{"content", "partial"}})));
    reply.pieces.push_back(
        protocol::format_event("error", openai_error_body(Error{Errc::upstream_error, "enclave connection lost"}, "gateway")));
    return reply;
  });
  auto client = client_for(gateway);
  auto completion = client.chat.completions.create(hello_request());
  ASSERT_FALSE(completion);
  EXPECT_EQ(completion.error().code, Errc::upstream_error);
  EXPECT_NE(completion.error().message.find("enclave connection lost"), std::string::npos);
  EXPECT_NE(completion.error().message.find("unauthenticated"), std::string::npos);
}

TEST(ClientHttpErrors, Unauthorized) {
  FakeGateway gateway;
  auto options = options_for(gateway);
  options.api_key = "sk_test_wrong";
  auto client = make_client(options);
  auto completion = client.chat.completions.create(hello_request());
  ASSERT_FALSE(completion);
  EXPECT_EQ(completion.error().code, Errc::invalid_api_key);
  EXPECT_EQ(completion.error().http_status, 401);
}

TEST(ClientHttpErrors, RateLimitedKeepsRetryAfterAndRateLimitHeaders) {
  FakeGateway gateway;
  gateway.set_script([](protocol::ResponseSealer&, const protocol::ChatRequest&) {
    auto response = http::error_response(Error{Errc::rate_limit_exceeded, "too many requests for this key"});
    response.set("Retry-After", "7");
    response.set("x-ratelimit-limit-requests", "60");
    response.set("x-ratelimit-remaining-requests", "0");
    response.set("X-Unrelated", "dropped");
    return Reply{.error = std::move(response)};
  });
  auto client = client_for(gateway);
  std::optional<ResponseMeta> meta;
  auto completion =
      client.chat.completions.create(hello_request(), {.on_response = [&](const ResponseMeta& m) { meta = m; }});
  ASSERT_FALSE(completion);
  EXPECT_EQ(completion.error().code, Errc::rate_limit_exceeded);
  EXPECT_EQ(completion.error().http_status, 429);
  EXPECT_EQ(completion.error().message, "too many requests for this key");
  ASSERT_TRUE(meta);
  EXPECT_EQ(meta->status, 429u);
  EXPECT_EQ(meta->header("retry-after"), "7");
  EXPECT_EQ(meta->header("X-RateLimit-Remaining-Requests"), "0");
  EXPECT_EQ(meta->header("x-ratelimit-limit-requests"), "60");
  EXPECT_FALSE(meta->header("x-unrelated"));
}

TEST(ClientKeys, UnknownKeyIdReattestsAndRetriesOnce) {
  FakeGateway gateway;
  auto client = client_for(gateway);
  EXPECT_FALSE(client.encryption_keys());
  ASSERT_TRUE(client.chat.completions.create(hello_request()));
  EXPECT_EQ(gateway.attestation_requests, 1);
  const auto first_keys = client.encryption_keys();
  ASSERT_TRUE(first_keys);
  EXPECT_EQ(first_keys->key_id, gateway.key_id());
  gateway.rotate_key();  // the enclave restarted with a new key

  std::vector<unsigned> statuses;
  auto completion =
      client.chat.completions.create(hello_request(), {.on_response = [&](const ResponseMeta& m) { statuses.push_back(m.status); }});
  ASSERT_TRUE(completion) << completion.error().to_string();
  EXPECT_EQ(gateway.attestation_requests, 2);
  EXPECT_EQ(gateway.chat_requests, 3);
  EXPECT_EQ(statuses, std::vector<unsigned>{200});  // the 404 that caused the retry is not reported
  const auto keys_now = client.encryption_keys();
  ASSERT_TRUE(keys_now);
  EXPECT_EQ(keys_now->key_id, gateway.key_id());
  EXPECT_NE(keys_now->key_id, first_keys->key_id);
}

TEST(ClientKeys, UnknownKeyIdIsRetriedOnlyOnce) {
  FakeGateway gateway;
  gateway.set_script([](protocol::ResponseSealer&, const protocol::ChatRequest&) {
    return Reply{.error = http::error_response(Error{Errc::unknown_key_id, "unknown keyId"})};
  });
  auto client = client_for(gateway);
  auto completion = client.chat.completions.create(hello_request());
  ASSERT_FALSE(completion);
  EXPECT_EQ(completion.error().code, Errc::unknown_key_id);
  EXPECT_EQ(completion.error().http_status, 404);
  EXPECT_EQ(gateway.chat_requests, 2);
  EXPECT_EQ(gateway.attestation_requests, 2);
}

TEST(ClientKeys, PreGeneratedKeysAreUsedWithoutAttestingAgain) {
  FakeGateway gateway;
  auto keys = generate_encryption_keys(options_for(gateway));
  ASSERT_TRUE(keys) << keys.error().to_string();
  EXPECT_EQ(keys->key_id, gateway.key_id());
  auto restored = EncryptionKeys::from_json(keys->to_json());
  ASSERT_TRUE(restored) << restored.error().to_string();

  auto options = options_for(gateway);
  options.encryption_keys = std::move(*restored);
  auto client = make_client(options);
  ASSERT_TRUE(client.chat.completions.create(hello_request()));
  ASSERT_TRUE(client.chat.completions.create(hello_request()));
  EXPECT_EQ(gateway.attestation_requests, 1);  // only generate_encryption_keys attested
}

// Issue 30 item 3: keys are never used at or near their notAfter: the call makes new ones first.
// Near = from refreshAt on: notAfter − min(kKeyExpiryMargin, half the life left when verified)
// (issue 21 item 5: a rotating enclave's keys live seconds in tests, hours in production).
TEST(ClientKeys, KeysNearTheirNotAfterAreReplacedBeforeARequest) {
  FakeGateway gateway;
  // The enclave key expires within the SDK's margin: its keys are replaced half-way to notAfter.
  gateway.set_key_lifetime(kKeyExpiryMargin.count() / 2);
  auto client = client_for(gateway);
  ASSERT_TRUE(client.chat.completions.create(hello_request()));
  const auto first = client.encryption_keys();
  ASSERT_TRUE(first && first->not_after && first->refresh_at);
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  EXPECT_LE(*first->refresh_at, *first->not_after - kKeyExpiryMargin.count() / 4);
  EXPECT_GE(*first->refresh_at, now);
  EXPECT_FALSE(first->usable_at(*first->refresh_at));
  EXPECT_FALSE(first->usable_at(*first->not_after));

  // Keys past their refreshAt (given by the caller here, the SDK's clock cannot be moved): the
  // call attests anew before it sends anything.
  auto options = options_for(gateway);
  auto stale = *first;
  stale.refresh_at = now - 1;
  options.encryption_keys = stale;
  auto second = make_client(options);
  ASSERT_TRUE(second.chat.completions.create(hello_request()));
  EXPECT_EQ(gateway.attestation_requests, 2);
  EXPECT_EQ(gateway.chat_requests, 2) << "no request went out with the old keys";
  EXPECT_NE(second.encryption_keys()->cipher_text, first->cipher_text);
  ASSERT_TRUE(client.chat.completions.create(hello_request()));
  EXPECT_EQ(gateway.attestation_requests, 2) << "keys before their refreshAt are reused";

  // Keys with an hour left are reused.
  gateway.set_key_lifetime(3600);
  auto third = client_for(gateway);
  ASSERT_TRUE(third.chat.completions.create(hello_request()));
  ASSERT_TRUE(third.chat.completions.create(hello_request()));
  EXPECT_EQ(gateway.attestation_requests, 3);
  EXPECT_EQ(*third.encryption_keys()->refresh_at, *third.encryption_keys()->not_after - kKeyExpiryMargin.count());
}

TEST(ClientKeys, CallerKeysPastTheirNotAfterAreNotUsed) {
  FakeGateway gateway;
  auto keys = generate_encryption_keys(options_for(gateway));
  ASSERT_TRUE(keys) << keys.error().to_string();
  ASSERT_TRUE(keys->not_after) << "keys from a verified attestation carry its notAfter";
  keys->not_after = static_cast<std::int64_t>(std::time(nullptr)) - 1;
  auto options = options_for(gateway);
  options.encryption_keys = *keys;
  auto client = make_client(options);
  ASSERT_TRUE(client.chat.completions.create(hello_request()));
  EXPECT_EQ(gateway.attestation_requests, 2) << "expired caller keys were replaced";
  EXPECT_EQ(gateway.chat_requests, 1);
  EXPECT_NE(client.encryption_keys()->cipher_text, keys->cipher_text);

  // Keys without notAfter (made elsewhere, or older JSON) are used as given.
  keys->not_after.reset();
  options.encryption_keys = *keys;
  auto unknown_age = make_client(options);
  ASSERT_TRUE(unknown_age.chat.completions.create(hello_request()));
  EXPECT_EQ(gateway.attestation_requests, 2);
  EXPECT_EQ(unknown_age.encryption_keys()->cipher_text, keys->cipher_text);
}

TEST(ClientModels, ListComesFromTheGateway) {
  FakeGateway gateway;
  auto models = client_for(gateway).models();
  ASSERT_TRUE(models) << models.error().to_string();
  EXPECT_EQ(models->at("data").at(0).at("id").as_string(), "demo");
}

TEST(ClientTimeouts, SilentServerHitsTheRequestTimeout) {
  FakeGateway gateway;
  gateway.set_script([](protocol::ResponseSealer&, const protocol::ChatRequest&) { return Reply{.hang = true}; });
  auto options = options_for(gateway);
  options.request_timeout = std::chrono::milliseconds(300);
  auto client = make_client(options);
  auto completion = client.chat.completions.create(hello_request());
  ASSERT_FALSE(completion);
  EXPECT_EQ(completion.error().code, Errc::timeout) << completion.error().to_string();
}

// Security review, issue 30 item 7: the call ends at the authenticated done, and request_timeout
// counts only events that advance the stream. Bounds are generous (a loaded machine); what each
// test asserts is that the call ends long before the gateway would have let it.
constexpr auto kPromptly = std::chrono::seconds(5);
constexpr auto kGatewayKeepsGoing = std::chrono::seconds(12);

std::chrono::steady_clock::duration since(std::chrono::steady_clock::time_point start) {
  return std::chrono::steady_clock::now() - start;
}

Status outcome(const Result<json::object>& completion) {
  if (completion) return {};
  return std::unexpected(completion.error());
}

TEST(ClientTimeouts, CallReturnsAtDoneWhileTheGatewayKeepsTrickling) {
  FakeGateway gateway;
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    return Reply{.pieces = three_chunks(sealer), .trickle = ": ping\n\n", .trickle_for = kGatewayKeepsGoing};
  });
  auto client = client_for(gateway);
  ASSERT_TRUE(client.generate_encryption_keys());
  for (const bool streaming : {true, false}) {
    const auto start = std::chrono::steady_clock::now();
    Collected collected;
    const Status done = streaming ? client.chat.completions.create(hello_request(), collected.handler())
                                  : outcome(client.chat.completions.create(hello_request()));
    ASSERT_TRUE(done) << done.error().to_string();
    EXPECT_LT(since(start), kPromptly) << (streaming ? "streaming" : "non-streaming") << " call waited for the gateway";
    if (streaming) {
      EXPECT_EQ(collected.contents, (std::vector<std::string>{"Hel", "lo", "!"}));
    }
  }
  // The connection left mid-body is not reused: the next call works on a fresh one.
  auto again = client.chat.completions.create(hello_request());
  EXPECT_TRUE(again) << again.error().to_string();
}

TEST(ClientTimeouts, CommentsAndUnknownEventsDoNotCountAsProgress) {
  for (const std::string trickle : {": ping\n\n", "event: usage\ndata: {\"prompt_tokens\":1}\n\n"}) {
    FakeGateway gateway;
    gateway.set_script([&](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
      // One chunk, then only what does not advance the stream.
      auto pieces = FakeGateway::sealed(sealer, {chunk_json({{"content", "Hel"}})});
      pieces.pop_back();  // no done
      return Reply{.pieces = pieces, .trickle = trickle, .trickle_for = kGatewayKeepsGoing};
    });
    auto options = options_for(gateway);
    options.request_timeout = std::chrono::milliseconds(500);
    auto client = make_client(options);
    ASSERT_TRUE(client.generate_encryption_keys());
    const auto start = std::chrono::steady_clock::now();
    auto completion = client.chat.completions.create(hello_request());
    ASSERT_FALSE(completion) << trickle;
    EXPECT_EQ(completion.error().code, Errc::timeout) << completion.error().to_string();
    EXPECT_NE(completion.error().message.find("request_timeout"), std::string::npos) << completion.error().message;
    EXPECT_LT(since(start), kPromptly) << trickle;
  }
}

TEST(ClientTimeouts, TimeInTheChunkHandlerIsNotSilence) {
  FakeGateway gateway;
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    return Reply{.pieces = three_chunks(sealer), .piece_interval = std::chrono::milliseconds(50)};
  });
  auto options = options_for(gateway);
  options.request_timeout = std::chrono::milliseconds(300);
  auto client = make_client(options);
  int chunks = 0;
  auto done = client.chat.completions.create(hello_request(), [&](const Chunk&) -> Status {
    if (++chunks == 1) std::this_thread::sleep_for(std::chrono::milliseconds(700));  // a slow consumer
    return {};
  });
  ASSERT_TRUE(done) << done.error().to_string();
  EXPECT_EQ(chunks, 3);
}

TEST(ClientTimeouts, TotalTimeoutBoundsASteadyStream) {
  FakeGateway gateway;
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    std::vector<std::string> chunks(120, chunk_json({{"content", "."}}));  // 12 s at one per 100 ms
    return Reply{.pieces = FakeGateway::sealed(sealer, chunks), .piece_interval = std::chrono::milliseconds(100)};
  });
  auto options = options_for(gateway);
  options.request_timeout = std::chrono::milliseconds(3000);  // never silent that long
  options.total_timeout = std::chrono::milliseconds(600);
  auto client = make_client(options);
  for (const bool streaming : {true, false}) {
    const auto start = std::chrono::steady_clock::now();
    const ChunkHandler ignore = [](const Chunk&) -> Status { return {}; };
    const Status done = streaming ? client.chat.completions.create(hello_request(), ignore)
                                  : outcome(client.chat.completions.create(hello_request()));
    ASSERT_FALSE(done);
    EXPECT_EQ(done.error().code, Errc::timeout) << done.error().to_string();
    EXPECT_NE(done.error().message.find("total_timeout (600 ms)"), std::string::npos) << done.error().message;
    EXPECT_LT(since(start), kPromptly);
  }
  // Calls within the bound are unaffected.
  options.total_timeout = std::chrono::milliseconds(20'000);
  FakeGateway quick;
  options.base_url = quick.url();
  options.attestation.simulated_platform_key = quick.platform_public_key();
  auto unhurried = make_client(options).chat.completions.create(hello_request());
  EXPECT_TRUE(unhurried) << unhurried.error().to_string();
}

TEST(ClientTransport, UnreachableGatewayIsATransportError) {
  std::string url;
  {
    FakeGateway gone;
    url = gone.url();
  }
  ClientOptions options;
  options.api_key = "sk_test_x";
  options.base_url = url;
  auto client = create_client(options);
  ASSERT_TRUE(client);
  auto completion = client->chat.completions.create(hello_request());
  ASSERT_FALSE(completion);
  EXPECT_EQ(completion.error().code, Errc::transport_error) << completion.error().to_string();
  EXPECT_EQ(completion.error().http_status, 0);
}

TEST(ClientTransport, BlockingCallsReuseOneConnection) {
  FakeGateway gateway;
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    return Reply{.pieces = three_chunks(sealer)};
  });
  auto client = client_for(gateway);  // attests on the first call: that request too
  for (int i = 0; i < 3; ++i) {
    auto completion = client.chat.completions.create(hello_request());
    ASSERT_TRUE(completion) << completion.error().to_string();
  }
  ASSERT_TRUE(client.models());
  EXPECT_EQ(gateway.chat_requests, 3);
  EXPECT_EQ(gateway.accepted_connections(), 1u);
}

TEST(ClientTransport, NoIdleConnectionsKeptWhenTheOptionSaysNone) {
  FakeGateway gateway;
  auto options = options_for(gateway);
  options.max_idle_connections = 0;
  auto client = make_client(options);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(client.chat.completions.create(hello_request()));
  EXPECT_EQ(gateway.accepted_connections(), 4u);  // the attestation's and one per call
}

TEST(ClientProtocol, Version1RoundTrip) {
  FakeGateway gateway;
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    return Reply{.pieces = three_chunks(sealer)};
  });
  auto options = options_for(gateway);
  options.protocol_version = protocol::Version::v1;
  auto client = make_client(options);
  auto completion = client.chat.completions.create(hello_request());
  ASSERT_TRUE(completion) << completion.error().to_string();
  EXPECT_EQ(completion->at("choices").at(0).at("message").at("content").as_string(), "Hello!");
}

class ClientAttestation : public ::testing::Test {
 protected:
  void expect_untrusted(ClientOptions options) {
    auto client = make_client(std::move(options));
    auto completion = client.chat.completions.create(hello_request());
    ASSERT_FALSE(completion);
    EXPECT_EQ(completion.error().code, Errc::attestation_failed) << completion.error().to_string();
    EXPECT_EQ(gateway.chat_requests, 0);  // no key was used
  }
  FakeGateway gateway;
};

TEST_F(ClientAttestation, VerifiedDocumentIsReturned) {
  auto client = client_for(gateway);
  auto document = client.attest();
  ASSERT_TRUE(document) << document.error().to_string();
  EXPECT_EQ(document->provider, "simulated");
  EXPECT_EQ(document->key_id, gateway.key_id());
  EXPECT_EQ(document->measurement, gateway.measurement());
}

TEST_F(ClientAttestation, SimulatedIsNotTrustedByDefault) {
  auto options = options_for(gateway);
  options.attestation = {};
  expect_untrusted(options);
}

TEST_F(ClientAttestation, OtherPlatformKeyIsRejected) {
  gateway.set_attestation_flaw(test::AttestationFlaw::other_platform_key);
  expect_untrusted(options_for(gateway));
}

TEST_F(ClientAttestation, BindingToAnotherChallengeIsRejected) {
  gateway.set_attestation_flaw(test::AttestationFlaw::bad_binding);
  expect_untrusted(options_for(gateway));
}

TEST_F(ClientAttestation, KeyIdNotMatchingThePublicKeyIsRejected) {
  gateway.set_attestation_flaw(test::AttestationFlaw::wrong_key_id);
  expect_untrusted(options_for(gateway));
}

TEST_F(ClientAttestation, UnexpectedMeasurementIsRejected) {
  auto options = options_for(gateway);
  options.attestation.expected_measurement = std::vector<std::uint8_t>(32, 0xab);
  expect_untrusted(options);
}

TEST_F(ClientAttestation, ExpectedMeasurementIsAccepted) {
  auto options = options_for(gateway);
  options.attestation.expected_measurement = gateway.measurement();
  auto client = make_client(options);
  EXPECT_TRUE(client.chat.completions.create(hello_request()));
}

// --- The awaitable API ----------------------------------------------------------------------

TEST(ClientAsync, ManyConcurrentRequestsOnOneIoContext) {
  FakeGateway gateway;
  // Each answer echoes the request's message, so crossed streams would show.
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest& request) {
    const auto& content = request.body.at("messages").at(0).at("content").as_string();
    return Reply{.pieces = FakeGateway::sealed(sealer, {chunk_json({{"content", content}}, "stop")})};
  });
  auto client = client_for(gateway);
  constexpr int kRequests = 16;
  asio::io_context io;
  std::vector<std::optional<Result<json::object>>> results(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    asio::co_spawn(io, client.chat.completions.async_create(hello_request("message " + std::to_string(i))),
                   [&results, i](std::exception_ptr e, Result<json::object> r) {
                     if (!e) results[i] = std::move(r);
                   });
  }
  io.run();
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(results[i] && *results[i]) << i;
    EXPECT_EQ((*results[i])->at("choices").at(0).at("message").at("content").as_string(), "message " + std::to_string(i));
  }
  EXPECT_EQ(gateway.attestation_requests, 1);  // one call made the first keys, the others waited for them
}

TEST(ClientAsync, ConcurrentFirstCallsShareAFailedAttestation) {
  FakeGateway gateway;
  gateway.set_attestation_flaw(test::AttestationFlaw::bad_binding);
  auto client = client_for(gateway);
  constexpr int kRequests = 8;
  asio::io_context io;
  std::vector<std::optional<Result<json::object>>> results(kRequests);
  for (int i = 0; i < kRequests; ++i)
    asio::co_spawn(io, client.chat.completions.async_create(hello_request()),
                   [&results, i](std::exception_ptr e, Result<json::object> r) {
                     if (!e) results[i] = std::move(r);
                   });
  io.run();
  for (const auto& result : results) {
    ASSERT_TRUE(result && !*result);
    EXPECT_EQ(result->error().code, Errc::attestation_failed) << result->error().to_string();
  }
  EXPECT_EQ(gateway.attestation_requests, 1);
  EXPECT_EQ(gateway.chat_requests, 0);
}

TEST(ClientKeys, BlockingCallsOnManyThreadsMakeTheFirstKeysOnce) {
  FakeGateway gateway;
  auto client = client_for(gateway);
  constexpr int kThreads = 6;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&] {
      if (client.chat.completions.create(hello_request())) ++ok;
    });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(ok, kThreads);
  EXPECT_EQ(gateway.attestation_requests, 1);
  EXPECT_EQ(gateway.chat_requests, kThreads);
}

TEST(ClientAsync, CancellationEndsAPendingRequest) {
  // Also with total_timeout set: the call then races its timer, and cancellation still reaches it.
  using Total = std::optional<std::chrono::milliseconds>;
  for (const Total total : {Total{}, Total(std::chrono::milliseconds(60'000))}) {
    FakeGateway gateway;
    gateway.set_script([](protocol::ResponseSealer&, const protocol::ChatRequest&) { return Reply{.hang = true}; });
    auto options = options_for(gateway);
    options.total_timeout = total;
    auto client = make_client(options);
    asio::io_context io;
    asio::cancellation_signal cancel;
    std::optional<Status> result;
    asio::co_spawn(io,
                   client.chat.completions.async_create(
                       hello_request(), [](const Chunk&) -> http::awaitable<Status> { co_return Status{}; }),
                   asio::bind_cancellation_slot(cancel.slot(), [&](std::exception_ptr e, Status s) {
                     result = e ? Status(fail(Errc::internal_error, "exception")) : std::move(s);
                   }));
    // Cancel once the request reached the server.
    asio::co_spawn(io, [&]() -> http::awaitable<void> {
      co_await until([&] { return gateway.chat_requests > 0 || result.has_value(); });
      cancel.emit(asio::cancellation_type::terminal);
    }, asio::detached);
    io.run();
    ASSERT_TRUE(result);
    ASSERT_FALSE(*result);
    EXPECT_EQ(result->error().code, Errc::transport_error);
    EXPECT_EQ(result->error().message, "request cancelled");
  }
}

// Two calls on one io_context while the first keys are made, attestation answers held back.
class ClientKeysInTheMaking : public ::testing::Test {
 protected:
  ClientKeysInTheMaking() { gateway.set_attestation_hang(true); }

  FakeGateway gateway;
  Client client = client_for(gateway);
  asio::io_context io;
  asio::cancellation_signal cancel;
  std::optional<Result<json::object>> first, second;
};

TEST_F(ClientKeysInTheMaking, AWaitingCallTakesOverWhenTheCallMakingKeysIsCancelled) {
  spawn_create(io, client, first, cancel.slot());
  spawn_create(io, client, second);
  // Once the first call is stuck attesting (the second then waits for it), cancel it.
  asio::co_spawn(io, [&]() -> http::awaitable<void> {
    co_await until([&] { return gateway.attestation_requests > 0; });
    gateway.set_attestation_hang(false);
    cancel.emit(asio::cancellation_type::terminal);
  }, asio::detached);
  io.run();
  ASSERT_TRUE(first && second);
  ASSERT_FALSE(*first);
  EXPECT_EQ(first->error().message, "request cancelled");
  ASSERT_TRUE(*second) << second->error().to_string();
  EXPECT_EQ(gateway.attestation_requests, 2);  // the cancelled attempt left no keys: the waiter attested
}

TEST_F(ClientKeysInTheMaking, ACancelledWaiterLeavesTheCallMakingKeysAlone) {
  spawn_create(io, client, first);
  spawn_create(io, client, second, cancel.slot());
  // The waiting call is cancelled while the first is stuck attesting; then the attestation ends
  // without an answer, which fails the first call.
  asio::co_spawn(io, [&]() -> http::awaitable<void> {
    co_await until([&] { return gateway.attestation_requests > 0; });
    cancel.emit(asio::cancellation_type::terminal);
    co_await until([&] { return second.has_value(); });
    gateway.set_attestation_hang(false);
    gateway.release();
  }, asio::detached);
  io.run();
  ASSERT_TRUE(first && second);
  ASSERT_FALSE(*second);
  EXPECT_EQ(second->error().message, "request cancelled");
  EXPECT_FALSE(*first);
  // Nothing of either is left behind: the next call makes keys and is answered.
  auto third = client.chat.completions.create(hello_request());
  ASSERT_TRUE(third) << third.error().to_string();
  EXPECT_EQ(gateway.attestation_requests, 2);
}

TEST(ClientAsync, HandlerErrorStopsTheStream) {
  FakeGateway gateway;
  gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
    return Reply{.pieces = three_chunks(sealer)};
  });
  auto client = client_for(gateway);
  asio::io_context io;
  int seen = 0;
  std::optional<Status> result;
  asio::co_spawn(io,
                 client.chat.completions.async_create(hello_request(),
                                                      [&seen](const Chunk&) -> http::awaitable<Status> {
                                                        ++seen;
                                                        co_return fail(Errc::transport_error, "downstream client gone");
                                                      }),
                 [&](std::exception_ptr, Status s) { result = std::move(s); });
  io.run();
  ASSERT_TRUE(result);
  ASSERT_FALSE(*result);
  EXPECT_EQ(result->error().message, "downstream client gone");
  EXPECT_EQ(seen, 1);
}

// --- Options ---------------------------------------------------------------------------------

TEST(ClientOptionsTest, AreValidated) {
  ClientOptions options;
  EXPECT_EQ(create_client(options).error().code, Errc::invalid_request);  // no api_key
  options.api_key = "sk_test_abc";
  EXPECT_TRUE(create_client(options));
  options.api_key = "sk_test abc";
  EXPECT_FALSE(create_client(options));
  options.api_key = "sk_test_abc";
  options.base_url = "ftp://example.com";
  auto bad_url = create_client(options);
  ASSERT_FALSE(bad_url);
  EXPECT_NE(bad_url.error().message.find("base_url"), std::string::npos);
  options.base_url = std::string(kDefaultBaseUrl);
  options.request_timeout = std::chrono::milliseconds(0);
  EXPECT_FALSE(create_client(options));
  options.request_timeout = kDefaultRequestTimeout;
  options.total_timeout = std::chrono::milliseconds(0);
  auto bad_total = create_client(options);
  ASSERT_FALSE(bad_total);
  EXPECT_NE(bad_total.error().message.find("total_timeout"), std::string::npos);
  options.total_timeout.reset();
  options.max_buffer_size = 0;
  EXPECT_FALSE(create_client(options));
}

TEST(ClientOptionsTest, EncryptionKeysJsonNamesTheBadField) {
  EXPECT_FALSE(EncryptionKeys::from_json("[]"));
  auto missing = EncryptionKeys::from_json(R"({"sharedSecret":"00"})");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("sharedSecret"), std::string::npos);
  EncryptionKeys keys;
  keys.key_id = {1, 2, 3, 4, 5, 6, 7, 8};
  auto json_text = json::parse(keys.to_json()).as_object();
  EXPECT_EQ(json_text.at("keyId").as_string(), "0102030405060708");
  json_text["cipherText"] = "abcd";
  auto short_ct = EncryptionKeys::from_json(json::serialize(json_text));
  ASSERT_FALSE(short_ct);
  EXPECT_NE(short_ct.error().message.find("cipherText"), std::string::npos);
}

TEST(ClientOptionsTest, EncryptionKeysJsonCarriesAnOptionalNotAfter) {
  EncryptionKeys keys;
  keys.key_id = {1, 2, 3, 4, 5, 6, 7, 8};
  auto old_json = json::parse(keys.to_json()).as_object();
  EXPECT_FALSE(old_json.contains("notAfter")) << "unknown: not written";
  auto loaded = EncryptionKeys::from_json(json::serialize(old_json));
  ASSERT_TRUE(loaded) << "JSON without notAfter (older releases) still loads";
  EXPECT_FALSE(loaded->not_after);

  keys.not_after = 1'790'000'000;
  auto with = EncryptionKeys::from_json(keys.to_json());
  ASSERT_TRUE(with) << with.error().to_string();
  EXPECT_EQ(with->not_after, 1'790'000'000);
  EXPECT_TRUE(with->usable_at(1'790'000'000 - kKeyExpiryMargin.count() - 1));
  EXPECT_FALSE(with->usable_at(1'790'000'000 - kKeyExpiryMargin.count()));

  for (const json::value& bad : {json::value("soon"), json::value(-1), json::value(1.5)}) {
    auto text = json::parse(keys.to_json()).as_object();
    text["notAfter"] = bad;
    auto refused = EncryptionKeys::from_json(json::serialize(text));
    ASSERT_FALSE(refused) << json::serialize(bad);
    EXPECT_NE(refused.error().message.find("notAfter"), std::string::npos);
  }
}

// Issue 20: the SDK reaches an https gateway (a TLS front made with a test CA before the fake
// gateway), streaming and not, when told the CA; without it the error is tls_error saying why.
class ClientTls : public ::testing::Test {
 protected:
  ClientTls() {
    gateway.set_script([](protocol::ResponseSealer& sealer, const protocol::ChatRequest&) {
      return Reply{.pieces = three_chunks(sealer)};
    });
  }
  [[nodiscard]] ClientOptions https_options() const {
    ClientOptions options = options_for(gateway);
    options.base_url = front.origin();
    return options;
  }
  FakeGateway gateway;
  test::TestPki pki;
  test::TlsFront front{http::parse_url(gateway.url())->port, pki.issue("gateway", {"IP:127.0.0.1"})};
};

TEST_F(ClientTls, StreamsAndCompletesOverHttpsWithTheCaFile) {
  ClientOptions options = https_options();
  options.ca_file = pki.ca_file();
  auto client = make_client(options);
  Collected collected;
  auto done = client.chat.completions.create(hello_request(), collected.handler());
  ASSERT_TRUE(done) << done.error().to_string();
  EXPECT_EQ(collected.contents, (std::vector<std::string>{"Hel", "lo", "!"}));
  auto completion = client.chat.completions.create(hello_request());
  ASSERT_TRUE(completion) << completion.error().to_string();
  EXPECT_GE(front.handshakes(), 1U);
}

TEST_F(ClientTls, UntrustedGatewayIsATlsErrorNamingTheCause) {
  auto client = make_client(https_options());  // the system trust store does not know the test CA
  auto completion = client.chat.completions.create(hello_request());
  ASSERT_FALSE(completion);
  EXPECT_EQ(completion.error().code, Errc::tls_error) << completion.error().to_string();
  EXPECT_NE(completion.error().message.find("unknown issuer"), std::string::npos) << completion.error().message;
  EXPECT_EQ(front.handshakes(), 0U);
}

}  // namespace
}  // namespace rvenc::client
