// protocol::ResponseOpener on arbitrary payloads: the input is an event stream (SSE text, as the
// gateway relays it) opened with the keys of the first v1/v2/v3 test vector case, so the seed
// corpus holds real encrypted streams whose mutations reach every check. Never crashes; after a
// failure the opener stays failed; nothing opens after done; version 3 opens nothing sealed
// before one init and takes no second. Also: whatever the sealer seals (the input as plaintext)
// the opener opens back.
#include <array>
#include <span>
#include <tuple>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/protocol/sealing.hpp"
#include "rvenc/protocol/sse.hpp"

namespace {

using rvenc::protocol::EventKind;
using rvenc::protocol::ResponseOpener;
using rvenc::protocol::ResponseSealer;
using rvenc::protocol::Version;

// /work/shared/vectors v1.json, v2.json and v3.json, cases[0] (all use the same secret and nonce).
constexpr std::string_view kSharedSecretHex = "47ee9516a7dd7e0f3cac7716c627c2432ab0e314ebe33548528ca31cbc5d4ecc";
constexpr std::string_view kNonceHex = "30373e454c535a61686f767d848b9299a0a7aeb5bcc3cad1";

struct Keys {
  rvenc::crypto::SharedSecret secret;
  rvenc::crypto::Nonce nonce{};
};

const Keys& keys() {
  static const Keys k = [] {
    Keys out;
    const auto secret = rvenc::from_hex_exact<rvenc::crypto::SharedSecret::size()>(kSharedSecretHex, "secret");
    const auto nonce = rvenc::from_hex_exact<std::tuple_size_v<rvenc::crypto::Nonce>>(kNonceHex, "nonce");
    RVENC_FUZZ_CHECK(secret && nonce);
    out.secret = rvenc::crypto::SharedSecret(std::span<const std::uint8_t, rvenc::crypto::SharedSecret::size()>(*secret));
    out.nonce = *nonce;
    return out;
  }();
  return k;
}

void open_stream(Version version, const std::vector<rvenc::protocol::SseEvent>& events) {
  ResponseOpener opener(version, keys().secret, keys().nonce);
  bool failed = false;
  bool done = false;
  bool init = false;
  for (const auto& event : events) {
    const auto kind = rvenc::protocol::kind_from_name(event.event);
    if (!kind) continue;  // unknown kinds are skipped, as the client does
    const auto before = opener.next_index();
    auto opened = opener.open(*kind, event.data);
    if (failed || done) RVENC_FUZZ_CHECK(!opened);
    if (!opened) {
      const auto code = opened.error().code;
      RVENC_FUZZ_CHECK(code == rvenc::Errc::tampered_stream || code == rvenc::Errc::transport_error);
      failed = true;
      continue;
    }
    RVENC_FUZZ_CHECK(opened->kind == *kind);
    if (*kind == EventKind::init) {
      RVENC_FUZZ_CHECK(opener.next_index() == before && opened->plaintext.view().empty());
      if (version == Version::v3) {
        RVENC_FUZZ_CHECK(!init && before == 0);
        init = true;
      }
      continue;
    }
    // Version 3 opens nothing before its init (a plain gateway error fails as transport_error).
    RVENC_FUZZ_CHECK(version != Version::v3 || init);
    if (*kind == EventKind::done) {
      RVENC_FUZZ_CHECK(opened->plaintext.view() == "[DONE]");
      RVENC_FUZZ_CHECK(opener.done());
      done = true;
    } else {
      RVENC_FUZZ_CHECK(opener.next_index() == before + 1);
    }
  }
}

void seal_and_open(Version version, EventKind kind, std::string_view plaintext) {
  ResponseSealer sealer(version, keys().secret, keys().nonce);
  ResponseOpener opener(version, keys().secret, keys().nonce);
  if (version == Version::v3) {
    rvenc::protocol::SseParser parser;
    std::vector<rvenc::protocol::SseEvent> init;
    RVENC_FUZZ_CHECK(parser.feed(sealer.init_event(), init) && init.size() == 1);
    RVENC_FUZZ_CHECK(opener.open(EventKind::init, init[0].data).has_value());
  }
  for (int i = 0; i < 2; ++i) {
    auto opened = opener.open(kind, sealer.seal_payload(kind, plaintext));
    RVENC_FUZZ_CHECK(opened.has_value());
    RVENC_FUZZ_CHECK(opened->plaintext.view() == plaintext);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  rvenc::protocol::SseParser parser;
  std::vector<rvenc::protocol::SseEvent> events;
  (void)parser.feed(text, events);
  for (const Version version : {Version::v1, Version::v2, Version::v3}) open_stream(version, events);

  seal_and_open(Version::v1, EventKind::data, text);
  seal_and_open(Version::v2, EventKind::data, text);
  seal_and_open(Version::v2, EventKind::error, text);
  seal_and_open(Version::v3, EventKind::data, text);
  seal_and_open(Version::v3, EventKind::error, text);

  // The raw input as one payload of each kind, for every version.
  for (const Version version : {Version::v1, Version::v2, Version::v3}) {
    for (const EventKind kind : {EventKind::init, EventKind::data, EventKind::error, EventKind::done}) {
      ResponseOpener opener(version, keys().secret, keys().nonce);
      (void)opener.open(kind, text);
    }
  }
  return 0;
}
