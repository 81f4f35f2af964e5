// Attestation documents: serialisation, strict parsing and policy verification.
#include <gtest/gtest.h>

#include <chrono>

#include <boost/json.hpp>

#include "rvenc/common/hex.hpp"
#include "rvenc/protocol/attestation.hpp"
#include "support/test_support.hpp"

namespace rvenc::protocol {
namespace {

namespace json = boost::json;

std::int64_t now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct Simulated {
  crypto::XWingKeyPair key = crypto::xwing_generate_keypair();
  crypto::Ed25519KeyPair platform;
  Challenge challenge = crypto::random_array<kChallengeBytes>();
  AttestationDocument doc;
  AttestationPolicy policy;

  Simulated() {
    crypto::Ed25519Seed seed;
    crypto::random_bytes(seed.span());
    platform = crypto::ed25519_keypair_from_seed(seed);
    doc.key_id = crypto::key_id(key.public_key);
    doc.public_key = key.public_key;
    doc.not_after = now() + 3600;
    doc.provider = "simulated";
    doc.binding = Binding::v2;
    doc.report_data = expected_report_data(doc, challenge);
    const auto measurement = crypto::sha256(crypto::as_bytes("enclave binary"));
    doc.measurement.assign(measurement.begin(), measurement.end());
    sign();
    policy.simulated_platform_key = platform.public_key;
  }
  // The document as an enclave of an older release makes it (binding 1).
  void make_binding_v1() {
    doc.binding = Binding::v1;
    doc.report_data = report_data(key.public_key, challenge);
    sign();
  }
  void sign() {
    const auto sig = crypto::ed25519_sign(platform, simulated_signed_message(doc));
    doc.evidence.assign(sig.begin(), sig.end());
  }
};

void expect_failed(const Status& s) {
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code, Errc::attestation_failed);
}

TEST(Attestation, SerializeParseRoundTripWithProtocolFieldNames) {
  Simulated s;
  const auto text = serialize_attestation(s.doc);
  const auto obj = json::parse(text).as_object();
  for (auto name : {"keyId", "kem", "publicKey", "notAfter", "provider", "binding", "reportData", "evidence",
                    "measurement", "models", "capacity", "previousKeys"}) {
    EXPECT_TRUE(obj.contains(name)) << name;
  }
  EXPECT_EQ(obj.size(), 12u);
  EXPECT_EQ(obj.at("binding"), 2);
  // A binding-1 document keeps the old shape: no "binding" member.
  Simulated old;
  old.make_binding_v1();
  EXPECT_FALSE(json::parse(serialize_attestation(old.doc)).as_object().contains("binding"));
  EXPECT_EQ(obj.at("kem"), "X-Wing");
  auto parsed = parse_attestation(text);
  ASSERT_TRUE(parsed.has_value()) << parsed.error().to_string();
  EXPECT_EQ(parsed->key_id, s.doc.key_id);
  EXPECT_EQ(parsed->public_key, s.doc.public_key);
  EXPECT_EQ(parsed->not_after, s.doc.not_after);
  EXPECT_EQ(parsed->provider, "simulated");
  EXPECT_EQ(parsed->report_data, s.doc.report_data);
  EXPECT_EQ(parsed->evidence, s.doc.evidence);
  EXPECT_EQ(parsed->measurement, s.doc.measurement);
  EXPECT_TRUE(verify_attestation(*parsed, s.challenge, s.policy).has_value());
}

TEST(Attestation, ParseRejectsMalformedDocuments) {
  Simulated s;
  const auto good = json::parse(serialize_attestation(s.doc)).as_object();
  for (const auto& kv : good) {
    // PROTOCOL.md section 7: these three are informational and optional (older enclaves send none);
    // "binding" is optional too (absent: 1; AttestationBinding.AStrippedBindingMemberFails).
    if (kv.key() == "models" || kv.key() == "capacity" || kv.key() == "previousKeys" || kv.key() == "binding") continue;
    auto doc = good;
    doc.erase(kv.key());
    auto r = parse_attestation(json::serialize(doc));
    ASSERT_FALSE(r.has_value()) << kv.key();
    EXPECT_EQ(r.error().code, Errc::invalid_request);
    EXPECT_NE(r.error().message.find(std::string(kv.key())), std::string::npos);
  }
  const std::vector<std::pair<std::string, json::value>> bad = {
      {"keyId", "00"},          {"keyId", 5},           {"publicKey", "zz"},      {"publicKey", "0011"},
      {"notAfter", "soon"},     {"notAfter", -1},       {"notAfter", 1.5},        {"provider", 1},
      {"reportData", "abc"},    {"evidence", "***"},    {"evidence", 5},          {"measurement", "0"},
      {"measurement", json::value(std::string(200, 'a'))},           {"kem", "ML-KEM"},
  };
  for (const auto& [name, value] : bad) {
    auto doc = good;
    doc[name] = value;
    auto r = parse_attestation(json::serialize(doc));
    ASSERT_FALSE(r.has_value()) << name;
    EXPECT_EQ(r.error().code, Errc::invalid_request);
  }
  for (std::string text : {"", "[]", "{", "null"}) EXPECT_FALSE(parse_attestation(text).has_value());
  auto dup = serialize_attestation(s.doc);
  dup.insert(1, R"("provider":"tdx",)");
  auto r = parse_attestation(dup);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("duplicate"), std::string::npos);
}

TEST(Attestation, VerifyRejectsEveryBrokenBinding) {
  Simulated s;
  ASSERT_TRUE(verify_attestation(s.doc, s.challenge, s.policy).has_value());

  auto other_challenge = s.challenge;
  other_challenge[0] ^= 1;
  expect_failed(verify_attestation(s.doc, other_challenge, s.policy));

  auto doc = s.doc;
  doc.key_id[0] ^= 1;
  expect_failed(verify_attestation(doc, s.challenge, s.policy));

  // Another key swapped in with a matching keyId still fails the reportData binding.
  doc = s.doc;
  doc.public_key = crypto::xwing_generate_keypair().public_key;
  doc.key_id = crypto::key_id(doc.public_key);
  expect_failed(verify_attestation(doc, s.challenge, s.policy));

  doc = s.doc;
  doc.evidence[5] ^= 1;
  expect_failed(verify_attestation(doc, s.challenge, s.policy));
  doc.evidence.resize(10);
  expect_failed(verify_attestation(doc, s.challenge, s.policy));

  doc = s.doc;
  doc.not_after = now() - 1;
  expect_failed(verify_attestation(doc, s.challenge, s.policy));

  auto policy = s.policy;
  policy.expected_measurement = std::vector<std::uint8_t>(32, 0);
  expect_failed(verify_attestation(s.doc, s.challenge, policy));
  policy.expected_measurement = s.doc.measurement;
  EXPECT_TRUE(verify_attestation(s.doc, s.challenge, policy).has_value());

  // Simulated is never trusted by default, nor with another platform key.
  expect_failed(verify_attestation(s.doc, s.challenge, AttestationPolicy{}));
  policy = s.policy;
  crypto::Ed25519Seed seed;
  crypto::random_bytes(seed.span());
  policy.simulated_platform_key = crypto::ed25519_keypair_from_seed(seed).public_key;
  expect_failed(verify_attestation(s.doc, s.challenge, policy));
}

// Our own vectors of binding 2 (tests/vectors/attestation_v2.json, made with Python's hashlib).
TEST(AttestationBinding, V2VectorsReproduceAndV1ValuesStay) {
  const auto vectors = test::load_project_vector_file("attestation_v2");
  const auto& cases = vectors.at("cases").as_array();
  ASSERT_GE(cases.size(), 4u);
  for (const auto& c : cases) {
    const auto& o = c.as_object();
    auto text = [&](std::string_view name) { return std::string(o.at(name).as_string()); };
    const auto pk = from_hex_exact<crypto::kXWingPublicKeyBytes>(text("publicKey"), "publicKey").value();
    const auto challenge = from_hex_exact<kChallengeBytes>(text("challenge"), "challenge").value();
    const std::int64_t not_after = o.at("notAfter").as_int64();
    EXPECT_EQ(to_hex(crypto::key_id(pk)), text("keyId"));
    EXPECT_EQ(to_hex(report_data_v2(pk, not_after, challenge)), text("reportData"));
    EXPECT_EQ(to_hex(report_data(Binding::v2, pk, not_after, challenge)), text("reportData"));
    EXPECT_EQ(to_hex(report_data(Binding::v1, pk, not_after, challenge)), text("reportDataV1"));
  }
}

TEST(AttestationBinding, V2VerifiesAndAChangedNotAfterFails) {
  Simulated s;
  ASSERT_TRUE(verify_attestation(s.doc, s.challenge, s.policy).has_value());
  // The host extends the key's life (the finding: binding 1 let this through).
  auto doc = s.doc;
  doc.not_after += 30 * 24 * 3600;
  auto verified = verify_attestation(doc, s.challenge, s.policy);
  ASSERT_FALSE(verified) << "a host extended the key's life unnoticed";
  EXPECT_NE(verified.error().message.find("notAfter"), std::string::npos) << verified.error().message;
  // Also when it goes through JSON, as a client sees it.
  auto json_doc = json::parse(serialize_attestation(s.doc)).as_object();
  json_doc["notAfter"] = s.doc.not_after + 3600;
  auto parsed = parse_attestation(json::serialize(json_doc));
  ASSERT_TRUE(parsed);
  expect_failed(verify_attestation(*parsed, s.challenge, s.policy));
}

TEST(AttestationBinding, AStrippedBindingMemberFails) {
  Simulated s;
  auto json_doc = json::parse(serialize_attestation(s.doc)).as_object();
  json_doc.erase("binding");
  auto stripped = parse_attestation(json::serialize(json_doc));
  ASSERT_TRUE(stripped);
  EXPECT_EQ(stripped->binding, Binding::v1);
  auto verified = verify_attestation(*stripped, s.challenge, s.policy);
  ASSERT_FALSE(verified);
  EXPECT_NE(verified.error().message.find("binding 1"), std::string::npos) << verified.error().message;
  // Even a client that accepts old enclaves: the label is inside the hash, so a binding-2
  // reportData is no binding-1 value.
  auto lenient = s.policy;
  lenient.min_binding = Binding::v1;
  expect_failed(verify_attestation(*stripped, s.challenge, lenient));
}

TEST(AttestationBinding, V1VerifiesOnlyWhenAllowed) {
  Simulated s;
  s.make_binding_v1();
  auto verified = verify_attestation(s.doc, s.challenge, s.policy);
  ASSERT_FALSE(verified);
  EXPECT_NE(verified.error().message.find("requires binding 2"), std::string::npos) << verified.error().message;
  auto lenient = s.policy;
  lenient.min_binding = Binding::v1;
  EXPECT_TRUE(verify_attestation(s.doc, s.challenge, lenient).has_value());
  auto other_challenge = s.challenge;
  other_challenge[3] ^= 1;
  expect_failed(verify_attestation(s.doc, other_challenge, lenient));
}

TEST(AttestationBinding, ParseTakesOnlyKnownBindings) {
  Simulated s;
  auto base = json::parse(serialize_attestation(s.doc)).as_object();
  for (const json::value& bad : {json::value(3), json::value(0), json::value(-1), json::value("2"), json::value(2.0),
                                 json::value(nullptr)}) {
    auto obj = base;
    obj["binding"] = bad;
    auto parsed = parse_attestation(json::serialize(obj));
    ASSERT_FALSE(parsed) << json::serialize(bad);
    EXPECT_EQ(parsed.error().code, Errc::invalid_request);
    EXPECT_NE(parsed.error().message.find("\"binding\" must be 1 or 2"), std::string::npos);
  }
  base["binding"] = 1;
  EXPECT_EQ(parse_attestation(json::serialize(base)).value().binding, Binding::v1);
}

TEST(Attestation, HardwareProvidersNeedAVerifier) {
  Simulated s;
  auto doc = s.doc;
  for (std::string provider : {"sev-snp", "tdx", "unknown"}) {
    doc.provider = provider;
    expect_failed(verify_attestation(doc, s.challenge, AttestationPolicy{}));
  }
}

TEST(Attestation, CollateralTravelsWithTheDocumentOnlyWhenThere) {
  Simulated s;
  EXPECT_FALSE(json::parse(serialize_attestation(s.doc)).as_object().contains("collateral"));
  s.doc.collateral["vcek.der"] = {0x30, 0x82, 0x01};
  s.doc.collateral["tcbinfo.json"] = std::vector<std::uint8_t>(1000, '{');
  const auto text = serialize_attestation(s.doc);
  const auto obj = json::parse(text).as_object();
  ASSERT_TRUE(obj.contains("collateral"));
  EXPECT_EQ(obj.at("collateral").as_object().at("vcek.der").as_string(), "MIIB");
  const auto parsed = parse_attestation(text);
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message;
  EXPECT_EQ(parsed->collateral, s.doc.collateral);
}

TEST(Attestation, ParseRefusesCollateralOutsideItsBounds) {
  Simulated s;
  const auto with = [&](json::value collateral) {
    auto obj = json::parse(serialize_attestation(s.doc)).as_object();
    obj["collateral"] = std::move(collateral);
    return parse_attestation(json::serialize(obj));
  };
  for (auto bad : {json::value("vcek"), json::value(json::object{{"vcek.der", 1}}),
                   json::value(json::object{{"../etc/passwd", "AA=="}}), json::value(json::object{{"", "AA=="}}),
                   json::value(json::object{{".hidden", "AA=="}}), json::value(json::object{{"vcek.der", "not base64!"}}),
                   json::value(json::object{{std::string(kMaxCollateralNameBytes + 1, 'a'), "AA=="}})}) {
    const auto parsed = with(bad);
    ASSERT_FALSE(parsed.has_value()) << json::serialize(bad);
    EXPECT_EQ(parsed.error().code, Errc::invalid_request);
    EXPECT_NE(parsed.error().message.find("collateral"), std::string::npos) << parsed.error().message;
  }
  json::object many;
  for (std::size_t i = 0; i <= kMaxCollateralFiles; ++i) many["f" + std::to_string(i)] = "AA==";
  EXPECT_FALSE(with(many).has_value());
  const std::string big = base64_encode(std::vector<std::uint8_t>(kMaxCollateralBytes / 2 + 1, 7));
  EXPECT_FALSE(with(json::object{{"a", big}, {"b", big}}).has_value());
  EXPECT_TRUE(with(json::object{{"a", big}}).has_value());
}

TEST(Attestation, HardwareDocumentsGoToTheInstalledVerifier) {
  Simulated s;
  auto doc = s.doc;
  doc.provider = "sev-snp";
  AttestationPolicy policy;
  int calls = 0;
  policy.hardware_verifier = [&](const AttestationDocument& seen) -> Result<std::int64_t> {
    ++calls;
    EXPECT_EQ(seen.evidence, doc.evidence);
    return doc.not_after - 100;
  };
  const auto until = verify_attestation_until(doc, s.challenge, policy);
  ASSERT_TRUE(until.has_value()) << until.error().message;
  EXPECT_EQ(*until, doc.not_after - 100);  // the earlier of notAfter and the evidence's validity
  EXPECT_EQ(calls, 1);
  policy.hardware_verifier = [&](const AttestationDocument&) -> Result<std::int64_t> { return doc.not_after + 100; };
  EXPECT_EQ(verify_attestation_until(doc, s.challenge, policy).value_or(0), doc.not_after);
  policy.hardware_verifier = [](const AttestationDocument&) -> Result<std::int64_t> {
    return fail(Errc::invalid_request, "sev-snp evidence: debug: the guest policy allows debugging");
  };
  const auto refused = verify_attestation(doc, s.challenge, policy);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, Errc::attestation_failed);
  EXPECT_NE(refused.error().message.find("debug"), std::string::npos);
  // Not reached for a binding that fails first, nor for a provider the policy does not allow.
  calls = 0;
  policy.hardware_verifier = [&](const AttestationDocument&) -> Result<std::int64_t> { return ++calls; };
  expect_failed(verify_attestation(doc, crypto::random_array<kChallengeBytes>(), policy));
  policy.allowed_providers = {"tdx"};
  expect_failed(verify_attestation(doc, s.challenge, policy));
  EXPECT_EQ(calls, 0);
}

TEST(Attestation, ChallengeFromQuery) {
  const std::string hex(64, 'a');
  auto challenge = challenge_from_query("x=1&challenge=" + hex + "&y=2");
  ASSERT_TRUE(challenge);
  EXPECT_EQ((*challenge)[0], 0xaa);
  for (const std::string& query : {std::string(), std::string("challenge="), "challenge=" + hex.substr(2),
                                  "challenge=" + std::string(64, 'z'), "other=" + hex}) {
    auto bad = challenge_from_query(query);
    ASSERT_FALSE(bad) << query;
    EXPECT_EQ(bad.error().code, Errc::invalid_request);
  }
}

}  // namespace
}  // namespace rvenc::protocol
