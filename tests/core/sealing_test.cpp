// Request and event sealing: every tampered byte, reordered, skipped, replayed or relabelled event fails.
#include <gtest/gtest.h>

#include "rvenc/common/hex.hpp"
#include "rvenc/protocol/sealing.hpp"

namespace rvenc::protocol {
namespace {

constexpr std::string_view kRequest =
    R"({"model":"m","messages":[{"role":"user","content":"a prompt that must stay private"}],"stream":true})";

struct Keys {
  crypto::XWingKeyPair enclave = crypto::xwing_generate_keypair();
  crypto::Encapsulation enc = crypto::xwing_encapsulate(enclave.public_key).value();
  crypto::Nonce nonce = crypto::random_nonce();

  RequestEnvelope seal(Version version, std::string_view plaintext = kRequest) const {
    SealInput in;
    in.version = version;
    in.shared_secret = &enc.shared_secret;
    in.cipher_text = &enc.cipher_text;
    in.key_id = crypto::key_id(enclave.public_key);
    in.nonce = nonce;
    in.timestamp = 1764004858;
    return seal_request(in, plaintext);
  }
};

void expect_code(const auto& result, Errc code) {
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, code) << result.error().to_string();
}

TEST(Request, V2PaddedToBlocksAndOpens) {
  Keys k;
  for (std::size_t n : {0u, 1u, 47u, 48u, 200u}) {
    const std::string plaintext(n, 'x');
    const auto env = k.seal(Version::v2, plaintext);
    EXPECT_EQ((env.encrypted_inference.size() - crypto::kAeadTagBytes) % crypto::kPadBlockBytes, 0u);
    EXPECT_EQ(open_request(env, k.enc.shared_secret).value().view(), plaintext);
  }
  const auto v1 = k.seal(Version::v1);
  EXPECT_EQ(v1.encrypted_inference.size(), kRequest.size() + crypto::kAeadTagBytes);
}

TEST(Request, FlippedBitAtEveryCiphertextByteFails) {
  Keys k;
  for (auto version : {Version::v1, Version::v2, Version::v3}) {
    const auto env = k.seal(version);
    for (std::size_t i = 0; i < env.encrypted_inference.size(); ++i) {
      auto bad = env;
      bad.encrypted_inference[i] ^= static_cast<std::uint8_t>(1u << (i % 8));
      expect_code(open_request(bad, k.enc.shared_secret), Errc::decryption_failed);
    }
  }
}

TEST(Request, FlippedBitAtEveryKemCipherTextByteFails) {
  Keys k;
  const auto env = k.seal(Version::v2);
  for (std::size_t i = 0; i < env.cipher_text.size(); ++i) {
    auto bad = env;
    bad.cipher_text[i] ^= static_cast<std::uint8_t>(1u << (i % 8));
    // X-Wing rejects implicitly: a changed cipherText decapsulates to another secret.
    auto ss = crypto::xwing_decapsulate(bad.cipher_text, k.enclave.seed);
    ASSERT_TRUE(ss.has_value());
    expect_code(open_request(bad, *ss), Errc::decryption_failed);
  }
}

TEST(Request, WrongAdNonceKeyOrVersionFails) {
  Keys k;
  const auto env = k.seal(Version::v2);
  auto bad = env;
  bad.key_id[0] ^= 1;
  expect_code(open_request(bad, k.enc.shared_secret), Errc::decryption_failed);
  bad = env;
  bad.timestamp += 1;
  expect_code(open_request(bad, k.enc.shared_secret), Errc::decryption_failed);
  bad = env;
  bad.nonce[23] ^= 0x80;
  expect_code(open_request(bad, k.enc.shared_secret), Errc::decryption_failed);
  bad = env;
  bad.version = Version::v1;
  expect_code(open_request(bad, k.enc.shared_secret), Errc::decryption_failed);
  bad = k.seal(Version::v1);
  bad.version = Version::v2;
  expect_code(open_request(bad, k.enc.shared_secret), Errc::decryption_failed);
  Keys other;
  expect_code(open_request(env, other.enc.shared_secret), Errc::decryption_failed);
  bad = env;
  bad.encrypted_inference.resize(crypto::kAeadTagBytes - 1);
  expect_code(open_request(bad, k.enc.shared_secret), Errc::decryption_failed);
}

TEST(Request, ErrorsNeverEchoPlaintext) {
  Keys k;
  auto bad = k.seal(Version::v2);
  bad.encrypted_inference[0] ^= 1;
  auto r = open_request(bad, k.enc.shared_secret);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message.find("private"), std::string::npos);
}

TEST(Request, RequestAdFormat) {
  const crypto::KeyId id{0xa5, 0x9b, 0xa4, 0xaf, 0xa0, 0x29, 0x3a, 0x7c};
  EXPECT_EQ(request_ad(Version::v2, id, 1764004858), "rvenc/2|a59ba4afa0293a7c|1764004858");
  EXPECT_EQ(request_ad(Version::v3, id, 1764004858), "rvenc/3|a59ba4afa0293a7c|1764004858");
  EXPECT_EQ(request_ad(Version::v2, id, 0), "rvenc/2|a59ba4afa0293a7c|0");
}

// --- Events -----------------------------------------------------------------------------------

struct Stream {
  EventKind kind;
  std::string plaintext;
  std::string payload;
};

// The sealed events of one answer; version 3's start with its plain init (the salt's hex).
std::vector<Stream> seal_stream(Version version, const Keys& k) {
  ResponseSealer sealer(version, k.enc.shared_secret, k.nonce);
  std::vector<Stream> out = {{EventKind::data, R"({"choices":[{"delta":{"content":"Hel"}}]})", {}},
                             {EventKind::data, R"({"choices":[{"delta":{"content":"lo"}}]})", {}},
                             {EventKind::error, R"({"error":{"message":"m","type":"t","code":"c"}})", {}},
                             {EventKind::done, "[DONE]", {}}};
  for (auto& e : out) e.payload = sealer.seal_payload(e.kind, e.plaintext);
  EXPECT_EQ(sealer.next_index(), version == Version::v1 ? 0u : 4u);
  if (version == Version::v3) {
    EXPECT_EQ(sealer.init_event(), "event: init\ndata: " + to_hex(sealer.salt()) + "\n\n");
    out.insert(out.begin(), Stream{EventKind::init, "", to_hex(sealer.salt())});
  } else {
    EXPECT_EQ(sealer.init_event(), "");
  }
  return out;
}

// A v3 opener that has taken the stream's init (so tests can index the sealed events as in v2).
ResponseOpener v3_opener(const Keys& k, const std::vector<Stream>& stream) {
  ResponseOpener opener(Version::v3, k.enc.shared_secret, k.nonce);
  EXPECT_TRUE(opener.open(EventKind::init, stream.at(0).payload).has_value());
  return opener;
}

TEST(Events, RoundTripAllVersions) {
  Keys k;
  for (auto version : {Version::v1, Version::v2, Version::v3}) {
    const auto stream = seal_stream(version, k);
    ResponseOpener opener(version, k.enc.shared_secret, k.nonce);
    for (const auto& e : stream) {
      EXPECT_FALSE(opener.done());
      auto opened = opener.open(e.kind, e.payload);
      ASSERT_TRUE(opened.has_value()) << opened.error().to_string();
      EXPECT_EQ(opened->plaintext.view(), e.plaintext);
    }
    EXPECT_TRUE(opener.done());
    // Nothing may follow done.
    expect_code(opener.open(EventKind::data, stream[0].payload), Errc::tampered_stream);
  }
}

TEST(Events, V3TwoAnswersToOneRequestShareNoKeystream) {
  // The finding behind version 3: a request answered twice (a replay to a restarted enclave) under
  // version 2 gives byte-equal ciphertexts where the answers agree; under version 3 each answer
  // has its own salt, key and nonces.
  Keys k;
  const std::string chunk = R"({"choices":[{"delta":{"content":"the same words"}}]})";
  ResponseSealer v2_first(Version::v2, k.enc.shared_secret, k.nonce), v2_second(Version::v2, k.enc.shared_secret, k.nonce);
  EXPECT_EQ(v2_first.seal_payload(EventKind::data, chunk), v2_second.seal_payload(EventKind::data, chunk));

  ResponseSealer first(Version::v3, k.enc.shared_secret, k.nonce), second(Version::v3, k.enc.shared_secret, k.nonce);
  EXPECT_NE(first.salt(), second.salt());
  const auto a = from_hex(first.seal_payload(EventKind::data, chunk), "a").value();
  const auto b = from_hex(second.seal_payload(EventKind::data, chunk), "b").value();
  ASSERT_EQ(a.size(), b.size());
  std::size_t equal = 0;
  for (std::size_t i = 0; i < a.size(); ++i) equal += a[i] == b[i];
  EXPECT_LT(equal, a.size() / 8);  // about 1/256 of the bytes agree by chance
  // Neither answer's events open under the other's salt.
  ResponseOpener opener(Version::v3, k.enc.shared_secret, k.nonce);
  ASSERT_TRUE(opener.open(EventKind::init, to_hex(first.salt())).has_value());
  expect_code(opener.open(EventKind::data, to_hex(b)), Errc::tampered_stream);
}

TEST(Events, V3SealerFromTheRequestsResponseSecretMatchesTheClients) {
  // The enclave derives the responseSecret once, while opening the request (ResponseSealer::for_v3);
  // the client derives it from the shared secret: the streams must agree.
  Keys k;
  const auto env = k.seal(Version::v3);
  crypto::Secret<32> secret;
  auto opened = open_request(env, k.enc.shared_secret, &secret);
  ASSERT_TRUE(opened) << opened.error().to_string();
  EXPECT_EQ(opened->view(), kRequest);
  EXPECT_TRUE(secret == derive_v3_keys(k.enc.shared_secret, k.nonce).response_secret);
  auto sealer = ResponseSealer::for_v3(secret);
  ResponseOpener opener(Version::v3, k.enc.shared_secret, k.nonce);
  ASSERT_TRUE(opener.open(EventKind::init, to_hex(sealer.salt())).has_value());
  auto data = opener.open(EventKind::data, sealer.seal_payload(EventKind::data, "chunk"));
  ASSERT_TRUE(data) << data.error().to_string();
  EXPECT_EQ(data->plaintext.view(), "chunk");
  // Versions 1 and 2 leave it alone.
  crypto::Secret<32> untouched;
  ASSERT_TRUE(open_request(k.seal(Version::v2), k.enc.shared_secret, &untouched));
  EXPECT_TRUE(untouched == crypto::Secret<32>());
}

TEST(Events, V3InitRules) {
  Keys k;
  const auto s = seal_stream(Version::v3, k);
  {
    ResponseOpener opener(Version::v3, k.enc.shared_secret, k.nonce);
    expect_code(opener.open(s[1].kind, s[1].payload), Errc::tampered_stream);  // no init
  }
  {
    ResponseOpener opener = v3_opener(k, s);
    expect_code(opener.open(EventKind::init, s[0].payload), Errc::tampered_stream);  // a second init
  }
  {
    ResponseOpener opener = v3_opener(k, s);
    ASSERT_TRUE(opener.open(s[1].kind, s[1].payload).has_value());
    expect_code(opener.open(EventKind::init, s[0].payload), Errc::tampered_stream);  // init after data
  }
  for (const std::string& bad : {s[0].payload.substr(2), s[0].payload + "00", std::string(), std::string(64, 'g'),
                                 std::string("zz") + s[0].payload.substr(2)}) {
    ResponseOpener opener(Version::v3, k.enc.shared_secret, k.nonce);
    expect_code(opener.open(EventKind::init, bad), Errc::tampered_stream);
    expect_code(opener.open(s[1].kind, s[1].payload), Errc::tampered_stream);  // stays failed
  }
  {
    // Another salt derives other keys: the genuine events no longer authenticate.
    auto salt = from_hex(s[0].payload, "salt").value();
    salt[5] ^= 0x10;
    ResponseOpener opener(Version::v3, k.enc.shared_secret, k.nonce);
    ASSERT_TRUE(opener.open(EventKind::init, to_hex(salt)).has_value());
    expect_code(opener.open(s[1].kind, s[1].payload), Errc::tampered_stream);
  }
  {
    // The gateway's plain error may come before init (the link broke right after the head).
    ResponseOpener opener(Version::v3, k.enc.shared_secret, k.nonce);
    expect_code(opener.open(EventKind::error, R"({"error":{"message":"gone"}})"), Errc::transport_error);
  }
}

TEST(Events, V3ReorderSkipReplayAndRelabelFail) {
  Keys k;
  const auto s = seal_stream(Version::v3, k);  // s[0] is init
  {
    ResponseOpener opener = v3_opener(k, s);
    expect_code(opener.open(s[2].kind, s[2].payload), Errc::tampered_stream);  // first skipped
  }
  {
    ResponseOpener opener = v3_opener(k, s);
    ASSERT_TRUE(opener.open(s[1].kind, s[1].payload).has_value());
    expect_code(opener.open(s[1].kind, s[1].payload), Errc::tampered_stream);  // replayed
  }
  {
    ResponseOpener opener = v3_opener(k, s);
    expect_code(opener.open(EventKind::done, s[1].payload), Errc::tampered_stream);  // relabelled
  }
  {
    // Version 2 keys of the same request never open a version 3 stream.
    ResponseOpener opener(Version::v2, k.enc.shared_secret, k.nonce);
    ASSERT_TRUE(opener.open(EventKind::init, s[0].payload).has_value());  // an unknown kind to v2
    expect_code(opener.open(s[1].kind, s[1].payload), Errc::tampered_stream);
  }
}

TEST(Events, FlippedBitAtEveryPayloadByteFailsAndOpenerStaysFailed) {
  Keys k;
  for (auto version : {Version::v2, Version::v3}) {
    const auto stream = seal_stream(version, k);
    // A changed salt is caught at the first sealed event (V3InitRules), not at init.
    for (std::size_t event = version == Version::v3 ? 1 : 0; event < stream.size(); ++event) {
      const auto bytes = from_hex(stream[event].payload, "payload").value();
      for (std::size_t i = 0; i < bytes.size(); ++i) {
        ResponseOpener opener(version, k.enc.shared_secret, k.nonce);
        for (std::size_t before = 0; before < event; ++before) {
          ASSERT_TRUE(opener.open(stream[before].kind, stream[before].payload).has_value());
        }
        auto bad = bytes;
        bad[i] ^= static_cast<std::uint8_t>(1u << (i % 8));
        expect_code(opener.open(stream[event].kind, to_hex(bad)), Errc::tampered_stream);
        // The genuine event cannot repair a failed stream.
        expect_code(opener.open(stream[event].kind, stream[event].payload), Errc::tampered_stream);
      }
    }
  }
}

TEST(Events, V1FlippedBitAtEveryPayloadByteFails) {
  Keys k;
  const auto stream = seal_stream(Version::v1, k);
  const auto bytes = from_hex(stream[0].payload, "payload").value();
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    ResponseOpener opener(Version::v1, k.enc.shared_secret, k.nonce);
    auto bad = bytes;
    bad[i] ^= static_cast<std::uint8_t>(1u << (i % 8));
    expect_code(opener.open(EventKind::data, to_hex(bad)), Errc::tampered_stream);
  }
}

TEST(Events, ReorderSkipReplayFail) {
  Keys k;
  const auto s = seal_stream(Version::v2, k);
  {
    ResponseOpener opener(Version::v2, k.enc.shared_secret, k.nonce);
    expect_code(opener.open(s[1].kind, s[1].payload), Errc::tampered_stream);  // reordered / first skipped
  }
  {
    ResponseOpener opener(Version::v2, k.enc.shared_secret, k.nonce);
    ASSERT_TRUE(opener.open(s[0].kind, s[0].payload).has_value());
    expect_code(opener.open(s[2].kind, s[2].payload), Errc::tampered_stream);  // skipped event 1
  }
  {
    ResponseOpener opener(Version::v2, k.enc.shared_secret, k.nonce);
    ASSERT_TRUE(opener.open(s[0].kind, s[0].payload).has_value());
    expect_code(opener.open(s[0].kind, s[0].payload), Errc::tampered_stream);  // replayed
  }
  {
    ResponseOpener opener(Version::v2, k.enc.shared_secret, k.nonce);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(opener.open(s[i].kind, s[i].payload).has_value());
    // An early "done" is impossible to forge: event 2 replayed as done fails.
    expect_code(opener.open(EventKind::done, s[2].payload), Errc::tampered_stream);
  }
  {
    // Events of another request (other nonce) do not open.
    Keys other = k;
    other.nonce = crypto::random_nonce();
    ResponseOpener opener(Version::v2, other.enc.shared_secret, other.nonce);
    expect_code(opener.open(s[0].kind, s[0].payload), Errc::tampered_stream);
  }
}

TEST(Events, WrongKindFails) {
  Keys k;
  const auto s = seal_stream(Version::v2, k);
  for (auto kind : {EventKind::error, EventKind::done}) {
    ResponseOpener opener(Version::v2, k.enc.shared_secret, k.nonce);
    expect_code(opener.open(kind, s[0].payload), Errc::tampered_stream);
  }
  ResponseOpener opener(Version::v2, k.enc.shared_secret, k.nonce);
  ASSERT_TRUE(opener.open(s[0].kind, s[0].payload).has_value());
  ASSERT_TRUE(opener.open(s[1].kind, s[1].payload).has_value());
  expect_code(opener.open(EventKind::data, s[2].payload), Errc::tampered_stream);  // error relabelled as data
}

TEST(Events, MalformedPayloadsFail) {
  Keys k;
  const auto s = seal_stream(Version::v2, k);
  const std::string& good = s[0].payload;
  for (const std::string& bad : {good.substr(0, good.size() - 1), good.substr(0, good.size() - 2),
                                 good.substr(0, 30), std::string(), "zz" + good.substr(2), good + "00",
                                 std::string("[DONE]")}) {
    ResponseOpener opener(Version::v2, k.enc.shared_secret, k.nonce);
    expect_code(opener.open(EventKind::data, bad), Errc::tampered_stream);
  }
}

TEST(Events, DoneMustCarryDoneMarker) {
  Keys k;
  ResponseSealer sealer(Version::v2, k.enc.shared_secret, k.nonce);
  const auto payload = sealer.seal_payload(EventKind::done, "not done");
  ResponseOpener opener(Version::v2, k.enc.shared_secret, k.nonce);
  expect_code(opener.open(EventKind::done, payload), Errc::tampered_stream);
  EXPECT_FALSE(opener.done());
}

TEST(Events, V2PlainGatewayErrorIsUnauthenticated) {
  Keys k;
  ResponseOpener opener(Version::v2, k.enc.shared_secret, k.nonce);
  auto r = opener.open(EventKind::error,
                       R"({"error":{"type":"upstream_error","source":"gateway","message":"enclave went away"}})");
  expect_code(r, Errc::transport_error);
  EXPECT_NE(r.error().message.find("enclave went away"), std::string::npos);
  expect_code(opener.open(EventKind::data, "00"), Errc::tampered_stream);
  // A plain JSON payload is not accepted as data.
  ResponseOpener other(Version::v2, k.enc.shared_secret, k.nonce);
  expect_code(other.open(EventKind::data, R"({"choices":[]})"), Errc::tampered_stream);
}

TEST(Events, V1PlainErrorAndDone) {
  Keys k;
  ResponseOpener opener(Version::v1, k.enc.shared_secret, k.nonce);
  const std::string plain = R"({"error":{"message":"engine down","type":"engine_error","code":"x"}})";
  auto r = opener.open(EventKind::error, plain);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->plaintext.view(), plain);
  expect_code(opener.open(EventKind::done, "[done]"), Errc::tampered_stream);
  ResponseOpener fresh(Version::v1, k.enc.shared_secret, k.nonce);
  ASSERT_TRUE(fresh.open(EventKind::done, "[DONE]").has_value());
  EXPECT_TRUE(fresh.done());
  ResponseSealer sealer(Version::v1, k.enc.shared_secret, k.nonce);
  EXPECT_EQ(sealer.seal_event(EventKind::done, "[DONE]"), "event: done\ndata: [DONE]\n\n");
}

TEST(Events, KindNames) {
  for (auto kind : {EventKind::init, EventKind::data, EventKind::error, EventKind::done}) {
    EXPECT_EQ(kind_from_name(kind_name(kind)), kind);
  }
  EXPECT_FALSE(kind_from_name("usage").has_value());
  EXPECT_FALSE(kind_from_name("message").has_value());
  EXPECT_FALSE(kind_from_name("").has_value());
}

}  // namespace
}  // namespace rvenc::protocol
