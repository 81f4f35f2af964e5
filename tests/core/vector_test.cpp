// Every case of the shared test vectors (/work/shared/vectors), in both directions.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "rvenc/common/hex.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "rvenc/protocol/attestation.hpp"
#include "rvenc/protocol/envelope.hpp"
#include "rvenc/protocol/sealing.hpp"
#include "rvenc/protocol/sse.hpp"
#include "support/test_support.hpp"

namespace rvenc {
namespace {

namespace json = boost::json;
using protocol::EventKind;
using protocol::Version;

std::string str(const json::value& v) { return std::string(v.as_string().c_str(), v.as_string().size()); }
std::string field(const json::value& c, std::string_view name) { return str(c.as_object().at(name)); }

std::vector<std::uint8_t> bytes(const json::value& c, std::string_view name) {
  auto decoded = from_hex(field(c, name), name);
  EXPECT_TRUE(decoded.has_value()) << name;
  return decoded.value_or(std::vector<std::uint8_t>{});
}

template <class T>
T fixed(const json::value& c, std::string_view name) {
  T out;
  EXPECT_TRUE(from_hex_into(field(c, name), std::span<std::uint8_t>(out.data(), out.size()), name).has_value()) << name;
  return out;
}

const json::array& cases(const std::string& file) {
  static std::map<std::string, json::value> loaded;
  auto [it, inserted] = loaded.try_emplace(file);
  if (inserted) it->second = test::load_vector_file(file);
  return it->second.as_object().at("cases").as_array();
}

crypto::SharedSecret shared_secret_of(const json::value& c) { return fixed<crypto::SharedSecret>(c, "sharedSecret"); }

// --- xwing.json -----------------------------------------------------------------------------------

TEST(XWing, KeygenFromSeedGivesPublicKeyAndKeyId) {
  ASSERT_FALSE(cases("xwing").empty());
  for (const auto& c : cases("xwing")) {
    const auto pair = crypto::xwing_keypair_from_seed(fixed<crypto::XWingSeed>(c, "seed"));
    EXPECT_EQ(to_hex(pair.public_key), field(c, "publicKey"));
    EXPECT_EQ(to_hex(crypto::key_id(pair.public_key)), field(c, "keyId"));
  }
}

TEST(XWing, DeterministicEncapsulationGivesCipherTextAndSharedSecret) {
  for (const auto& c : cases("xwing")) {
    const auto seed = bytes(c, "encapsulationSeed");
    ASSERT_EQ(seed.size(), crypto::kXWingEncapsSeedBytes);
    auto enc = crypto::xwing_encapsulate_deterministic(fixed<crypto::XWingPublicKey>(c, "publicKey"),
                                                       std::span<const std::uint8_t, 64>(seed.data(), 64));
    ASSERT_TRUE(enc.has_value());
    EXPECT_EQ(to_hex(enc->cipher_text), field(c, "cipherText"));
    EXPECT_EQ(to_hex(enc->shared_secret.span()), field(c, "sharedSecret"));
  }
}

TEST(XWing, DecapsulationGivesSharedSecret) {
  for (const auto& c : cases("xwing")) {
    auto ss = crypto::xwing_decapsulate(fixed<crypto::XWingCipherText>(c, "cipherText"),
                                        fixed<crypto::XWingSeed>(c, "seed"));
    ASSERT_TRUE(ss.has_value());
    EXPECT_EQ(to_hex(ss->span()), field(c, "sharedSecret"));
  }
}

// --- v1.json and v2.json ----------------------------------------------------------------------------

protocol::SealInput seal_input(const json::value& c, Version version, const crypto::SharedSecret& ss,
                               const crypto::XWingCipherText& ct) {
  protocol::SealInput in;
  in.version = version;
  in.shared_secret = &ss;
  in.cipher_text = &ct;
  in.key_id = fixed<crypto::KeyId>(c, "keyId");
  in.nonce = fixed<crypto::Nonce>(c, "nonce");
  if (version != Version::v1) in.timestamp = c.as_object().at("timestamp").as_int64();
  return in;
}

void check_key_material(const json::value& c) {
  const auto pair = crypto::xwing_keypair_from_seed(fixed<crypto::XWingSeed>(c, "enclaveSeed"));
  EXPECT_EQ(to_hex(pair.public_key), field(c, "publicKey"));
  EXPECT_EQ(to_hex(crypto::key_id(pair.public_key)), field(c, "keyId"));
  const auto seed = bytes(c, "encapsulationSeed");
  auto enc = crypto::xwing_encapsulate_deterministic(pair.public_key, std::span<const std::uint8_t, 64>(seed.data(), 64));
  ASSERT_TRUE(enc.has_value());
  EXPECT_EQ(to_hex(enc->cipher_text), field(c, "cipherText"));
  EXPECT_EQ(to_hex(enc->shared_secret.span()), field(c, "sharedSecret"));
  auto ss = crypto::xwing_decapsulate(enc->cipher_text, pair.seed);
  ASSERT_TRUE(ss.has_value());
  EXPECT_EQ(to_hex(ss->span()), field(c, "sharedSecret"));
}

void check_seal_request(const std::string& file, Version version) {
  ASSERT_FALSE(cases(file).empty());
  for (const auto& c : cases(file)) {
    check_key_material(c);
    const auto ss = shared_secret_of(c);
    const auto ct = fixed<crypto::XWingCipherText>(c, "cipherText");
    const auto env = protocol::seal_request(seal_input(c, version, ss, ct), field(c, "request"));
    const std::string text = protocol::serialize_envelope(env);
    const auto ours = json::parse(text);
    const auto& expected = c.as_object().at("body");
    EXPECT_EQ(ours, expected);
    // Same fields in the same order as the vector.
    std::vector<std::string> our_keys, vector_keys;
    for (const auto& kv : ours.as_object()) our_keys.emplace_back(kv.key());
    for (const auto& kv : expected.as_object()) vector_keys.emplace_back(kv.key());
    EXPECT_EQ(our_keys, vector_keys);
    EXPECT_EQ(text, json::serialize(expected));
  }
}

void check_open_request(const std::string& file, Version version) {
  for (const auto& c : cases(file)) {
    auto env = protocol::parse_envelope(json::serialize(c.as_object().at("body")));
    ASSERT_TRUE(env.has_value()) << env.error().to_string();
    EXPECT_EQ(env->version, version);
    // The enclave side: decapsulate with its seed, then open.
    auto ss = crypto::xwing_decapsulate(env->cipher_text, fixed<crypto::XWingSeed>(c, "enclaveSeed"));
    ASSERT_TRUE(ss.has_value());
    auto plain = protocol::open_request(*env, *ss);
    ASSERT_TRUE(plain.has_value()) << plain.error().to_string();
    EXPECT_EQ(plain->view(), field(c, "request"));
  }
}

void check_seal_events(const std::string& file, Version version) {
  for (const auto& c : cases(file)) {
    const auto ss = shared_secret_of(c);
    protocol::ResponseSealer sealer(version, ss, fixed<crypto::Nonce>(c, "nonce"));
    protocol::ResponseSealer event_sealer(version, ss, fixed<crypto::Nonce>(c, "nonce"));
    std::string sse;
    const auto& events = c.as_object().at("events").as_array();
    ASSERT_FALSE(events.empty());
    for (const auto& e : events) {
      const auto kind = protocol::kind_from_name(field(e, "kind"));
      ASSERT_TRUE(kind.has_value());
      if (const auto* index = e.as_object().if_contains("index"); index != nullptr && version == Version::v2) {
        EXPECT_EQ(sealer.next_index(), index->as_int64());
      }
      EXPECT_EQ(sealer.seal_payload(*kind, field(e, "plaintext")), field(e, "payload"));
      sse += event_sealer.seal_event(*kind, field(e, "plaintext"));
    }
    EXPECT_EQ(sse, field(c, "sse"));
  }
}

void check_open_events(const std::string& file, Version version) {
  for (const auto& c : cases(file)) {
    // Through the SSE parser, one byte at a time, as a client reads the vector's stream.
    protocol::SseParser parser;
    std::vector<protocol::SseEvent> parsed;
    for (char ch : field(c, "sse")) ASSERT_TRUE(parser.feed(std::string_view(&ch, 1), parsed).has_value());
    EXPECT_FALSE(parser.has_partial_event());
    const auto& events = c.as_object().at("events").as_array();
    ASSERT_EQ(parsed.size(), events.size());

    protocol::ResponseOpener opener(version, shared_secret_of(c), fixed<crypto::Nonce>(c, "nonce"));
    for (std::size_t i = 0; i < events.size(); ++i) {
      EXPECT_EQ(parsed[i].event, field(events[i], "kind"));
      EXPECT_EQ(parsed[i].data, field(events[i], "payload"));
      const auto kind = protocol::kind_from_name(parsed[i].event);
      ASSERT_TRUE(kind.has_value());
      auto opened = opener.open(*kind, parsed[i].data);
      ASSERT_TRUE(opened.has_value()) << opened.error().to_string();
      EXPECT_EQ(opened->kind, *kind);
      EXPECT_EQ(opened->plaintext.view(), field(events[i], "plaintext"));
    }
    EXPECT_TRUE(opener.done());
  }
}

TEST(V1, SealRequestGivesBody) { check_seal_request("v1", Version::v1); }
TEST(V1, OpenRequestGivesPlaintext) { check_open_request("v1", Version::v1); }
TEST(V1, SealEventsGivesPayloadsAndSse) { check_seal_events("v1", Version::v1); }
TEST(V1, OpenEventsGivesPlaintexts) { check_open_events("v1", Version::v1); }

TEST(V2, DerivedKeys) {
  for (const auto& c : cases("v2")) {
    const auto keys = protocol::derive_v2_keys(shared_secret_of(c), fixed<crypto::Nonce>(c, "nonce"));
    const auto& derived = c.as_object().at("derived");
    EXPECT_EQ(to_hex(keys.request_key.span()), field(derived, "requestKey"));
    EXPECT_EQ(to_hex(keys.response_key.span()), field(derived, "responseKey"));
    EXPECT_EQ(to_hex(keys.response_prefix), field(derived, "responsePrefix"));
    EXPECT_EQ(c.as_object().at("body").as_object().at("timestamp"), c.as_object().at("timestamp"));
  }
}
TEST(V2, SealRequestGivesBody) { check_seal_request("v2", Version::v2); }
TEST(V2, OpenRequestGivesPlaintext) { check_open_request("v2", Version::v2); }
TEST(V2, SealEventsGivesPayloadsAndSse) { check_seal_events("v2", Version::v2); }
TEST(V2, OpenEventsGivesPlaintexts) { check_open_events("v2", Version::v2); }

// --- v3.json ---------------------------------------------------------------------------------------

protocol::ResponseSalt salt_of(const json::value& c) { return fixed<protocol::ResponseSalt>(c, "responseSalt"); }

// Opens a whole SSE text as a client does: the first error, truncated_stream without an
// authenticated done, or the plaintexts of the sealed events in order.
Result<std::vector<std::string>> open_v3_stream(const json::value& c, std::string_view sse) {
  protocol::SseParser parser;
  std::vector<protocol::SseEvent> parsed;
  if (auto ok = parser.feed(sse, parsed); !ok) return std::unexpected(ok.error());
  protocol::ResponseOpener opener(Version::v3, shared_secret_of(c), fixed<crypto::Nonce>(c, "nonce"));
  std::vector<std::string> out;
  for (const auto& event : parsed) {
    const auto kind = protocol::kind_from_name(event.event);
    if (!kind) continue;
    auto opened = opener.open(*kind, event.data);
    if (!opened) return std::unexpected(opened.error());
    if (opened->kind != EventKind::init) out.emplace_back(opened->plaintext.view());
  }
  if (!opener.done()) return fail(Errc::truncated_stream, "no done");
  return out;
}

std::vector<std::string> plaintexts(const json::value& c) {
  std::vector<std::string> out;
  for (const auto& e : c.as_object().at("events").as_array()) out.push_back(field(e, "plaintext"));
  return out;
}

TEST(V3, DerivedKeys) {
  ASSERT_FALSE(cases("v3").empty());
  for (const auto& c : cases("v3")) {
    const auto nonce = fixed<crypto::Nonce>(c, "nonce");
    const auto keys = protocol::derive_v3_keys(shared_secret_of(c), nonce);
    const auto& derived = c.as_object().at("derived");
    EXPECT_EQ(to_hex(keys.request_key.span()), field(derived, "requestKey"));
    EXPECT_EQ(to_hex(keys.response_secret.span()), field(derived, "responseSecret"));
    EXPECT_EQ(to_hex(crypto::hkdf_extract(salt_of(c), keys.response_secret.span()).span()), field(derived, "rprk"));
    const auto response = protocol::ResponseKeys::derive_v3(keys.response_secret, salt_of(c));
    EXPECT_EQ(to_hex(response.key.span()), field(derived, "responseKey"));
    EXPECT_EQ(to_hex(response.prefix), field(derived, "responsePrefix"));
  }
}
TEST(V3, SealRequestGivesBody) { check_seal_request("v3", Version::v3); }
TEST(V3, OpenRequestGivesPlaintext) { check_open_request("v3", Version::v3); }

TEST(V3, SealEventsGivesPayloadsAndSse) {
  for (const auto& c : cases("v3")) {
    protocol::ResponseSealer sealer(shared_secret_of(c), fixed<crypto::Nonce>(c, "nonce"), salt_of(c));
    std::string sse = sealer.init_event();
    for (const auto& e : c.as_object().at("events").as_array()) {
      const auto kind = protocol::kind_from_name(field(e, "kind"));
      ASSERT_TRUE(kind.has_value());
      EXPECT_EQ(sealer.next_index(), e.as_object().at("index").as_int64());
      const std::string payload = sealer.seal_payload(*kind, field(e, "plaintext"));
      EXPECT_EQ(payload, field(e, "payload"));
      sse += protocol::format_event(field(e, "kind"), payload);
    }
    EXPECT_EQ(sse, field(c, "sse"));
  }
}

TEST(V3, OpenEventsGivesPlaintexts) {
  for (const auto& c : cases("v3")) {
    auto opened = open_v3_stream(c, field(c, "sse"));
    ASSERT_TRUE(opened.has_value()) << opened.error().to_string();
    EXPECT_EQ(*opened, plaintexts(c));
  }
}

TEST(V3, UppercaseSaltIsAccepted) {
  for (const auto& c : cases("v3")) {
    auto opened = open_v3_stream(c, field(c, "uppercaseSaltAccepted"));
    ASSERT_TRUE(opened.has_value()) << opened.error().to_string();
    EXPECT_EQ(*opened, plaintexts(c));
  }
}

TEST(V3, NegativeStreamsGiveTheirErrors) {
  for (const auto& c : cases("v3")) {
    const auto& negative = c.as_object().at("negative").as_array();
    ASSERT_FALSE(negative.empty());
    for (const auto& n : negative) {
      auto opened = open_v3_stream(c, field(n, "sse"));
      ASSERT_FALSE(opened.has_value()) << field(n, "name");
      EXPECT_EQ(code_name(opened.error().code), field(n, "error")) << field(n, "name") << ": " << opened.error().to_string();
    }
  }
}

TEST(V3, AVersion2OpenerIgnoresInitAndAVersion3StreamFailsUnderIt) {
  // Keys of one version never open the other's stream, whatever the init says.
  const auto& c = cases("v3").at(0);
  protocol::ResponseOpener v2(Version::v2, shared_secret_of(c), fixed<crypto::Nonce>(c, "nonce"));
  protocol::SseParser parser;
  std::vector<protocol::SseEvent> parsed;
  ASSERT_TRUE(parser.feed(field(c, "sse"), parsed).has_value());
  ASSERT_GE(parsed.size(), 2u);
  EXPECT_TRUE(v2.open(EventKind::init, parsed[0].data).has_value());
  auto second = v2.open(EventKind::data, parsed[1].data);
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code, Errc::tampered_stream);
}

// --- attestation.json and pad.json ------------------------------------------------------------------

TEST(Attestation, ReportData) {
  ASSERT_FALSE(cases("attestation").empty());
  for (const auto& c : cases("attestation")) {
    const auto rd = protocol::report_data(fixed<crypto::XWingPublicKey>(c, "publicKey"),
                                          fixed<protocol::Challenge>(c, "challenge"));
    EXPECT_EQ(to_hex(rd), field(c, "reportData"));
  }
}

TEST(Pad, PadAndUnpad) {
  ASSERT_FALSE(cases("pad").empty());
  for (const auto& c : cases("pad")) {
    const auto input = bytes(c, "input");
    const auto padded = crypto::pad(input);
    EXPECT_EQ(to_hex(padded), field(c, "padded"));
    auto size = crypto::unpadded_size(bytes(c, "padded"));
    ASSERT_TRUE(size.has_value());
    EXPECT_EQ(*size, input.size());
  }
}

}  // namespace
}  // namespace rvenc
