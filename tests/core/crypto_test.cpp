// Errors, hex and the libsodium wrappers: known answers and every malformed input.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include "rvenc/common/error.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "rvenc/protocol/attestation.hpp"

namespace rvenc {
namespace {

std::vector<std::uint8_t> unhex(std::string_view text) { return from_hex(text, "test").value(); }

TEST(Errors, StatusTypeAndNameFollowProtocol) {
  struct Row {
    Errc code;
    int status;
    std::string_view type;
    std::string_view name;
  };
  const Row rows[] = {
      {Errc::invalid_request, 400, "invalid_request_error", "invalid_request"},
      {Errc::unsupported_version, 400, "invalid_request_error", "unsupported_version"},
      {Errc::decryption_failed, 400, "invalid_request_error", "decryption_failed"},
      {Errc::replayed_request, 400, "invalid_request_error", "replayed_request"},
      {Errc::invalid_inference, 400, "invalid_request_error", "invalid_inference"},
      {Errc::invalid_api_key, 401, "authentication_error", "invalid_api_key"},
      {Errc::key_revoked, 403, "permission_error", "key_revoked"},
      {Errc::test_key_not_allowed, 403, "permission_error", "test_key_not_allowed"},
      {Errc::unknown_key_id, 404, "not_found_error", "unknown_key_id"},
      {Errc::request_too_large, 413, "invalid_request_error", "request_too_large"},
      {Errc::rate_limit_exceeded, 429, "rate_limit_error", "rate_limit_exceeded"},
      {Errc::upstream_error, 502, "api_error", "upstream_error"},
      {Errc::overloaded, 503, "api_error", "overloaded"},
      {Errc::upstream_timeout, 504, "api_error", "upstream_timeout"},
      {Errc::internal_error, 500, "server_error", "internal_error"},
  };
  for (const auto& row : rows) {
    EXPECT_EQ(http_status(row.code), row.status) << row.name;
    EXPECT_EQ(error_type(row.code), row.type) << row.name;
    EXPECT_EQ(code_name(row.code), row.name);
    EXPECT_EQ(code_from_name(row.name), row.code);
  }
  EXPECT_EQ(code_from_name("no_such_code"), Errc::internal_error);
  for (auto code : {Errc::tampered_stream, Errc::truncated_stream, Errc::event_too_large, Errc::timeout,
                    Errc::attestation_failed, Errc::transport_error, Errc::not_found, Errc::method_not_allowed}) {
    EXPECT_EQ(code_from_name(code_name(code)), code);
  }
}

TEST(Errors, OpenAiBodyShape) {
  const Error error{Errc::rate_limit_exceeded, "slow \"down\""};
  const auto body = boost::json::parse(openai_error_body(error)).as_object();
  const auto& inner = body.at("error").as_object();
  EXPECT_EQ(inner.at("message"), "slow \"down\"");
  EXPECT_EQ(inner.at("type"), "rate_limit_error");
  EXPECT_EQ(inner.at("code"), "rate_limit_exceeded");
  EXPECT_FALSE(inner.contains("source"));
  const auto with_source = boost::json::parse(openai_error_body(error, "gateway")).as_object();
  EXPECT_EQ(with_source.at("error").as_object().at("source"), "gateway");
  EXPECT_EQ(error.to_string(), "rate_limit_exceeded: slow \"down\"");
}

TEST(Hex, RoundTripAndUppercase) {
  const std::vector<std::uint8_t> data{0x00, 0x01, 0xab, 0xff};
  EXPECT_EQ(to_hex(data), "0001abff");
  EXPECT_EQ(from_hex("0001ABff", "x").value(), data);
  EXPECT_EQ(to_hex({}), "");
  EXPECT_TRUE(from_hex("", "x").value().empty());
}

// The fast encoder for public values writes exactly the constant-time one's digits: every byte
// value at every lane of a step, every length around the sixteen-byte steps, appended or not.
TEST(Hex, PublicEncoderAgreesWithTheConstantTimeOne) {
  std::vector<std::uint8_t> every_byte(256);
  for (std::size_t i = 0; i < every_byte.size(); ++i) every_byte[i] = static_cast<std::uint8_t>(i);
  for (std::size_t shift = 0; shift < 16; ++shift) {
    const std::span<const std::uint8_t> at(every_byte.data() + shift, every_byte.size() - shift);
    EXPECT_EQ(to_public_hex(at), to_hex(at)) << shift;
  }
  for (std::size_t n = 0; n <= 50; ++n) {
    const std::span<const std::uint8_t> last(every_byte.data() + 256 - n, n);
    EXPECT_EQ(to_public_hex(last), to_hex(last)) << n;
  }
  std::string appended = "data: ";
  append_public_hex(appended, std::span<const std::uint8_t>(every_byte).first(20));
  EXPECT_EQ(appended, "data: " + to_hex(std::span<const std::uint8_t>(every_byte).first(20)));
  EXPECT_EQ(to_public_hex(std::vector<std::uint8_t>{0x00, 0x9a, 0xf0, 0x0f, 0x7e}), "009af00f7e");
}

// The fast decoder for public values accepts and rejects exactly what the constant-time one does.
TEST(Hex, PublicDecoderAgreesWithTheConstantTimeOne) {
  std::string every_byte;
  for (int b = 0; b < 256; ++b) every_byte += to_hex(std::vector<std::uint8_t>{static_cast<std::uint8_t>(b)});
  EXPECT_EQ(from_public_hex(every_byte, "x").value(), from_hex(every_byte, "x").value());
  for (int c = 0; c < 256; ++c) {
    for (const std::string& text : {std::string("a") + static_cast<char>(c), std::string(1, static_cast<char>(c)) + "F"}) {
      const auto secret = from_hex(text, "payload");
      const auto pub = from_public_hex(text, "payload");
      ASSERT_EQ(secret.has_value(), pub.has_value()) << c;
      if (secret) {
        EXPECT_EQ(*secret, *pub);
      } else {
        EXPECT_EQ(secret.error().message, pub.error().message);
      }
    }
  }
  std::array<std::uint8_t, 4> a{};
  std::array<std::uint8_t, 4> b{};
  for (std::string_view text : {"", "00", "0000000", "000000zz", "DEADbeef", "0011223344"}) {
    const auto secret = from_hex_into(text, a, "keyId");
    const auto pub = from_public_hex_into(text, b, "keyId");
    ASSERT_EQ(secret.has_value(), pub.has_value()) << text;
    if (secret) {
      EXPECT_EQ(a, b);
    } else {
      EXPECT_EQ(secret.error().message, pub.error().message);
    }
  }
}

// Every byte value at every position of a 22-digit text: in each lane of the decoder's 8-digit
// words and in its tail, compared with the constant-time decoder.
TEST(Hex, PublicDecoderAgreesInEveryLaneOfItsWordSteps) {
  const std::string valid = "0123456789abcdefABCDEF";
  for (std::size_t at = 0; at < valid.size(); ++at) {
    for (int c = 0; c < 256; ++c) {
      std::string text = valid;
      text[at] = static_cast<char>(c);
      const auto secret = from_hex(text, "payload");
      const auto pub = from_public_hex(text, "payload");
      ASSERT_EQ(secret.has_value(), pub.has_value()) << at << " " << c;
      if (secret) {
        EXPECT_EQ(*secret, *pub) << at << " " << c;
      }
    }
  }
  std::vector<std::uint8_t> bytes(4099);
  crypto::random_bytes(bytes);
  EXPECT_EQ(from_public_hex(to_hex(bytes), "payload").value(), bytes);
}

TEST(Hex, CheckingAgreesWithDecoding) {
  // Every byte value at every position of a 19-digit text: in each lane of the 8-byte steps and
  // in the tail, with odd and even lengths and a given length or none.
  const std::string valid = "0123456789abcdefABC";
  std::array<std::uint8_t, 9> nine{};
  for (std::size_t at = 0; at < valid.size(); ++at) {
    for (int c = 0; c < 256; ++c) {
      std::string text = valid;
      text[at] = static_cast<char>(c);
      for (const std::string_view t : {std::string_view(text), std::string_view(text).substr(0, 18)}) {
        const auto decoded = from_public_hex(t, "cipherText");
        const auto checked = check_public_hex(t, "cipherText");
        ASSERT_EQ(decoded.has_value(), checked.has_value()) << at << " " << c;
        if (!decoded) {
          EXPECT_EQ(decoded.error().message, checked.error().message);
        }
        const auto decoded_into = from_public_hex_into(t, nine, "nonce");
        const auto checked_exact = check_public_hex(t, "nonce", nine.size());
        ASSERT_EQ(decoded_into.has_value(), checked_exact.has_value()) << at << " " << c;
        if (!decoded_into) {
          EXPECT_EQ(decoded_into.error().message, checked_exact.error().message);
        }
      }
    }
  }
}

TEST(Hex, MalformedInputNamesFieldNotValue) {
  for (std::string_view bad : {"abc", "zz", "0g", "00 ", " 00", "0x00", "\xff\xfe"}) {
    auto r = from_hex(bad, "nonce");
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().code, Errc::invalid_request);
    EXPECT_NE(r.error().message.find("nonce"), std::string::npos);
    if (bad.size() > 1) {
      EXPECT_EQ(r.error().message.find(bad), std::string::npos);
    }
  }
  std::array<std::uint8_t, 4> out{};
  for (std::string_view bad : {"", "00", "000000", "0000000000", "000000zz", "0000000"}) {
    auto r = from_hex_into(bad, out, "keyId");
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().code, Errc::invalid_request);
    EXPECT_NE(r.error().message.find("keyId"), std::string::npos);
  }
  auto wrong = from_hex_exact<4>("0011", "keyId");
  ASSERT_FALSE(wrong.has_value());
  EXPECT_NE(wrong.error().message.find("4 bytes"), std::string::npos);
  EXPECT_EQ(to_hex(from_hex_exact<4>("DEADbeef", "keyId").value()), "deadbeef");
}

TEST(Secrets, ConstantTimeEqualAndWipe) {
  const std::array<std::uint8_t, 3> a{1, 2, 3}, b{1, 2, 3}, c{1, 2, 4};
  EXPECT_TRUE(crypto::constant_time_equal(a, b));
  EXPECT_FALSE(crypto::constant_time_equal(a, c));
  EXPECT_FALSE(crypto::constant_time_equal(a, std::span<const std::uint8_t>(b.data(), 2)));
  EXPECT_TRUE(crypto::constant_time_equal({}, {}));

  crypto::Secret<4> s(std::span<const std::uint8_t, 4>(std::array<std::uint8_t, 4>{9, 9, 9, 9}));
  crypto::Secret<4> moved(std::move(s));
  EXPECT_EQ(moved.data()[0], 9);
  EXPECT_EQ(s.data()[0], 0);  // NOLINT(bugprone-use-after-move): wiped on move is the contract
  moved.wipe();
  EXPECT_EQ(moved, crypto::Secret<4>{});

  crypto::SecureBytes bytes(std::vector<std::uint8_t>{1, 2, 3, 4});
  bytes.truncate(2);
  EXPECT_EQ(bytes.size(), 2u);
  bytes.wipe();
  EXPECT_TRUE(bytes.empty());
}

TEST(Hashes, KnownAnswers) {
  EXPECT_EQ(to_hex(crypto::sha256(crypto::as_bytes("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(to_hex(crypto::sha512(crypto::as_bytes("abc"))),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd"
            "454d4423643ce80e2a9ac94fa54ca49f");
  // BLAKE2b-256 (RFC 7693 with a 32-byte output; Python's hashlib.blake2b(digest_size=32) agrees).
  EXPECT_EQ(to_hex(crypto::blake2b_256(crypto::as_bytes("abc"))),
            "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
  EXPECT_EQ(to_hex(crypto::blake2b_256({})), "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
}

TEST(Hkdf, Rfc5869TestCase1) {
  const auto ikm = unhex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
  const auto salt = unhex("000102030405060708090a0b0c");
  const auto info = unhex("f0f1f2f3f4f5f6f7f8f9");
  const auto prk = crypto::hkdf_extract(salt, ikm);
  EXPECT_EQ(to_hex(prk.span()), "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5");
  std::array<std::uint8_t, 42> okm{};
  crypto::hkdf_expand(prk, crypto::as_chars(info), okm);
  EXPECT_EQ(to_hex(okm), "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
}

TEST(Aead, RoundTripAndEveryTamperFails) {
  crypto::AeadKey key;
  crypto::random_bytes(key.span());
  const auto nonce = crypto::random_nonce();
  const auto ad = crypto::as_bytes("ad");
  const auto sealed = crypto::aead_seal(key.span(), nonce, ad, crypto::as_bytes("secret text"));
  ASSERT_EQ(sealed.size(), 11 + crypto::kAeadTagBytes);
  EXPECT_EQ(crypto::aead_open(key.span(), nonce, ad, sealed).value().view(), "secret text");
  for (std::size_t i = 0; i < sealed.size(); ++i) {
    auto bad = sealed;
    bad[i] ^= static_cast<std::uint8_t>(1u << (i % 8));
    auto r = crypto::aead_open(key.span(), nonce, ad, bad);
    ASSERT_FALSE(r.has_value()) << i;
    EXPECT_EQ(r.error().code, Errc::decryption_failed);
  }
  EXPECT_FALSE(crypto::aead_open(key.span(), nonce, crypto::as_bytes("AD"), sealed).has_value());
  EXPECT_FALSE(crypto::aead_open(key.span(), crypto::random_nonce(), ad, sealed).has_value());
  EXPECT_FALSE(crypto::aead_open(key.span(), nonce, ad, std::span(sealed).first(15)).has_value());
  EXPECT_FALSE(crypto::aead_open(key.span(), nonce, ad, {}).has_value());
  // An empty plaintext is a bare tag.
  const auto empty = crypto::aead_seal(key.span(), nonce, {}, {});
  EXPECT_TRUE(crypto::aead_open(key.span(), nonce, {}, empty).value().empty());
}

TEST(XWing, RandomKeysAgreeAndWrongKeyDisagrees) {
  const auto pair = crypto::xwing_generate_keypair();
  const auto again = crypto::xwing_keypair_from_seed(pair.seed);
  EXPECT_EQ(pair.public_key, again.public_key);
  auto enc = crypto::xwing_encapsulate(pair.public_key);
  ASSERT_TRUE(enc.has_value());
  EXPECT_EQ(crypto::xwing_decapsulate(enc->cipher_text, pair.seed).value(), enc->shared_secret);
  const auto other = crypto::xwing_generate_keypair();
  EXPECT_FALSE(crypto::xwing_decapsulate(enc->cipher_text, other.seed).value() == enc->shared_secret);
  auto flipped = enc->cipher_text;
  flipped[0] ^= 1;
  EXPECT_FALSE(crypto::xwing_decapsulate(flipped, pair.seed).value() == enc->shared_secret);
}

TEST(Ed25519, SignVerifyAndRejectChanges) {
  crypto::Ed25519Seed seed;
  crypto::random_bytes(seed.span());
  const auto pair = crypto::ed25519_keypair_from_seed(seed);
  const auto sig = crypto::ed25519_sign(pair, crypto::as_bytes("message"));
  EXPECT_TRUE(crypto::ed25519_verify(pair.public_key, crypto::as_bytes("message"), sig));
  EXPECT_FALSE(crypto::ed25519_verify(pair.public_key, crypto::as_bytes("messagE"), sig));
  auto bad = sig;
  bad[10] ^= 4;
  EXPECT_FALSE(crypto::ed25519_verify(pair.public_key, crypto::as_bytes("message"), bad));
}

TEST(Pad, LengthsAndBadPadding) {
  for (std::size_t n : {0u, 1u, 63u, 64u, 65u, 1000u}) {
    const std::vector<std::uint8_t> data(n, 0x80);
    const auto padded = crypto::pad(data);
    EXPECT_EQ(padded.size() % 64, 0u);
    EXPECT_GT(padded.size(), n);
    EXPECT_EQ(crypto::unpadded_size(padded).value(), n);
  }
  std::vector<std::uint8_t> zeros(64, 0);
  EXPECT_EQ(crypto::unpadded_size(zeros).error().code, Errc::decryption_failed);
  EXPECT_FALSE(crypto::unpadded_size({}).has_value());
  std::vector<std::uint8_t> short_block(63, 0);
  short_block[0] = 0x80;
  EXPECT_FALSE(crypto::unpadded_size(short_block).has_value());
  auto trailing = crypto::pad(crypto::as_bytes("x"));
  trailing.back() = 1;
  EXPECT_FALSE(crypto::unpadded_size(trailing).has_value());
}

TEST(Base64, RoundTripAndMalformed) {
  const std::vector<std::uint8_t> data{0, 1, 2, 250, 251, 252, 253};
  const auto text = protocol::base64_encode(data);
  EXPECT_EQ(text, "AAEC+vv8/Q==");
  EXPECT_EQ(protocol::base64_decode(text, "evidence").value(), data);
  EXPECT_TRUE(protocol::base64_decode("", "evidence").value().empty());
  for (std::string_view bad : {"AAEC+vv8/Q", "AAEC-vv8_Q==", "A", "AAEC+vv8/Q==x", "****"}) {
    auto r = protocol::base64_decode(bad, "evidence");
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().code, Errc::invalid_request);
    EXPECT_NE(r.error().message.find("evidence"), std::string::npos);
  }
}

}  // namespace
}  // namespace rvenc
