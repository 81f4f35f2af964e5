#include "rvenc/protocol/attestation.hpp"

#include <sodium.h>

#include <algorithm>
#include <chrono>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include "json_strict.hpp"
#include "rvenc/common/clock.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/common/query.hpp"

namespace rvenc::protocol {

namespace {

constexpr std::string_view kReportDataContext = "rvenc-attest-v1";
constexpr std::string_view kReportDataContextV2 = "rvenc-attest-v2";
constexpr std::string_view kKem = "X-Wing";
constexpr std::string_view kSimulated = "simulated";
// Measurements are digests (SHA-256 for simulated, 48 bytes for SEV-SNP/TDX); refuse anything huge.
constexpr std::size_t kMaxMeasurementBytes = 64;
// Hardware reports and quotes are a few KiB; a generous bound keeps parsing cheap.
constexpr std::size_t kMaxEvidenceBytes = 64 * 1024;

Result<std::string_view> string_field(const boost::json::object& obj, std::string_view name) {
  const auto* value = obj.if_contains(name);
  if (value == nullptr) return fail(Errc::invalid_request, "attestation is missing field \"" + std::string(name) + "\"");
  if (!value->is_string()) {
    return fail(Errc::invalid_request, "attestation field \"" + std::string(name) + "\" must be a string");
  }
  return std::string_view(value->get_string().data(), value->get_string().size());
}

template <std::size_t N>
Status hex_field(const boost::json::object& obj, std::string_view name, std::array<std::uint8_t, N>& out) {
  auto text = string_field(obj, name);
  if (!text) return std::unexpected(text.error());
  return from_hex_into(*text, out, name);
}

// "models": an array of non-empty strings (absent: none known).
Status parse_models(const boost::json::object& obj, std::vector<std::string>& out) {
  const auto* value = obj.if_contains("models");
  if (value == nullptr) return {};
  const auto* list = value->if_array();
  if (list == nullptr || list->size() > kMaxListedModels)
    return fail(Errc::invalid_request, "attestation field \"models\" must be an array of at most " +
                                           std::to_string(kMaxListedModels) + " model names");
  for (const auto& item : *list) {
    const auto* name = item.if_string();
    if (name == nullptr || name->empty() || name->size() > kMaxModelNameBytes)
      return fail(Errc::invalid_request, "attestation field \"models\" must list non-empty names of at most " +
                                             std::to_string(kMaxModelNameBytes) + " bytes");
    out.emplace_back(name->data(), name->size());
  }
  return {};
}

// "capacity": a positive integer or null (absent: unlimited).
Status parse_capacity(const boost::json::object& obj, std::optional<std::int64_t>& out) {
  const auto* value = obj.if_contains("capacity");
  if (value == nullptr || value->is_null()) return {};
  if (!value->is_int64() || value->get_int64() <= 0)
    return fail(Errc::invalid_request, "attestation field \"capacity\" must be a positive integer or null");
  out = value->get_int64();
  return {};
}

// "binding": 1 or 2 (absent: 1, the documents of older enclaves).
Status parse_binding(const boost::json::object& obj, Binding& out) {
  const auto* value = obj.if_contains("binding");
  if (value == nullptr) return {};
  if (!value->is_int64() || (value->get_int64() != 1 && value->get_int64() != 2))
    return fail(Errc::invalid_request, "attestation field \"binding\" must be 1 or 2");
  out = static_cast<Binding>(value->get_int64());
  return {};
}

void append(std::vector<std::uint8_t>& out, std::span<const std::uint8_t> bytes) {
  out.insert(out.end(), bytes.begin(), bytes.end());
}

// "previousKeys": [{"keyId", "notAfter"}] (absent: none).
Status parse_previous_keys(const boost::json::object& obj, std::vector<PreviousKey>& out) {
  const auto* value = obj.if_contains("previousKeys");
  if (value == nullptr) return {};
  const auto* list = value->if_array();
  if (list == nullptr || list->size() > kMaxPreviousKeys)
    return fail(Errc::invalid_request, "attestation field \"previousKeys\" must be an array of at most " +
                                           std::to_string(kMaxPreviousKeys) + " keys");
  for (const auto& item : *list) {
    const auto* entry = item.if_object();
    const auto* not_after = entry ? entry->if_contains("notAfter") : nullptr;
    PreviousKey key;
    if (entry == nullptr || !hex_field(*entry, "keyId", key.key_id) || not_after == nullptr ||
        !not_after->is_int64() || not_after->get_int64() < 0)
      return fail(Errc::invalid_request,
                  "attestation field \"previousKeys\" must hold {\"keyId\": hex, \"notAfter\": integer} objects");
    key.not_after = not_after->get_int64();
    out.push_back(key);
  }
  return {};
}

bool collateral_name_ok(std::string_view name) {
  if (name.empty() || name.size() > kMaxCollateralNameBytes || name.front() == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}

// "collateral": {"name": "<base64>"} (absent: none).
Status parse_collateral(const boost::json::object& obj, CollateralFiles& out) {
  const auto* value = obj.if_contains("collateral");
  if (value == nullptr) return {};
  const auto* files = value->if_object();
  if (files == nullptr || files->size() > kMaxCollateralFiles)
    return fail(Errc::invalid_request, "attestation field \"collateral\" must be an object of at most " +
                                           std::to_string(kMaxCollateralFiles) + " files");
  std::size_t encoded = 0;
  for (const auto& [name, content] : *files) {
    const auto* text = content.if_string();
    encoded += text == nullptr ? 0 : text->size();
    if (!collateral_name_ok(std::string_view(name.data(), name.size())) || text == nullptr ||
        encoded > kMaxCollateralBytes * 4 / 3 + 4 * kMaxCollateralFiles)
      return fail(Errc::invalid_request, "attestation field \"collateral\" must map file names to base64 contents "
                                         "of at most " + std::to_string(kMaxCollateralBytes) + " bytes in all");
    auto bytes = base64_decode(std::string_view(text->data(), text->size()), "attestation field \"collateral\"");
    if (!bytes) return std::unexpected(bytes.error());
    out.emplace(std::string(name.data(), name.size()), std::move(*bytes));
  }
  return check_collateral(out);
}

}  // namespace

Status check_collateral(const CollateralFiles& files) {
  if (files.size() > kMaxCollateralFiles)
    return fail(Errc::invalid_request, "collateral: more than " + std::to_string(kMaxCollateralFiles) + " files");
  std::size_t total = 0;
  for (const auto& [name, bytes] : files) {
    if (!collateral_name_ok(name))
      return fail(Errc::invalid_request, "collateral: a file name must be 1-" + std::to_string(kMaxCollateralNameBytes) +
                                             " of [A-Za-z0-9._-] and not start with '.'");
    total += bytes.size();
  }
  if (total > kMaxCollateralBytes)
    return fail(Errc::invalid_request, "collateral: " + std::to_string(total) + " bytes in all, more than " +
                                           std::to_string(kMaxCollateralBytes));
  return {};
}

ReportData report_data(const crypto::XWingPublicKey& public_key, const Challenge& challenge) {
  std::vector<std::uint8_t> message;
  message.reserve(kReportDataContext.size() + public_key.size() + challenge.size());
  append(message, crypto::as_bytes(kReportDataContext));
  append(message, public_key);
  append(message, challenge);
  return crypto::sha512(message);
}

ReportData report_data_v2(const crypto::XWingPublicKey& public_key, std::int64_t not_after,
                          const Challenge& challenge) {
  // Every part has a fixed length, so the concatenation is unambiguous.
  std::array<std::uint8_t, 8> not_after_be{};
  auto value = static_cast<std::uint64_t>(not_after);
  for (std::size_t i = not_after_be.size(); i-- > 0; value >>= 8) not_after_be[i] = static_cast<std::uint8_t>(value);
  const crypto::KeyId key_id = crypto::key_id(public_key);
  std::vector<std::uint8_t> message;
  message.reserve(kReportDataContextV2.size() + key_id.size() + public_key.size() + not_after_be.size() +
                  challenge.size());
  append(message, crypto::as_bytes(kReportDataContextV2));
  append(message, key_id);
  append(message, public_key);
  append(message, not_after_be);
  append(message, challenge);
  return crypto::sha512(message);
}

ReportData report_data(Binding version, const crypto::XWingPublicKey& public_key, std::int64_t not_after,
                       const Challenge& challenge) {
  return version == Binding::v1 ? report_data(public_key, challenge) : report_data_v2(public_key, not_after, challenge);
}

ReportData expected_report_data(const AttestationDocument& doc, const Challenge& challenge) {
  return report_data(doc.binding, doc.public_key, doc.not_after, challenge);
}

std::string serialize_attestation(const AttestationDocument& doc) {
  boost::json::object obj;
  obj["keyId"] = to_hex(doc.key_id);
  obj["kem"] = doc.kem;
  obj["publicKey"] = to_hex(doc.public_key);
  obj["notAfter"] = doc.not_after;
  obj["provider"] = doc.provider;
  if (doc.binding != Binding::v1) obj["binding"] = static_cast<int>(doc.binding);
  obj["reportData"] = to_hex(doc.report_data);
  obj["evidence"] = base64_encode(doc.evidence);
  obj["measurement"] = to_hex(doc.measurement);
  boost::json::array models;
  for (const auto& model : doc.models) models.emplace_back(model);
  obj["models"] = std::move(models);
  obj["capacity"] = doc.capacity ? boost::json::value(*doc.capacity) : boost::json::value(nullptr);
  boost::json::array previous;
  for (const auto& key : doc.previous_keys)
    previous.push_back(boost::json::object{{"keyId", to_hex(key.key_id)}, {"notAfter", key.not_after}});
  obj["previousKeys"] = std::move(previous);
  if (!doc.collateral.empty()) {
    boost::json::object collateral;
    for (const auto& [name, bytes] : doc.collateral) collateral[name] = base64_encode(bytes);
    obj["collateral"] = std::move(collateral);
  }
  return boost::json::serialize(obj);
}

Result<AttestationDocument> parse_attestation(std::string_view json) {
  auto parsed = detail::parse_json_strict(json, "attestation document", Errc::invalid_request);
  if (!parsed) return std::unexpected(parsed.error());
  if (!parsed->is_object()) return fail(Errc::invalid_request, "attestation document must be a JSON object");
  const auto& obj = parsed->get_object();

  AttestationDocument doc;
  if (auto ok = hex_field(obj, "keyId", doc.key_id); !ok) return std::unexpected(ok.error());
  auto kem = string_field(obj, "kem");
  if (!kem) return std::unexpected(kem.error());
  if (*kem != kKem) return fail(Errc::invalid_request, "attestation field \"kem\" must be \"X-Wing\"");
  doc.kem = std::string(*kem);
  if (auto ok = hex_field(obj, "publicKey", doc.public_key); !ok) return std::unexpected(ok.error());
  const auto* not_after = obj.if_contains("notAfter");
  if (not_after == nullptr) return fail(Errc::invalid_request, "attestation is missing field \"notAfter\"");
  if (!not_after->is_int64() || not_after->get_int64() < 0) {
    return fail(Errc::invalid_request, "attestation field \"notAfter\" must be a non-negative integer");
  }
  doc.not_after = not_after->get_int64();
  auto provider = string_field(obj, "provider");
  if (!provider) return std::unexpected(provider.error());
  doc.provider = std::string(*provider);
  if (auto ok = parse_binding(obj, doc.binding); !ok) return std::unexpected(ok.error());
  if (auto ok = hex_field(obj, "reportData", doc.report_data); !ok) return std::unexpected(ok.error());
  auto evidence = string_field(obj, "evidence");
  if (!evidence) return std::unexpected(evidence.error());
  if (evidence->size() > kMaxEvidenceBytes * 4 / 3 + 4) {
    return fail(Errc::invalid_request, "attestation field \"evidence\" is too large");
  }
  auto evidence_bytes = base64_decode(*evidence, "evidence");
  if (!evidence_bytes) return std::unexpected(evidence_bytes.error());
  doc.evidence = std::move(*evidence_bytes);
  auto measurement = string_field(obj, "measurement");
  if (!measurement) return std::unexpected(measurement.error());
  auto measurement_bytes = from_hex(*measurement, "measurement");
  if (!measurement_bytes) return std::unexpected(measurement_bytes.error());
  if (measurement_bytes->size() > kMaxMeasurementBytes) {
    return fail(Errc::invalid_request, "attestation field \"measurement\" is too long");
  }
  doc.measurement = std::move(*measurement_bytes);
  if (auto ok = parse_models(obj, doc.models); !ok) return std::unexpected(ok.error());
  if (auto ok = parse_capacity(obj, doc.capacity); !ok) return std::unexpected(ok.error());
  if (auto ok = parse_previous_keys(obj, doc.previous_keys); !ok) return std::unexpected(ok.error());
  if (auto ok = parse_collateral(obj, doc.collateral); !ok) return std::unexpected(ok.error());
  return doc;
}

std::vector<std::uint8_t> simulated_signed_message(const AttestationDocument& doc) {
  std::vector<std::uint8_t> message(doc.report_data.begin(), doc.report_data.end());
  message.insert(message.end(), doc.measurement.begin(), doc.measurement.end());
  return message;
}

Status verify_attestation(const AttestationDocument& doc, const Challenge& challenge, const AttestationPolicy& policy) {
  auto until = verify_attestation_until(doc, challenge, policy);
  if (!until) return std::unexpected(until.error());
  return {};
}

Result<std::int64_t> verify_attestation_until(const AttestationDocument& doc, const Challenge& challenge,
                                              const AttestationPolicy& policy) {
  if (doc.kem != kKem) return fail(Errc::attestation_failed, "attestation names an unsupported KEM");
  if (doc.key_id != crypto::key_id(doc.public_key)) {
    return fail(Errc::attestation_failed, "attestation keyId does not match its public key");
  }
  if (doc.binding < policy.min_binding)
    return fail(Errc::attestation_failed,
                "attestation uses binding " + std::to_string(static_cast<int>(doc.binding)) +
                    ", whose reportData does not cover notAfter (an enclave of an older release, or a document "
                    "stripped of \"binding\"); this client requires binding " +
                    std::to_string(static_cast<int>(policy.min_binding)) +
                    " (accept older enclaves with --allow-binding-v1)");
  const auto expected = expected_report_data(doc, challenge);
  if (!crypto::constant_time_equal(expected, doc.report_data)) {
    return fail(Errc::attestation_failed, doc.binding == Binding::v1
                                              ? "attestation reportData does not bind the public key to our challenge"
                                              : "attestation reportData does not bind the public key, its notAfter "
                                                "and our challenge (binding 2)");
  }
  const auto now = unix_now();
  if (doc.not_after <= now) return fail(Errc::attestation_failed, "attestation has expired (notAfter is in the past)");
  if (policy.expected_measurement &&
      !crypto::constant_time_equal(*policy.expected_measurement, doc.measurement)) {
    return fail(Errc::attestation_failed, "attestation measurement is not the expected one");
  }

  if (doc.provider == kSimulated) {
    // Simulated evidence is trusted only with a platform key given explicitly.
    if (!policy.simulated_platform_key) {
      return fail(Errc::attestation_failed, "provider \"simulated\" is not trusted without a platform public key");
    }
    if (doc.evidence.size() != crypto::kEd25519SignatureBytes) {
      return fail(Errc::attestation_failed, "simulated evidence must be a 64-byte Ed25519 signature");
    }
    crypto::Ed25519Signature signature;
    std::copy(doc.evidence.begin(), doc.evidence.end(), signature.begin());
    if (!crypto::ed25519_verify(*policy.simulated_platform_key, simulated_signed_message(doc), signature)) {
      return fail(Errc::attestation_failed, "simulated evidence signature does not verify with the platform key");
    }
    return doc.not_after;
  }
  if (std::find(policy.allowed_providers.begin(), policy.allowed_providers.end(), doc.provider) ==
      policy.allowed_providers.end()) {
    return fail(Errc::attestation_failed, "attestation provider is not allowed by the policy");
  }
  if (!policy.hardware_verifier)
    return fail(Errc::attestation_failed, "no verifier for " + doc.provider + " evidence is installed");
  auto until = policy.hardware_verifier(doc);
  if (!until) return std::unexpected(Error{Errc::attestation_failed, until.error().message});
  return std::min(doc.not_after, *until);
}

std::string base64_encode(std::span<const std::uint8_t> bytes) {
  crypto::ensure_initialized();
  const auto variant = sodium_base64_VARIANT_ORIGINAL;
  std::string out(sodium_base64_encoded_len(bytes.size(), variant), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(), variant);
  out.pop_back();  // the terminating NUL
  return out;
}

Result<std::vector<std::uint8_t>> base64_decode(std::string_view text, std::string_view field) {
  crypto::ensure_initialized();
  std::vector<std::uint8_t> out(text.size() / 4 * 3 + 3);
  std::size_t written = 0;
  const char* end = nullptr;
  if (sodium_base642bin(out.data(), out.size(), text.data(), text.size(), nullptr, &written, &end,
                        sodium_base64_VARIANT_ORIGINAL) != 0 ||
      end != text.data() + text.size()) {
    return fail(Errc::invalid_request, std::string(field) + " is not valid base64");
  }
  out.resize(written);
  return out;
}

Result<Challenge> challenge_from_query(std::string_view query) {
  std::optional<std::string_view> challenge_hex;
  for (const auto& [key, value] : split_query(query))
    if (key == "challenge") challenge_hex = value;
  if (!challenge_hex) return fail(Errc::invalid_request, "the challenge query parameter is required (64 hex digits)");
  return from_hex_exact<kChallengeBytes>(*challenge_hex, "challenge");
}

}  // namespace rvenc::protocol
