// ResponseDecoder and the HTTP error mapping, without sockets.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "rvenc/client/response.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/protocol/sealing.hpp"
#include "support/test_support.hpp"

namespace rvenc::client {
namespace {

struct Keys {
  crypto::SharedSecret secret;
  crypto::Nonce nonce = crypto::random_nonce();
  Keys() { crypto::random_bytes(secret.span()); }
};

std::string stream_text(protocol::ResponseSealer& sealer, int chunks) {
  std::string text = sealer.init_event();
  for (int i = 0; i < chunks; ++i)
    text += sealer.seal_event(protocol::EventKind::data, R"({"choices":[{"index":0,"delta":{"content":")" +
                                                             std::to_string(i) + R"("}}]})");
  return text + sealer.seal_event(protocol::EventKind::done, "[DONE]");
}

TEST(ResponseDecoder, AcceptsAStreamFedOneByteAtATime) {
  for (auto version : {protocol::Version::v1, protocol::Version::v2, protocol::Version::v3}) {
    Keys keys;
    protocol::ResponseSealer sealer(version, keys.secret, keys.nonce);
    const std::string text = stream_text(sealer, 3);
    ResponseDecoder decoder(version, keys.secret, keys.nonce);
    std::vector<Chunk> chunks;
    for (char c : text) ASSERT_TRUE(decoder.feed(std::string_view(&c, 1), chunks));
    EXPECT_TRUE(decoder.done());
    EXPECT_TRUE(decoder.finish());
    ASSERT_EQ(chunks.size(), 3u);
    EXPECT_EQ(chunks[2].object.at("choices").at(0).at("delta").at("content").as_string(), "2");
  }
}

TEST(ResponseDecoder, StreamForAnotherRequestIsTampered) {
  Keys keys;
  Keys other;
  protocol::ResponseSealer sealer(protocol::Version::v3, other.secret, other.nonce);
  ResponseDecoder decoder(protocol::Version::v3, keys.secret, keys.nonce);
  std::vector<Chunk> chunks;
  auto fed = decoder.feed(stream_text(sealer, 1), chunks);
  ASSERT_FALSE(fed);
  EXPECT_EQ(fed.error().code, Errc::tampered_stream);
  EXPECT_FALSE(decoder.feed("more", chunks));  // stays failed
  EXPECT_EQ(decoder.finish().error().code, Errc::tampered_stream);
  EXPECT_TRUE(chunks.empty());
}

TEST(ResponseDecoder, EmptyOrCutStreamIsTruncated) {
  Keys keys;
  ResponseDecoder empty(protocol::Version::v2, keys.secret, keys.nonce);
  EXPECT_EQ(empty.finish().error().code, Errc::truncated_stream);

  protocol::ResponseSealer sealer(protocol::Version::v2, keys.secret, keys.nonce);
  std::string text = stream_text(sealer, 2);
  ResponseDecoder cut(protocol::Version::v2, keys.secret, keys.nonce);
  std::vector<Chunk> chunks;
  ASSERT_TRUE(cut.feed(std::string_view(text).substr(0, text.size() - 3), chunks));
  EXPECT_EQ(cut.finish().error().code, Errc::truncated_stream);
  EXPECT_EQ(chunks.size(), 2u);
}

TEST(ResponseDecoder, AuthenticatedChunkThatIsNotJsonIsAnError) {
  Keys keys;
  protocol::ResponseSealer sealer(protocol::Version::v2, keys.secret, keys.nonce);
  ResponseDecoder decoder(protocol::Version::v2, keys.secret, keys.nonce);
  std::vector<Chunk> chunks;
  auto fed = decoder.feed(sealer.seal_event(protocol::EventKind::data, "not json"), chunks);
  ASSERT_FALSE(fed);
  EXPECT_EQ(fed.error().code, Errc::upstream_error);
}

TEST(ResponseDecoder, EventsAfterDoneAreIgnored) {
  Keys keys;
  protocol::ResponseSealer sealer(protocol::Version::v2, keys.secret, keys.nonce);
  ResponseDecoder decoder(protocol::Version::v2, keys.secret, keys.nonce);
  std::vector<Chunk> chunks;
  ASSERT_TRUE(decoder.feed(stream_text(sealer, 1) + "event: usage\ndata: {}\n\nevent: data\ndata: zz\n\n", chunks));
  EXPECT_TRUE(decoder.finish());
  EXPECT_EQ(chunks.size(), 1u);
}

// v3.json's streams through the decoder the SDK uses, byte by byte: the plaintexts of the data
// events, and each negative stream refused with the error the vectors name.
TEST(ResponseDecoder, Version3VectorsAndTheirNegativeStreams) {
  const auto vectors = test::load_vector_file("v3");
  const auto field = [](const boost::json::value& v, std::string_view name) {
    return std::string(v.as_object().at(name).as_string());
  };
  for (const auto& c : vectors.at("cases").as_array()) {
    crypto::SharedSecret secret;
    crypto::Nonce nonce{};
    ASSERT_TRUE(from_hex_into(field(c, "sharedSecret"), secret.span(), "s"));
    ASSERT_TRUE(from_hex_into(field(c, "nonce"), nonce, "n"));
    const auto decode = [&](const std::string& sse, std::vector<Chunk>& chunks) -> Status {
      ResponseDecoder decoder(protocol::Version::v3, secret, nonce);
      for (char ch : sse)
        if (auto fed = decoder.feed(std::string_view(&ch, 1), chunks); !fed) return fed;
      return decoder.finish();
    };
    std::vector<Chunk> chunks;
    const auto good = decode(field(c, "sse"), chunks);
    // The vectors' streams end with an encrypted error event: the decoder reports its code.
    ASSERT_FALSE(good.has_value());
    EXPECT_NE(good.error().code, Errc::tampered_stream) << good.error().to_string();
    EXPECT_NE(good.error().code, Errc::truncated_stream) << good.error().to_string();
    std::size_t data_events = 0;
    for (const auto& e : c.at("events").as_array()) data_events += field(e, "kind") == "data";
    EXPECT_EQ(chunks.size(), data_events);
    for (const auto& n : c.at("negative").as_array()) {
      std::vector<Chunk> ignored;
      const auto bad = decode(field(n, "sse"), ignored);
      ASSERT_FALSE(bad.has_value()) << field(n, "name");
      EXPECT_EQ(code_name(bad.error().code), field(n, "error")) << field(n, "name") << ": " << bad.error().to_string();
    }
  }
}

TEST(ErrorFromHttp, ParsesOpenAiErrorBodies) {
  auto error = error_from_http(403, R"({"error":{"message":"key revoked","type":"permission_error","code":"key_revoked"}})");
  EXPECT_EQ(error.code, Errc::key_revoked);
  EXPECT_EQ(error.http_status, 403);
  EXPECT_EQ(error.message, "key revoked");

  auto unknown_code = error_from_http(503, R"({"error":{"message":"busy","code":"something_new"}})");
  EXPECT_EQ(unknown_code.code, Errc::overloaded);

  auto html = error_from_http(502, "<html>Bad Gateway secret</html>");
  EXPECT_EQ(html.code, Errc::upstream_error);
  EXPECT_EQ(html.message.find("secret"), std::string::npos);  // the body is never echoed
  EXPECT_EQ(error_from_http(418, "").code, Errc::invalid_request);
}

TEST(ResponseMetaTest, KeepsOnlyPassThroughHeaders) {
  EXPECT_TRUE(is_passthrough_header("Retry-After"));
  EXPECT_TRUE(is_passthrough_header("x-ratelimit-reset-tokens"));
  EXPECT_TRUE(is_passthrough_header("X-Request-Id"));
  EXPECT_FALSE(is_passthrough_header("set-cookie"));
  ResponseMeta meta{.status = 200, .headers = {{"retry-after", "3"}}};
  EXPECT_EQ(meta.header("Retry-After"), "3");
  EXPECT_FALSE(meta.header("x-ratelimit-limit-requests"));
}

}  // namespace
}  // namespace rvenc::client
