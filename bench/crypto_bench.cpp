// Each operation twice: BM_<Op>_rvenc through rvenc_core, BM_<Op>_raw as the bare libsodium call
// sequence that does the same cryptographic work, so wrapper overhead reads as a ratio. The
// enclave's replay cache and the gateway's usage journal are measured the same way against the
// designs they replaced (_nodeset, _write).
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <malloc.h>
#include <sodium.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <array>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "rvenc/client/response.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "rvenc/enclave/replay.hpp"
#include "rvenc/gateway/sse_relay.hpp"
#include "rvenc/gateway/usage.hpp"
#include "rvenc/protocol/chat.hpp"
#include "rvenc/protocol/sealing.hpp"
#include "rvenc/protocol/sse.hpp"

namespace {

using namespace rvenc;

constexpr std::size_t kEventBytes = 100;
constexpr std::size_t kPreSealedEvents = 4096;
constexpr std::string_view kInfoRequest = "rvenc/2 request";
constexpr std::string_view kInfoResponse = "rvenc/2 response";
constexpr std::string_view kInfoResponseNonce = "rvenc/2 response nonce";

struct Setup {
  crypto::XWingKeyPair enclave = crypto::xwing_generate_keypair();
  crypto::Encapsulation enc = crypto::xwing_encapsulate(enclave.public_key).value();
  crypto::Nonce nonce = crypto::random_nonce();
  crypto::KeyId key_id = crypto::key_id(enclave.public_key);
  std::int64_t timestamp = 1764004858;

  protocol::SealInput input(protocol::Version version = protocol::Version::v2) const {
    protocol::SealInput in;
    in.version = version;
    in.shared_secret = &enc.shared_secret;
    in.cipher_text = &enc.cipher_text;
    in.key_id = key_id;
    in.nonce = nonce;
    in.timestamp = timestamp;
    return in;
  }
};

const Setup& setup() {
  static const Setup s;
  return s;
}

std::string plaintext(std::size_t n) { return std::string(n, 'x'); }

// --- X-Wing --------------------------------------------------------------------------------------

void BM_XWingKeygen_rvenc(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(crypto::xwing_generate_keypair());
}
void BM_XWingKeygen_raw(benchmark::State& state) {
  std::array<unsigned char, crypto_kem_xwing_PUBLICKEYBYTES> pk;
  std::array<unsigned char, crypto_kem_xwing_SECRETKEYBYTES> sk;
  for (auto _ : state) {
    crypto_kem_xwing_keypair(pk.data(), sk.data());
    benchmark::DoNotOptimize(pk);
  }
  sodium_memzero(sk.data(), sk.size());
}

void BM_XWingEncaps_rvenc(benchmark::State& state) {
  const auto& s = setup();
  for (auto _ : state) benchmark::DoNotOptimize(crypto::xwing_encapsulate(s.enclave.public_key));
}
void BM_XWingEncaps_raw(benchmark::State& state) {
  const auto& s = setup();
  std::array<unsigned char, crypto_kem_xwing_CIPHERTEXTBYTES> ct;
  std::array<unsigned char, crypto_kem_xwing_SHAREDSECRETBYTES> ss;
  for (auto _ : state) {
    if (crypto_kem_xwing_enc(ct.data(), ss.data(), s.enclave.public_key.data()) != 0) {
      state.SkipWithError("encapsulation failed");
      break;
    }
    benchmark::DoNotOptimize(ss);
  }
}

void BM_XWingDecaps_rvenc(benchmark::State& state) {
  const auto& s = setup();
  for (auto _ : state) benchmark::DoNotOptimize(crypto::xwing_decapsulate(s.enc.cipher_text, s.enclave.seed));
}
void BM_XWingDecaps_raw(benchmark::State& state) {
  const auto& s = setup();
  std::array<unsigned char, crypto_kem_xwing_SHAREDSECRETBYTES> ss;
  for (auto _ : state) {
    if (crypto_kem_xwing_dec(ss.data(), s.enc.cipher_text.data(), s.enclave.seed.data()) != 0) {
      state.SkipWithError("decapsulation failed");
      break;
    }
    benchmark::DoNotOptimize(ss);
  }
}

// --- Request (v2): HKDF extract + expand, pad, XChaCha20-Poly1305 ---------------------------------

void raw_request_key(const Setup& s, unsigned char* key) {
  unsigned char prk[crypto_kdf_hkdf_sha256_KEYBYTES];
  crypto_kdf_hkdf_sha256_extract(prk, s.nonce.data(), s.nonce.size(), s.enc.shared_secret.data(), 32);
  crypto_kdf_hkdf_sha256_expand(key, 32, kInfoRequest.data(), kInfoRequest.size(), prk);
  sodium_memzero(prk, sizeof prk);
}

void BM_RequestSeal_rvenc(benchmark::State& state) {
  const auto& s = setup();
  const auto text = plaintext(static_cast<std::size_t>(state.range(0)));
  const auto in = s.input();
  for (auto _ : state) benchmark::DoNotOptimize(protocol::seal_request(in, text));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}
void BM_RequestSeal_raw(benchmark::State& state) {
  const auto& s = setup();
  const auto text = plaintext(static_cast<std::size_t>(state.range(0)));
  const auto ad = protocol::request_ad(protocol::Version::v2, s.key_id, s.timestamp);
  std::vector<unsigned char> buf(text.size() + 64);
  std::vector<unsigned char> out(buf.size() + crypto_aead_xchacha20poly1305_ietf_ABYTES);
  unsigned char key[32];
  // A raw caller builds its plaintext straight into a buffer with room for the padding: no copy.
  std::memcpy(buf.data(), text.data(), text.size());
  for (auto _ : state) {
    raw_request_key(s, key);
    std::size_t padded = 0;
    sodium_pad(&padded, buf.data(), text.size(), 64, buf.size());
    unsigned long long written = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(out.data(), &written, buf.data(), padded,
                                               reinterpret_cast<const unsigned char*>(ad.data()), ad.size(), nullptr,
                                               s.nonce.data(), key);
    benchmark::DoNotOptimize(out.data());
  }
  sodium_memzero(key, sizeof key);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}

void BM_RequestOpen_rvenc(benchmark::State& state) {
  const auto& s = setup();
  const auto env = protocol::seal_request(s.input(), plaintext(static_cast<std::size_t>(state.range(0))));
  for (auto _ : state) benchmark::DoNotOptimize(protocol::open_request(env, s.enc.shared_secret));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}
void BM_RequestOpen_raw(benchmark::State& state) {
  const auto& s = setup();
  const auto env = protocol::seal_request(s.input(), plaintext(static_cast<std::size_t>(state.range(0))));
  const auto ad = protocol::request_ad(protocol::Version::v2, s.key_id, s.timestamp);
  std::vector<unsigned char> out(env.encrypted_inference.size());
  unsigned char key[32];
  for (auto _ : state) {
    raw_request_key(s, key);
    unsigned long long written = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(out.data(), &written, nullptr, env.encrypted_inference.data(),
                                                   env.encrypted_inference.size(),
                                                   reinterpret_cast<const unsigned char*>(ad.data()), ad.size(),
                                                   s.nonce.data(), key) != 0) {
      state.SkipWithError("decrypt failed");
      break;
    }
    std::size_t size = 0;
    sodium_unpad(&size, out.data(), written, 64);
    benchmark::DoNotOptimize(size);
  }
  sodium_memzero(key, sizeof key);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}

// --- Events (v2, 100 bytes): counter nonce, pad, XChaCha20-Poly1305, hex ----------------------------

struct RawEventKeys {
  unsigned char key[32];
  unsigned char prefix[16];
  explicit RawEventKeys(const Setup& s) {
    unsigned char prk[32];
    crypto_kdf_hkdf_sha256_extract(prk, s.nonce.data(), s.nonce.size(), s.enc.shared_secret.data(), 32);
    crypto_kdf_hkdf_sha256_expand(key, 32, kInfoResponse.data(), kInfoResponse.size(), prk);
    crypto_kdf_hkdf_sha256_expand(prefix, 16, kInfoResponseNonce.data(), kInfoResponseNonce.size(), prk);
    sodium_memzero(prk, sizeof prk);
  }
  ~RawEventKeys() { sodium_memzero(key, sizeof key); }
  void nonce(std::uint64_t i, unsigned char* out) const {
    std::copy(prefix, prefix + 16, out);
    for (int b = 0; b < 8; ++b) out[16 + b] = static_cast<unsigned char>(i >> (56 - 8 * b));
  }
};

// Arg: the protocol version (2 or 3; both seal an event the same way once the keys are made).
protocol::Version version_arg(const benchmark::State& state) {
  return state.range(0) == 3 ? protocol::Version::v3 : protocol::Version::v2;
}

void BM_EventSeal_rvenc(benchmark::State& state) {
  const auto& s = setup();
  const auto text = plaintext(kEventBytes);
  protocol::ResponseSealer sealer(version_arg(state), s.enc.shared_secret, s.nonce);
  for (auto _ : state) benchmark::DoNotOptimize(sealer.seal_payload(protocol::EventKind::data, text));
}
void BM_EventSeal_raw(benchmark::State& state) {
  const auto& s = setup();
  const auto text = plaintext(kEventBytes);
  const RawEventKeys keys(s);
  constexpr std::string_view ad = "rvenc/2|data";
  unsigned char buf[kEventBytes + 64];
  unsigned char ct[sizeof buf + 16];
  char hex[sizeof ct * 2 + 1];
  unsigned char nonce[24];
  std::uint64_t index = 0;
  std::memcpy(buf, text.data(), text.size());
  for (auto _ : state) {
    keys.nonce(index++, nonce);
    std::size_t padded = 0;
    sodium_pad(&padded, buf, text.size(), 64, sizeof buf);
    unsigned long long written = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(ct, &written, buf, padded,
                                               reinterpret_cast<const unsigned char*>(ad.data()), ad.size(), nullptr,
                                               nonce, keys.key);
    sodium_bin2hex(hex, sizeof hex, ct, written);
    benchmark::DoNotOptimize(hex);
  }
}

void BM_EventOpen_rvenc(benchmark::State& state) {
  const auto& s = setup();
  const auto version = version_arg(state);
  std::vector<std::string> payloads;
  protocol::ResponseSealer sealer(version, s.enc.shared_secret, s.nonce);
  for (std::size_t i = 0; i < kPreSealedEvents; ++i) {
    payloads.push_back(sealer.seal_payload(protocol::EventKind::data, plaintext(kEventBytes)));
  }
  const std::string salt = to_hex(sealer.salt());
  const auto new_opener = [&] {
    auto opener = std::make_unique<protocol::ResponseOpener>(version, s.enc.shared_secret, s.nonce);
    if (version == protocol::Version::v3) (void)opener->open(protocol::EventKind::init, salt);
    return opener;
  };
  auto opener = new_opener();
  std::size_t next = 0;
  for (auto _ : state) {
    if (next == payloads.size()) {
      // A stream is opened in order only once: restart it (untimed) after the pre-sealed events.
      state.PauseTiming();
      opener = new_opener();
      next = 0;
      state.ResumeTiming();
    }
    auto opened = opener->open(protocol::EventKind::data, payloads[next++]);
    if (!opened) {
      state.SkipWithError("open failed");
      break;
    }
    benchmark::DoNotOptimize(opened->plaintext.size());
  }
}
void BM_EventOpen_raw(benchmark::State& state) {
  const auto& s = setup();
  protocol::ResponseSealer sealer(protocol::Version::v2, s.enc.shared_secret, s.nonce);
  const auto payload = sealer.seal_payload(protocol::EventKind::data, plaintext(kEventBytes));
  const RawEventKeys keys(s);
  constexpr std::string_view ad = "rvenc/2|data";
  unsigned char ct[kEventBytes + 64 + 16];
  unsigned char pt[sizeof ct];
  unsigned char nonce[24];
  for (auto _ : state) {
    std::size_t ct_len = 0;
    sodium_hex2bin(ct, sizeof ct, payload.data(), payload.size(), nullptr, &ct_len, nullptr);
    keys.nonce(0, nonce);
    unsigned long long written = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt, &written, nullptr, ct, ct_len,
                                                   reinterpret_cast<const unsigned char*>(ad.data()), ad.size(),
                                                   nonce, keys.key) != 0) {
      state.SkipWithError("decrypt failed");
      break;
    }
    std::size_t size = 0;
    sodium_unpad(&size, pt, written, 64);
    benchmark::DoNotOptimize(size);
  }
  sodium_memzero(pt, sizeof pt);
}

// --- The client's crypto of one request (next to the TypeScript SDK: sdk/js/bench/crypto.mjs) -------
// What the client SDK does per request: an X-Wing encapsulation, the version 3 request (200-byte
// JSON) sealed, and its whole answer decoded from the SSE text: init, kClientChunks chunk events of
// a typical chat.completion.chunk, done (parse, authenticate, unpad, JSON per chunk).

constexpr std::size_t kClientChunks = 50;
constexpr std::string_view kClientChunkJson =
    R"({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1764004858,"model":"rvenc-demo",)"
    R"("choices":[{"index":0,"delta":{"content":" word"},"finish_reason":null}]})";

void BM_ClientRequest50_rvenc(benchmark::State& state) {
  const auto& s = setup();
  protocol::ResponseSealer sealer(protocol::Version::v3, s.enc.shared_secret, s.nonce);
  std::string sse = sealer.init_event();
  for (std::size_t i = 0; i < kClientChunks; ++i) sse += sealer.seal_event(protocol::EventKind::data, kClientChunkJson);
  sse += sealer.seal_event(protocol::EventKind::done, "[DONE]");
  const std::string request = plaintext(200);
  std::vector<client::Chunk> chunks;
  for (auto _ : state) {
    auto encapsulation = crypto::xwing_encapsulate(s.enclave.public_key);
    benchmark::DoNotOptimize(encapsulation);
    benchmark::DoNotOptimize(protocol::seal_request(s.input(protocol::Version::v3), request));
    client::ResponseDecoder decoder(protocol::Version::v3, s.enc.shared_secret, s.nonce);
    chunks.clear();
    if (!decoder.feed(sse, chunks) || !decoder.finish() || chunks.size() != kClientChunks) {
      state.SkipWithError("the stream did not decode");
      break;
    }
  }
}

// --- Version 3 against version 2: the keys of one response ---------------------------------------
// What a request costs beyond the per-event work: the enclave opens the request and makes the
// response keys (v3: a fresh salt from the CSPRNG, one more HKDF-Extract, the init event's hex),
// the client derives them (v3: from the init event). Arg: the version.

void BM_ResponseKeysClient(benchmark::State& state) {
  const auto& s = setup();
  const auto version = version_arg(state);
  protocol::ResponseSealer sealer(version, s.enc.shared_secret, s.nonce);
  const std::string salt = to_hex(sealer.salt());
  for (auto _ : state) {
    protocol::ResponseOpener opener(version, s.enc.shared_secret, s.nonce);
    if (version == protocol::Version::v3) benchmark::DoNotOptimize(opener.open(protocol::EventKind::init, salt));
    benchmark::DoNotOptimize(opener.next_index());
  }
}

// The whole request on the enclave as EnclaveService does it: open (request key, AEAD, unpad;
// version 3 also keeps the responseSecret from the same HKDF-Extract) and the response keys.
void BM_RequestAndResponseKeys(benchmark::State& state) {
  const auto& s = setup();
  const auto version = version_arg(state);
  const auto env = protocol::seal_request(s.input(version), plaintext(1024));
  for (auto _ : state) {
    crypto::Secret<32> response_secret;
    benchmark::DoNotOptimize(protocol::open_request(env, s.enc.shared_secret, &response_secret));
    auto sealer = version == protocol::Version::v3
                      ? protocol::ResponseSealer::for_v3(response_secret)
                      : protocol::ResponseSealer(version, s.enc.shared_secret, s.nonce);
    benchmark::DoNotOptimize(sealer.init_event());
  }
}

// --- replay protection ---------------------------------------------------------------------------
// The enclave's cache (keyed 16-byte fingerprints in flat tables) next to what it replaced: a
// node-based set of whole (keyId, nonce) pairs. Each iteration records N new requests (2^16, and
// 2^20: the default capacity) into an empty cache; bytes_per_entry is what malloc handed out.

constexpr std::size_t kMaxReplayRequests = std::size_t{1} << 20;
constexpr std::int64_t kReplayNow = 1764004858;

const std::vector<crypto::Nonce>& replay_nonces() {
  static const std::vector<crypto::Nonce> nonces = [] {
    std::vector<crypto::Nonce> out(kMaxReplayRequests);
    for (auto& nonce : out) nonce = crypto::random_nonce();
    return out;
  }();
  return nonces;
}

template <class Cache, class Record>
void run_replay(benchmark::State& state, Record record) {
  const auto requests = static_cast<std::size_t>(state.range(0));
  const auto& all = replay_nonces();
  const std::span<const crypto::Nonce> nonces(all.data(), requests);
  double bytes = 0;
  for (auto _ : state) {
    const std::size_t before = mallinfo2().uordblks;
    auto cache = std::make_unique<Cache>();
    for (const auto& nonce : nonces) record(*cache, nonce);
    bytes = static_cast<double>(mallinfo2().uordblks - before);
    state.PauseTiming();
    cache.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * requests));
  state.counters["bytes_per_entry"] = bytes / static_cast<double>(requests);
}

struct RvencReplay {
  enclave::ReplayCache cache{kMaxReplayRequests, kMaxReplayRequests};  // one tenant may fill it here
};

void BM_ReplayRecord_rvenc(benchmark::State& state) {
  run_replay<RvencReplay>(state, [](RvencReplay& r, const crypto::Nonce& nonce) {
    auto reservation = r.cache.reserve(std::string(), setup().key_id, nonce, kReplayNow);
    if (!reservation) std::abort();
    reservation->commit();
  });
}

using ReplayPair = std::array<std::uint8_t, crypto::kKeyIdBytes + crypto::kAeadNonceBytes>;
struct NodeSetReplay {
  std::unordered_set<ReplayPair, crypto::KeyedBytesHash> pairs;
};

void BM_ReplayRecord_nodeset(benchmark::State& state) {
  run_replay<NodeSetReplay>(state, [](NodeSetReplay& r, const crypto::Nonce& nonce) {
    ReplayPair pair{};
    std::memcpy(pair.data(), setup().key_id.data(), crypto::kKeyIdBytes);
    std::memcpy(pair.data() + crypto::kKeyIdBytes, nonce.data(), nonce.size());
    if (r.pairs.contains(pair)) std::abort();
    r.pairs.insert(pair);
  });
}

// --- usage journal -------------------------------------------------------------------------------
// What a request's thread pays to journal its usage row: the gateway's append (the row's JSON
// copied into a mapped file) next to what it replaced, the same line written with write(2) to an
// append-only file. Journals are replaced every kUsageBatchRows rows, as batches do (untimed:
// that happens on the writer thread).

const gateway::UsageRow& journal_row() {
  static const gateway::UsageRow row{"req_0190a1b2c3d4e5f60718293a", "key_0123456789abcdef", 1'700'000'000'000,
                                     "/rvenc/chat/completions", 200, 100, 32, 2929, 5000, 12};
  return row;
}

// A private directory under TMPDIR, removed with its journals.
struct JournalDir {
  std::filesystem::path path;
  JournalDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "rvenc-journal-bench-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) std::abort();
    path = pattern;
  }
  ~JournalDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

void BM_UsageJournalAppend_rvenc(benchmark::State& state) {
  const JournalDir dir;
  const auto database = dir.path / "usage.db";
  auto journal = gateway::detail::UsageJournal::create(database);
  std::size_t rows = 0;
  for (auto _ : state) {
    if (!journal->append(journal_row())) std::abort();
    if (++rows % gateway::kUsageBatchRows == 0) {
      state.PauseTiming();
      journal->remove();
      journal = gateway::detail::UsageJournal::create(database);
      state.ResumeTiming();
    }
  }
  journal->remove();
  state.SetItemsProcessed(state.iterations());
}

void BM_UsageJournalAppend_write(benchmark::State& state) {
  const JournalDir dir;
  const auto file = dir.path / "usage.db.journal";
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  std::size_t rows = 0;
  for (auto _ : state) {
    std::string line = boost::json::serialize(gateway::to_json(journal_row()));
    line += '\n';
    if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) std::abort();
    if (++rows % gateway::kUsageBatchRows == 0) {
      state.PauseTiming();
      ::close(fd);
      fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
      state.ResumeTiming();
    }
  }
  ::close(fd);
  state.SetItemsProcessed(state.iterations());
}

// --- A large answer (issue 26: embeddings, 16 inputs x 384 dimensions) ---------------------------
// Each hop's CPU for one answer of `rvenc bench`'s engine, next to what a client calling the engine
// directly does with it (parse the JSON): the enclave checks the engine's JSON and seals it, the
// gateway relays the sealed stream, the client opens it. Read in 64 KiB pieces as sockets deliver.

std::string embeddings_answer() {
  boost::json::array data;
  for (std::size_t i = 0; i < 16; ++i) {
    boost::json::array vector;
    for (std::size_t d = 0; d < 384; ++d) vector.emplace_back(static_cast<double>((i * 31 + d * 17) % 1000) / 1000.0 - 0.5);
    data.push_back(boost::json::object{{"object", "embedding"}, {"index", i}, {"embedding", std::move(vector)}});
  }
  return boost::json::serialize(boost::json::object{{"object", "list"},
                                                    {"data", std::move(data)},
                                                    {"model", "bench-model"},
                                                    {"usage", boost::json::object{{"prompt_tokens", 64}, {"total_tokens", 64}}}});
}

constexpr std::size_t kReadBytes = 64 * 1024;

struct SealedAnswer {
  std::string stream;  // init, data, done: what the enclave writes
  SealedAnswer() {
    const auto& s = setup();
    protocol::ResponseSealer sealer(protocol::Version::v3, s.enc.shared_secret, s.nonce);
    stream = sealer.init_event();  // one statement each: the events' order is their nonces' order
    stream += sealer.seal_event(protocol::EventKind::data, embeddings_answer());
    stream += sealer.seal_event(protocol::EventKind::done, "[DONE]");
  }
};

const SealedAnswer& sealed_answer() {
  static const SealedAnswer answer;
  return answer;
}

// Hex of a sealed answer's ciphertext (~135 KB): rvenc's encoder for public values against
// libsodium's constant-time one (what sealed events used before).
std::vector<std::uint8_t> answer_sized_bytes() {
  std::vector<std::uint8_t> bytes(135'000);
  crypto::random_bytes(bytes);
  return bytes;
}

void BM_HexEncode_rvenc(benchmark::State& state) {
  const auto bytes = answer_sized_bytes();
  for (auto _ : state) benchmark::DoNotOptimize(to_public_hex(bytes));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes.size()));
}

void BM_HexEncode_sodium(benchmark::State& state) {
  const auto bytes = answer_sized_bytes();
  for (auto _ : state) benchmark::DoNotOptimize(to_hex(bytes));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes.size()));
}

void BM_LargeAnswer_direct_parse(benchmark::State& state) {
  const std::string answer = embeddings_answer();
  for (auto _ : state) benchmark::DoNotOptimize(boost::json::parse(answer));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * answer.size()));
}

void BM_LargeAnswer_enclave(benchmark::State& state) {
  const auto& s = setup();
  const std::string answer = embeddings_answer();
  protocol::ResponseSealer sealer(protocol::Version::v3, s.enc.shared_secret, s.nonce);
  for (auto _ : state) {
    auto usage = protocol::json_answer_usage(answer);
    if (!usage) {
      state.SkipWithError("the answer is not a JSON object");
      break;
    }
    benchmark::DoNotOptimize(sealer.seal_event(protocol::EventKind::data, answer));
  }
}

void BM_LargeAnswer_gateway(benchmark::State& state) {
  const std::string_view stream = sealed_answer().stream;
  for (auto _ : state) {
    gateway::SseRelay relay;
    for (std::size_t i = 0; i < stream.size(); i += kReadBytes) {
      auto out = relay.feed(stream.substr(i, kReadBytes));
      if (!out) {
        state.SkipWithError("relay failed");
        return;
      }
      benchmark::DoNotOptimize(out->data());
    }
  }
}

void BM_LargeAnswer_client(benchmark::State& state) {
  const auto& s = setup();
  const std::string_view stream = sealed_answer().stream;
  std::vector<client::Chunk> chunks;
  for (auto _ : state) {
    client::ResponseDecoder decoder(protocol::Version::v3, s.enc.shared_secret, s.nonce);
    chunks.clear();
    for (std::size_t i = 0; i < stream.size(); i += kReadBytes) {
      if (auto fed = decoder.feed(stream.substr(i, kReadBytes), chunks); !fed) {
        state.SkipWithError(fed.error().message.c_str());
        return;
      }
    }
    if (chunks.size() != 1 || !decoder.finish()) {
      state.SkipWithError("the answer did not arrive whole");
      return;
    }
  }
}

BENCHMARK(BM_XWingKeygen_rvenc);
BENCHMARK(BM_XWingKeygen_raw);
BENCHMARK(BM_XWingEncaps_rvenc);
BENCHMARK(BM_XWingEncaps_raw);
BENCHMARK(BM_XWingDecaps_rvenc);
BENCHMARK(BM_XWingDecaps_raw);
BENCHMARK(BM_RequestSeal_rvenc)->Arg(1024)->Arg(64 * 1024);
BENCHMARK(BM_RequestSeal_raw)->Arg(1024)->Arg(64 * 1024);
BENCHMARK(BM_RequestOpen_rvenc)->Arg(1024)->Arg(64 * 1024);
BENCHMARK(BM_RequestOpen_raw)->Arg(1024)->Arg(64 * 1024);
BENCHMARK(BM_EventSeal_rvenc)->Arg(2)->Arg(3);
BENCHMARK(BM_EventSeal_raw);
BENCHMARK(BM_EventOpen_rvenc)->Arg(2)->Arg(3);
BENCHMARK(BM_EventOpen_raw);
BENCHMARK(BM_ClientRequest50_rvenc);
BENCHMARK(BM_ResponseKeysClient)->Arg(2)->Arg(3);
BENCHMARK(BM_RequestAndResponseKeys)->Arg(2)->Arg(3);
BENCHMARK(BM_ReplayRecord_rvenc)->Arg(1 << 16)->Arg(1 << 20);
BENCHMARK(BM_ReplayRecord_nodeset)->Arg(1 << 16)->Arg(1 << 20);
BENCHMARK(BM_UsageJournalAppend_rvenc);
BENCHMARK(BM_UsageJournalAppend_write);
BENCHMARK(BM_HexEncode_rvenc);
BENCHMARK(BM_HexEncode_sodium);
BENCHMARK(BM_LargeAnswer_direct_parse);
BENCHMARK(BM_LargeAnswer_enclave);
BENCHMARK(BM_LargeAnswer_gateway);
BENCHMARK(BM_LargeAnswer_client);

}  // namespace

int main(int argc, char** argv) {
  rvenc::crypto::ensure_initialized();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
