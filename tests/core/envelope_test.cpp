// Strict envelope parsing: every malformed body gets its specific error and never echoes values.
#include <gtest/gtest.h>

#include <cctype>

#include <boost/json.hpp>

#include "rvenc/common/hex.hpp"
#include "rvenc/protocol/envelope.hpp"
#include "rvenc/protocol/sealing.hpp"

namespace rvenc::protocol {
namespace {

namespace json = boost::json;

struct Fixture {
  crypto::XWingKeyPair enclave = crypto::xwing_generate_keypair();
  crypto::Encapsulation enc = crypto::xwing_encapsulate(enclave.public_key).value();

  RequestEnvelope seal(Version version, std::string_view plaintext = R"({"model":"m"})") const {
    SealInput in;
    in.version = version;
    in.shared_secret = &enc.shared_secret;
    in.cipher_text = &enc.cipher_text;
    in.key_id = crypto::key_id(enclave.public_key);
    in.nonce = crypto::random_nonce();
    in.timestamp = 1764004858;
    return seal_request(in, plaintext);
  }
  json::object body(Version version) const { return json::parse(serialize_envelope(seal(version))).as_object(); }
};

// Every refusal is checked twice: the gateway's check_envelope must refuse alike, word for word.
Error parse_error(const std::string& text) {
  auto r = parse_envelope(text);
  EXPECT_FALSE(r.has_value()) << text.substr(0, 120);
  auto checked = check_envelope(text);
  EXPECT_FALSE(checked.has_value()) << text.substr(0, 120);
  if (r && checked) return Error{};
  if (!r && !checked) {
    EXPECT_EQ(checked.error().code, r.error().code);
    EXPECT_EQ(checked.error().message, r.error().message);
  }
  return r ? Error{} : r.error();
}
Error parse_error(const json::object& obj) { return parse_error(json::serialize(obj)); }

TEST(Envelope, Version3ParsesAndSerializesWithItsNumber) {
  Fixture f;
  const auto env = f.seal(Version::v3);
  const std::string text = serialize_envelope(env);
  EXPECT_TRUE(text.starts_with(R"({"version":3,"keyId":")")) << text.substr(0, 40);
  auto parsed = parse_envelope(text);
  ASSERT_TRUE(parsed) << parsed.error().to_string();
  EXPECT_EQ(parsed->version, Version::v3);
  EXPECT_EQ(parsed->key_id, env.key_id);
  EXPECT_EQ(parsed->timestamp, env.timestamp);
  auto summary = check_envelope(text);
  ASSERT_TRUE(summary);
  EXPECT_EQ(summary->version, Version::v3);
  EXPECT_EQ(summary->key_id, env.key_id);
}

TEST(Envelope, RoundTripsBothVersions) {
  Fixture f;
  for (auto version : {Version::v1, Version::v2}) {
    const auto env = f.seal(version);
    auto parsed = parse_envelope(serialize_envelope(env));
    ASSERT_TRUE(parsed.has_value()) << parsed.error().to_string();
    EXPECT_EQ(parsed->version, version);
    EXPECT_EQ(parsed->encrypted_inference, env.encrypted_inference);
    EXPECT_EQ(parsed->cipher_text, env.cipher_text);
    EXPECT_EQ(parsed->nonce, env.nonce);
    if (version == Version::v2) {
      EXPECT_EQ(parsed->key_id, env.key_id);
      EXPECT_EQ(parsed->timestamp, env.timestamp);
    }
    EXPECT_EQ(open_request(*parsed, f.enc.shared_secret).value().view(), R"({"model":"m"})");

    auto summary = check_envelope(serialize_envelope(env));
    ASSERT_TRUE(summary.has_value()) << summary.error().to_string();
    EXPECT_EQ(summary->version, version);
    EXPECT_EQ(summary->encrypted_inference_bytes, env.encrypted_inference.size());
    if (version == Version::v2) {
      EXPECT_EQ(summary->key_id, env.key_id);
      EXPECT_EQ(summary->timestamp, env.timestamp);
    }
  }
}

TEST(Envelope, EscapedStringsAreReadAsTheirValue) {
  // JSON escapes are syntax: an escaped hex digit is that digit (keys and values escaped alike).
  Fixture f;
  const auto env = f.seal(Version::v2);
  std::string text = serialize_envelope(env);
  std::string escaped;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const bool in_hex = text[i] >= 'a' && text[i] <= 'f' && i > 0 && (std::isxdigit(text[i - 1]) || text[i - 1] == '"');
    escaped += in_hex ? "\\u00" + to_hex(std::vector<std::uint8_t>{static_cast<std::uint8_t>(text[i])}) : std::string(1, text[i]);
  }
  ASSERT_NE(escaped, text);
  auto parsed = parse_envelope(escaped);
  ASSERT_TRUE(parsed.has_value()) << parsed.error().to_string();
  EXPECT_EQ(parsed->encrypted_inference, env.encrypted_inference);
  EXPECT_EQ(parsed->cipher_text, env.cipher_text);
  EXPECT_EQ(parsed->key_id, env.key_id);
  auto summary = check_envelope(escaped);
  ASSERT_TRUE(summary.has_value()) << summary.error().to_string();
  EXPECT_EQ(summary->key_id, env.key_id);
  EXPECT_EQ(summary->encrypted_inference_bytes, env.encrypted_inference.size());
}

TEST(Envelope, UppercaseHexAccepted) {
  Fixture f;
  auto body = f.body(Version::v2);
  for (auto name : {"keyId", "encryptedInference", "cipherText", "nonce"}) {
    std::string upper(body.at(name).as_string().c_str());
    for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    body[name] = upper;
  }
  auto parsed = parse_envelope(json::serialize(body));
  ASSERT_TRUE(parsed.has_value()) << parsed.error().to_string();
  EXPECT_TRUE(open_request(*parsed, f.enc.shared_secret).has_value());
}

TEST(Envelope, NotJsonOrNotObject) {
  for (std::string text : {"", "{", "not json", "[]", "2", "null", "\"x\"", R"({"a":1} trailing)"}) {
    EXPECT_EQ(parse_error(text).code, Errc::invalid_request) << text;
  }
}

TEST(Envelope, UnknownVersionsAreUnsupported) {
  Fixture f;
  for (std::string v : {"1", "0", "4", "-2", "2.0", "3.0", "2.5", "1e3", "99999999999999999999", "18446744073709551615"}) {
    auto body = json::serialize(f.body(Version::v2));
    body.replace(body.find("\"version\":2"), 11, "\"version\":" + v);
    EXPECT_EQ(parse_error(body).code, Errc::unsupported_version) << v;
  }
  // A v1 body that says "version":1 is still version 1, which v2 syntax does not allow.
  auto v1 = f.body(Version::v1);
  v1["version"] = 1;
  EXPECT_EQ(parse_error(v1).code, Errc::unsupported_version);
  for (json::value v : {json::value("2"), json::value(true), json::value(nullptr),
                        json::value(json::array{2})}) {
    auto body = f.body(Version::v2);
    body["version"] = v;
    const auto e = parse_error(body);
    EXPECT_EQ(e.code, Errc::invalid_request) << json::serialize(v);
    EXPECT_NE(e.message.find("version"), std::string::npos);
  }
}

TEST(Envelope, MissingFieldsNamed) {
  Fixture f;
  for (auto version : {Version::v1, Version::v2}) {
    const auto full = f.body(version);
    for (const auto& kv : full) {
      if (kv.key() == "version") continue;
      auto body = full;
      body.erase(kv.key());
      const auto e = parse_error(body);
      EXPECT_EQ(e.code, Errc::invalid_request);
      EXPECT_NE(e.message.find(std::string(kv.key())), std::string::npos) << e.message;
    }
  }
  // Without "version", a v2 body minus the version is neither v1 nor v2.
  auto v2 = f.body(Version::v2);
  v2.erase("version");
  EXPECT_EQ(parse_error(v2).code, Errc::invalid_request);
}

TEST(Envelope, ExtraFieldsRejected) {
  Fixture f;
  for (auto version : {Version::v1, Version::v2}) {
    auto body = f.body(version);
    body["model"] = "secret-looking-value";
    const auto e = parse_error(body);
    EXPECT_EQ(e.code, Errc::invalid_request);
    EXPECT_EQ(e.message.find("secret-looking-value"), std::string::npos);
  }
  auto v1 = f.body(Version::v1);
  v1["keyId"] = "0011223344556677";  // a v2 field in a v1 body
  EXPECT_EQ(parse_error(v1).code, Errc::invalid_request);
}

TEST(Envelope, DuplicateKeysRejected) {
  Fixture f;
  for (auto version : {Version::v1, Version::v2}) {
    auto text = json::serialize(f.body(version));
    const auto nonce = std::string(f.body(version).at("nonce").as_string().c_str());
    text.insert(1, "\"nonce\":\"" + nonce + "\",");
    const auto e = parse_error(text);
    EXPECT_EQ(e.code, Errc::invalid_request);
    EXPECT_NE(e.message.find("duplicate"), std::string::npos);
    EXPECT_NE(e.message.find("nonce"), std::string::npos);
  }
}

TEST(Envelope, MistypedFields) {
  Fixture f;
  const std::vector<std::pair<std::string, json::value>> cases = {
      {"keyId", 12}, {"keyId", nullptr}, {"timestamp", "1764004858"}, {"timestamp", -1},
      {"timestamp", 1.5}, {"timestamp", nullptr}, {"timestamp", json::value(18446744073709551615ull)},
      {"encryptedInference", json::array{}}, {"cipherText", nullptr}, {"nonce", 5}, {"nonce", json::object{}},
  };
  for (const auto& [name, value] : cases) {
    auto body = f.body(Version::v2);
    body[name] = value;
    const auto e = parse_error(body);
    EXPECT_EQ(e.code, Errc::invalid_request) << name;
    EXPECT_NE(e.message.find(name), std::string::npos) << e.message;
  }
}

TEST(Envelope, BadHexAndWrongLengths) {
  Fixture f;
  for (auto version : {Version::v1, Version::v2}) {
    const auto full = f.body(version);
    for (const auto& kv : full) {
      if (!kv.value().is_string()) continue;
      const std::string name(kv.key());
      const std::string good(kv.value().as_string().c_str());
      const std::vector<std::string> bad = {
          good.substr(0, good.size() - 1),               // odd
          good.substr(0, good.size() - 2),               // one byte short
          good + "00",                                   // one byte long
          good.substr(0, good.size() - 2) + "zz",        // not hex
          "",                                            // empty
          good.substr(0, good.size() - 2) + "\xc3\xa9",  // UTF-8, not hex
      };
      for (const auto& value : bad) {
        auto body = full;
        body[name] = value;
        auto r = parse_envelope(json::serialize(body));
        // encryptedInference has no fixed length: one byte more or less is valid syntax (and fails to decrypt later).
        if (name == "encryptedInference" && (value == good + "00" || value.size() == good.size() - 2) &&
            value.find('z') == std::string::npos && value.find('\xc3') == std::string::npos) {
          ASSERT_TRUE(r.has_value());
          EXPECT_EQ(open_request(*r, f.enc.shared_secret).error().code, Errc::decryption_failed);
          continue;
        }
        ASSERT_FALSE(r.has_value()) << name << " " << value.size();
        EXPECT_EQ(r.error().code, Errc::invalid_request);
        EXPECT_NE(r.error().message.find(name), std::string::npos) << r.error().message;
        if (value.size() > 8) {
          EXPECT_EQ(r.error().message.find(value.substr(0, 8)), std::string::npos);
        }
      }
    }
  }
}

TEST(Envelope, EncryptedInferenceShorterThanTag) {
  Fixture f;
  auto body = f.body(Version::v2);
  body["encryptedInference"] = std::string(30, 'a');  // 15 bytes
  EXPECT_EQ(parse_error(body).code, Errc::invalid_request);
  body["encryptedInference"] = std::string(32, 'a');  // 16 bytes: a bare tag, syntactically fine
  auto r = parse_envelope(json::serialize(body));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(open_request(*r, f.enc.shared_secret).error().code, Errc::decryption_failed);
}

TEST(Envelope, SerializeOrder) {
  Fixture f;
  const auto v2 = serialize_envelope(f.seal(Version::v2));
  EXPECT_TRUE(v2.starts_with(R"({"version":2,"keyId":")"));
  EXPECT_LT(v2.find("\"timestamp\":1764004858,"), v2.find("\"encryptedInference\""));
  EXPECT_LT(v2.find("\"encryptedInference\""), v2.find("\"cipherText\""));
  EXPECT_LT(v2.find("\"cipherText\""), v2.find("\"nonce\""));
  const auto v1 = serialize_envelope(f.seal(Version::v1));
  EXPECT_TRUE(v1.starts_with(R"({"encryptedInference":")"));
  EXPECT_EQ(json::parse(v1).as_object().size(), 3u);
}

}  // namespace
}  // namespace rvenc::protocol
