#include "rvenc/protocol/envelope.hpp"

#include <algorithm>
#include <array>
#include <deque>
#include <optional>
#include <set>
#include <utility>

#include <boost/json/basic_parser_impl.hpp>

#include "json_strict.hpp"
#include "rvenc/common/hex.hpp"

namespace rvenc::protocol {

namespace {

constexpr std::array<std::string_view, 6> kFieldNames{"version",    "keyId",      "timestamp",
                                                      "encryptedInference", "cipherText", "nonce"};
enum Field : std::size_t { kVersion, kKeyId, kTimestamp, kEncryptedInference, kCipherText, kNonce, kFieldCount };
constexpr std::array<Field, 3> kV1Fields{kEncryptedInference, kCipherText, kNonce};
constexpr std::array<Field, 6> kV2Fields{kVersion, kKeyId, kTimestamp, kEncryptedInference, kCipherText, kNonce};
constexpr std::string_view kV1Layout = "a v1 envelope has exactly encryptedInference, cipherText, nonce";
constexpr std::string_view kV2Layout =
    "a v2 or v3 envelope has exactly version, keyId, timestamp, encryptedInference, cipherText, nonce";
// Longest body worth parsing: the hex of the largest encryptedInference plus the other fields.
constexpr std::size_t kMaxEnvelopeBytes = 2 * kMaxEncryptedInferenceBytes + 16 * 1024;

struct FieldValue {
  enum class Kind : std::uint8_t { absent, string, int64, other_number, other } kind = Kind::absent;
  std::string_view text;  // strings: a view of the body, or of `owned` when the JSON text had escapes
  std::int64_t integer = 0;
};

// One SAX pass over the body: checks the syntax, refuses duplicate keys at any depth (Boost.JSON's
// DOM would keep one of them silently) and keeps the top-level values of the envelope's fields.
struct EnvelopeScanner {
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);
  using ec_t = boost::system::error_code;
  using sv = boost::json::string_view;

  std::string_view body;
  std::size_t depth = 0;
  bool top_is_object = false;
  std::array<FieldValue, kFieldCount> fields{};
  std::size_t top_level_keys = 0;
  std::optional<Field> pending;  // the field whose value comes next
  std::vector<std::set<std::string>> other_keys;  // per open object: keys not among the fields
  std::string key, string_parts;
  std::deque<std::string> owned;
  std::optional<std::string> duplicate_key;  // the first one; parsing goes on so syntax errors still win

  [[nodiscard]] bool at_top() const { return depth == 1 && top_is_object; }
  FieldValue* take_pending() {
    if (!pending || !at_top()) return nullptr;
    auto* value = &fields[*pending];
    pending.reset();
    return value;
  }
  void set_other() {
    if (auto* v = take_pending()) v->kind = FieldValue::Kind::other;
  }
  bool open(bool object) {
    set_other();
    if (depth++ == 0) top_is_object = object;
    if (object) other_keys.emplace_back();
    return true;
  }

  bool on_document_begin(ec_t&) { return true; }
  bool on_document_end(ec_t&) { return true; }
  bool on_object_begin(ec_t&) { return open(true); }
  bool on_object_end(std::size_t, ec_t&) {
    other_keys.pop_back();
    --depth;
    return true;
  }
  bool on_array_begin(ec_t&) { return open(false); }
  bool on_array_end(std::size_t, ec_t&) {
    --depth;
    return true;
  }
  bool on_key_part(sv s, std::size_t, ec_t&) {
    key.append(s.data(), s.size());
    return true;
  }
  bool on_key(sv s, std::size_t, ec_t&) {
    key.append(s.data(), s.size());
    bool fresh = true;
    const auto known = at_top() ? std::ranges::find(kFieldNames, key) : kFieldNames.end();
    if (known != kFieldNames.end()) {
      const auto field = static_cast<Field>(known - kFieldNames.begin());
      fresh = fields[field].kind == FieldValue::Kind::absent;
      pending = field;
    } else {
      fresh = other_keys.back().insert(key).second;
    }
    if (at_top()) ++top_level_keys;
    if (!fresh && !duplicate_key) duplicate_key = key;
    key.clear();
    return true;
  }
  bool on_string_part(sv s, std::size_t, ec_t&) {
    if (pending && at_top()) string_parts.append(s.data(), s.size());
    return true;
  }
  bool on_string(sv s, std::size_t, ec_t&) {
    auto* value = take_pending();
    if (!value) return true;
    value->kind = FieldValue::Kind::string;
    const bool in_body = string_parts.empty() && s.data() >= body.data() && s.data() + s.size() <= body.data() + body.size();
    if (in_body) {
      value->text = std::string_view(s.data(), s.size());
    } else {
      string_parts.append(s.data(), s.size());
      value->text = owned.emplace_back(std::move(string_parts));
      string_parts.clear();
    }
    return true;
  }
  bool on_number_part(sv, ec_t&) { return true; }
  bool on_int64(std::int64_t i, sv, ec_t&) {
    if (auto* value = take_pending()) {
      value->kind = FieldValue::Kind::int64;
      value->integer = i;
    }
    return true;
  }
  bool on_uint64(std::uint64_t, sv, ec_t&) {
    if (auto* value = take_pending()) value->kind = FieldValue::Kind::other_number;
    return true;
  }
  bool on_double(double, sv, ec_t&) {
    if (auto* value = take_pending()) value->kind = FieldValue::Kind::other_number;
    return true;
  }
  bool on_bool(bool, ec_t&) {
    set_other();
    return true;
  }
  bool on_null(ec_t&) {
    set_other();
    return true;
  }
  bool on_comment_part(sv, ec_t&) { return true; }
  bool on_comment(sv, ec_t&) { return true; }
};

// The body checked field by field (the checks and messages of PROTOCOL.md section 2), with the hex
// fields still as text: the gateway only validates them, the enclave decodes them.
struct ScannedEnvelope {
  Version version = Version::v2;
  crypto::KeyId key_id{};
  std::int64_t timestamp = 0;
  std::string_view encrypted_inference, cipher_text, nonce;
};

Result<std::string_view> string_field(const EnvelopeScanner& scan, Field field) {
  const auto& value = scan.fields[field];
  const std::string name(kFieldNames[field]);
  if (value.kind == FieldValue::Kind::absent) return fail(Errc::invalid_request, "missing field \"" + name + "\"");
  if (value.kind != FieldValue::Kind::string) return fail(Errc::invalid_request, "field \"" + name + "\" must be a string");
  return value.text;
}

Status check_layout(const EnvelopeScanner& scan, std::span<const Field> expected, std::string_view layout) {
  for (auto field : expected) {
    if (scan.fields[field].kind == FieldValue::Kind::absent)
      return fail(Errc::invalid_request, "missing field \"" + std::string(kFieldNames[field]) + "\"");
  }
  if (scan.top_level_keys != expected.size()) {
    return fail(Errc::invalid_request, "unexpected field in request body (" + std::string(layout) + ")");
  }
  return {};
}

// Calls `use` with the scanned envelope while the scanner (which may own some of its text) lives.
template <class Use>
auto scan_envelope(std::string_view body, Use&& use) -> decltype(use(std::declval<const ScannedEnvelope&>())) {
  if (body.size() > kMaxEnvelopeBytes) return fail(Errc::request_too_large, "request body is too large");
  boost::json::parse_options options;
  options.max_depth = detail::kMaxJsonDepth;
  boost::json::basic_parser<EnvelopeScanner> parser(options);
  parser.handler().body = body;
  boost::system::error_code ec;
  const std::size_t used = parser.write_some(false, body.data(), body.size(), ec);
  if (ec || used != body.size()) return fail(Errc::invalid_request, detail::not_json_message(body, "request body"));
  const auto& scan = parser.handler();
  if (scan.duplicate_key)
    return fail(Errc::invalid_request, "request body has a duplicate field" + detail::quoted_field_name(*scan.duplicate_key));
  if (!scan.top_is_object) return fail(Errc::invalid_request, "request body must be a JSON object");

  ScannedEnvelope env;
  if (const auto& version = scan.fields[kVersion]; version.kind != FieldValue::Kind::absent) {
    if (version.kind != FieldValue::Kind::int64 && version.kind != FieldValue::Kind::other_number)
      return fail(Errc::invalid_request, "field \"version\" must be the integer 2 or 3");
    if (version.kind != FieldValue::Kind::int64 || (version.integer != 2 && version.integer != 3))
      return fail(Errc::unsupported_version, "unsupported envelope version (this endpoint speaks versions 3 and 2)");
    env.version = version.integer == 3 ? Version::v3 : Version::v2;
    if (auto ok = check_layout(scan, kV2Fields, kV2Layout); !ok) return std::unexpected(ok.error());
    auto key_id = string_field(scan, kKeyId);
    if (!key_id) return std::unexpected(key_id.error());
    if (auto ok = from_public_hex_into(*key_id, env.key_id, "keyId"); !ok) return std::unexpected(ok.error());
    const auto& timestamp = scan.fields[kTimestamp];
    if (timestamp.kind != FieldValue::Kind::int64 || timestamp.integer < 0)
      return fail(Errc::invalid_request, "field \"timestamp\" must be a non-negative integer");
    env.timestamp = timestamp.integer;
  } else {
    env.version = Version::v1;
    if (auto ok = check_layout(scan, kV1Fields, kV1Layout); !ok) return std::unexpected(ok.error());
  }
  for (auto [field, text] : {std::pair{kEncryptedInference, &env.encrypted_inference},
                             std::pair{kCipherText, &env.cipher_text}, std::pair{kNonce, &env.nonce}}) {
    auto value = string_field(scan, field);
    if (!value) return std::unexpected(value.error());
    *text = *value;
  }
  return use(env);
}

// encryptedInference's checks after its hex: at least a tag, at most the limit.
Status check_inference_size(std::size_t bytes) {
  if (bytes < crypto::kAeadTagBytes)
    return fail(Errc::invalid_request, "field \"encryptedInference\" is shorter than an authentication tag");
  if (bytes > kMaxEncryptedInferenceBytes) return fail(Errc::request_too_large, "field \"encryptedInference\" is too large");
  return {};
}

}  // namespace

Result<RequestEnvelope> parse_envelope(std::string_view body) {
  return scan_envelope(body, [](const ScannedEnvelope& scanned) -> Result<RequestEnvelope> {
    RequestEnvelope env;
    env.version = scanned.version;
    env.key_id = scanned.key_id;
    env.timestamp = scanned.timestamp;
    auto bytes = from_public_hex(scanned.encrypted_inference, "encryptedInference");
    if (!bytes) return std::unexpected(bytes.error());
    if (auto ok = check_inference_size(bytes->size()); !ok) return std::unexpected(ok.error());
    env.encrypted_inference = std::move(*bytes);
    if (auto ok = from_public_hex_into(scanned.cipher_text, env.cipher_text, "cipherText"); !ok)
      return std::unexpected(ok.error());
    if (auto ok = from_public_hex_into(scanned.nonce, env.nonce, "nonce"); !ok) return std::unexpected(ok.error());
    return env;
  });
}

Result<EnvelopeSummary> check_envelope(std::string_view body) {
  return scan_envelope(body, [](const ScannedEnvelope& scanned) -> Result<EnvelopeSummary> {
    if (auto ok = check_public_hex(scanned.encrypted_inference, "encryptedInference"); !ok)
      return std::unexpected(ok.error());
    if (auto ok = check_inference_size(scanned.encrypted_inference.size() / 2); !ok) return std::unexpected(ok.error());
    if (auto ok = check_public_hex(scanned.cipher_text, "cipherText", crypto::kXWingCipherTextBytes); !ok)
      return std::unexpected(ok.error());
    if (auto ok = check_public_hex(scanned.nonce, "nonce", crypto::kAeadNonceBytes); !ok) return std::unexpected(ok.error());
    return EnvelopeSummary{scanned.version, scanned.key_id, scanned.timestamp, scanned.encrypted_inference.size() / 2};
  });
}

std::string serialize_envelope(const RequestEnvelope& envelope) {
  std::string out;
  out.reserve(envelope.encrypted_inference.size() * 2 + crypto::kXWingCipherTextBytes * 2 + 200);
  out += '{';
  if (envelope.version != Version::v1) {
    out += "\"version\":";
    out += envelope.version == Version::v3 ? '3' : '2';
    out += ",\"keyId\":\"";
    out += to_hex(envelope.key_id);
    out += "\",\"timestamp\":";
    out += std::to_string(envelope.timestamp);
    out += ',';
  }
  out += "\"encryptedInference\":\"";
  out += to_public_hex(envelope.encrypted_inference);
  out += "\",\"cipherText\":\"";
  out += to_public_hex(envelope.cipher_text);
  out += "\",\"nonce\":\"";
  out += to_hex(envelope.nonce);
  out += "\"}";
  return out;
}

}  // namespace rvenc::protocol
