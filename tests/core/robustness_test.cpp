// Seeded random mutations of every untrusted input: each outcome is one of the documented
// results (an error with an allowed code, or the original plaintext), never a crash or hang.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <random>

#include "rvenc/protocol/attestation.hpp"
#include "rvenc/protocol/chat.hpp"
#include "rvenc/protocol/envelope.hpp"
#include "rvenc/protocol/sealing.hpp"
#include "rvenc/protocol/sse.hpp"

namespace rvenc::protocol {
namespace {

constexpr int kRounds = 3000;
constexpr std::string_view kRequest = R"({"model":"m","messages":[{"role":"user","content":"hello"}]})";

std::string mutate(std::string text, std::mt19937& rng) {
  std::uniform_int_distribution<int> op(0, 3), byte(0, 255);
  const int edits = 1 + static_cast<int>(rng() % 3);
  for (int e = 0; e < edits && !text.empty(); ++e) {
    const std::size_t pos = rng() % text.size();
    switch (op(rng)) {
      case 0: text[pos] = static_cast<char>(byte(rng)); break;
      case 1: text.erase(pos, 1 + rng() % 8); break;
      case 2: text.insert(pos, 1, "{}[]\",:0aZ\\"[rng() % 12]); break;
      default: text.resize(pos); break;
    }
  }
  return text;
}

TEST(Robustness, MutatedEnvelopesFailCleanlyOrStillAuthenticate) {
  std::mt19937 rng(20261126);
  // Fixed keys and nonce: the mutated bodies, and so the outcome counts, are the same every run.
  crypto::XWingSeed seed;
  std::fill(seed.data(), seed.data() + seed.size(), std::uint8_t{7});
  const auto enclave = crypto::xwing_keypair_from_seed(seed);
  std::array<std::uint8_t, crypto::kXWingEncapsSeedBytes> encaps_seed{};
  encaps_seed.fill(9);
  const auto enc = crypto::xwing_encapsulate_deterministic(enclave.public_key, encaps_seed).value();
  SealInput in;
  in.shared_secret = &enc.shared_secret;
  in.cipher_text = &enc.cipher_text;
  in.key_id = crypto::key_id(enclave.public_key);
  in.nonce.fill(3);
  in.timestamp = 1764004858;
  int refused = 0;
  for (auto version : {Version::v1, Version::v2}) {
    in.version = version;
    const auto body = serialize_envelope(seal_request(in, kRequest));
    for (int i = 0; i < kRounds; ++i) {
      const auto text = mutate(body, rng);
      auto env = parse_envelope(text);
      if (!env) {
        const auto code = env.error().code;
        EXPECT_TRUE(code == Errc::invalid_request || code == Errc::unsupported_version) << env.error().to_string();
        continue;
      }
      auto ss = crypto::xwing_decapsulate(env->cipher_text, enclave.seed);
      ASSERT_TRUE(ss.has_value());
      auto opened = open_request(*env, *ss);
      // Whatever still parses either authenticates to the very same request or is refused.
      if (opened) {
        EXPECT_EQ(opened->view(), kRequest);
      } else {
        EXPECT_EQ(opened.error().code, Errc::decryption_failed);
        ++refused;
      }
    }
  }
  EXPECT_GT(refused, 0);
  // Some changes keep the request intact: hex is case-insensitive on input.
  in.version = Version::v2;
  std::string upper = serialize_envelope(seal_request(in, kRequest));
  const auto start = upper.find("\"encryptedInference\":\"") + 22;
  for (auto i = start; upper[i] != '"'; ++i) upper[i] = static_cast<char>(std::toupper(static_cast<unsigned char>(upper[i])));
  auto env = parse_envelope(upper);
  ASSERT_TRUE(env) << env.error().to_string();
  auto opened = open_request(*env, enc.shared_secret);
  ASSERT_TRUE(opened);
  EXPECT_EQ(opened->view(), kRequest);
}

TEST(Robustness, MutatedEventStreamsNeverYieldForgedPlaintext) {
  std::mt19937 rng(7);
  // Fixed keys: the mutated streams, and so the outcome counts, are the same every run.
  crypto::SharedSecret ss;
  std::fill(ss.data(), ss.data() + ss.size(), std::uint8_t{5});
  crypto::Nonce nonce;
  nonce.fill(11);
  const std::vector<std::string> plaintexts = {R"({"choices":[{"delta":{"content":"a"}}]})",
                                               R"({"choices":[{"delta":{"content":"b"}}]})", "[DONE]"};
  ResponseSealer sealer(Version::v2, ss, nonce);
  // One statement per event: the sealer's counter must advance in stream order.
  std::string stream = sealer.seal_event(EventKind::data, plaintexts[0]);
  stream += sealer.seal_event(EventKind::data, plaintexts[1]);
  stream += sealer.seal_event(EventKind::done, plaintexts[2]);
  int completed = 0;
  int refused = 0;
  for (int i = 0; i < kRounds; ++i) {
    const auto text = mutate(stream, rng);
    SseParser parser(256);
    std::vector<SseEvent> events;
    if (!parser.feed(text, events)) continue;
    ResponseOpener opener(Version::v2, ss, nonce);
    std::size_t opened_count = 0;
    for (const auto& e : events) {
      const auto kind = kind_from_name(e.event);
      if (!kind) continue;  // unknown kinds are skipped
      auto opened = opener.open(*kind, e.data);
      if (!opened) {
        const auto code = opened.error().code;
        EXPECT_TRUE(code == Errc::tampered_stream || code == Errc::transport_error) << opened.error().to_string();
        ++refused;
        break;
      }
      ASSERT_LT(opened_count, plaintexts.size());
      EXPECT_EQ(opened->plaintext.view(), plaintexts[opened_count++]);
    }
    if (opener.done()) ++completed;
  }
  // Both outcomes really occur (the mutations sometimes only touch the SSE framing).
  EXPECT_GT(completed, 0);
  EXPECT_GT(refused, 0);
}

TEST(Robustness, RandomBytesIntoParsersNeverCrash) {
  std::mt19937 rng(99);
  const std::string chat = std::string(kRequest);
  const std::string attestation =
      R"({"keyId":"00","kem":"X-Wing","publicKey":"00","notAfter":1,"provider":"tdx","reportData":"00","evidence":"","measurement":""})";
  for (int i = 0; i < kRounds; ++i) {
    auto r = validate_chat_request(mutate(chat, rng));
    if (!r) {
      EXPECT_EQ(r.error().code, Errc::invalid_inference);
    }
    auto a = parse_attestation(mutate(attestation, rng));
    if (!a) {
      EXPECT_EQ(a.error().code, Errc::invalid_request);
    }
    CompletionAssembler assembler;
    (void)assembler.add_chunk(mutate(R"({"choices":[{"index":0,"delta":{"content":"x","tool_calls":[{"index":0}]}}]})", rng));
    EXPECT_EQ(assembler.completion().at("object"), "chat.completion");
    std::string noise(rng() % 64, '\0');
    for (auto& c : noise) c = static_cast<char>(rng());
    SseParser parser(32);
    std::vector<SseEvent> events;
    auto fed = parser.feed(noise, events);
    if (!fed) {
      EXPECT_EQ(fed.error().code, Errc::event_too_large);
    }
  }
}

}  // namespace
}  // namespace rvenc::protocol
