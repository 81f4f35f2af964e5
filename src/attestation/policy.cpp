// The measurement policy file of `--attestation-policy FILE` / `rvenc attest verify --policy FILE`
// (docs/attestation.md): strict parsing (unknown keys, wrong lengths and duplicates refused, with
// the offending key named) and a canonical serialisation.
#include <algorithm>
#include <array>
#include <fstream>
#include <tuple>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include "../protocol/json_strict.hpp"
#include "rvenc/attestation/sev_snp.hpp"
#include "rvenc/attestation/verifier.hpp"
#include "rvenc/common/hex.hpp"

namespace rvenc::attestation {
namespace {

namespace json = boost::json;

constexpr std::array<std::string_view, 4> kTopKeys = {"providers", "allowDebug", "tdx", "sevSnp"};
constexpr std::array<std::string_view, 8> kTdxKeys = {"mrtd",   "rtmr0", "rtmr1", "rtmr2",
                                                      "rtmr3",  "mrseam", "xfam", "minTcbStatus"};
constexpr std::array<std::string_view, 7> kSevSnpKeys = {"measurement", "hostData",  "idKeyDigest",
                                                         "authorKeyDigest", "minTcb", "allowSmt",
                                                         "allowMigrationAgent"};

// "<where>: <what>" as a malformed failure naming the policy.
std::unexpected<Failure> bad(std::string_view where, std::string_view what) {
  return fail(Check::malformed, "attestation policy: " + std::string(where) + " " + std::string(what));
}

// Refuses a key outside `known` (a typo must not silently accept every value).
template <std::size_t N>
Outcome<const json::object*> object_with_keys(const json::value& value, std::string_view where,
                                               const std::array<std::string_view, N>& known) {
  const auto* obj = value.if_object();
  if (obj == nullptr) return bad(where, "must be a JSON object");
  for (const auto& [key, member] : *obj) {
    const std::string_view name(key.data(), key.size());
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      std::string list;
      for (const auto k : known) list += (list.empty() ? "" : ", ") + std::string(k);
      const std::string shown = name.size() <= 64 ? std::string(name) : std::string(name.substr(0, 64)) + "…";
      return bad(where, "has an unknown key \"" + shown + "\" (known: " + list + ")");
    }
  }
  return obj;
}

Outcome<bool> boolean(const json::object& obj, std::string_view key, std::string_view where, bool fallback) {
  const auto* value = obj.if_contains(key);
  if (value == nullptr) return fallback;
  if (!value->is_bool()) return bad(std::string(where) + std::string(key), "must be true or false");
  return value->get_bool();
}

// A list of hex values of exactly `bytes` bytes each (absent: empty, any value accepted).
Outcome<std::vector<Bytes>> hex_list(const json::object& obj, std::string_view key, std::string_view where,
                                     std::size_t bytes) {
  std::vector<Bytes> out;
  const auto* value = obj.if_contains(key);
  if (value == nullptr) return out;
  const std::string name = std::string(where) + std::string(key);
  const auto* list = value->if_array();
  if (list == nullptr || list->size() > kMaxPolicyValues)
    return bad(name, "must be a list of at most " + std::to_string(kMaxPolicyValues) + " hex strings");
  for (const auto& item : *list) {
    const auto* text = item.if_string();
    if (text == nullptr) return bad(name, "must hold hex strings");
    auto decoded = from_public_hex(std::string_view(text->data(), text->size()), name);
    if (!decoded || decoded->size() != bytes)
      return bad(name, "values must be " + std::to_string(bytes) + " bytes (" + std::to_string(2 * bytes) +
                           " hex digits)");
    out.push_back(std::move(*decoded));
  }
  return out;
}

Outcome<std::vector<std::string>> providers(const json::object& obj) {
  std::vector<std::string> out;
  const auto* value = obj.if_contains("providers");
  if (value == nullptr) return Policy{}.providers;
  const auto* list = value->if_array();
  if (list == nullptr || list->empty() || list->size() > 2)
    return bad("providers", "must be a non-empty list of \"tdx\" and/or \"sev-snp\"");
  for (const auto& item : *list) {
    const auto* name = item.if_string();
    if (name == nullptr || !provider_from_name(std::string_view(name->data(), name->size())))
      return bad("providers", "may only list \"tdx\" and \"sev-snp\" (\"simulated\" is trusted by "
                              "--platform-public-key, never by a policy)");
    if (std::find(out.begin(), out.end(), std::string_view(name->data(), name->size())) != out.end())
      return bad("providers", "lists a provider twice");
    out.emplace_back(name->data(), name->size());
  }
  return out;
}

// TDX TCB statuses a policy may name as its minimum, best first ("Revoked" is never accepted).
constexpr std::array<std::string_view, 6> kTcbStatuses = {
    "UpToDate",  "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded",
    "OutOfDate", "OutOfDateConfigurationNeeded"};

Outcome<Policy::Tdx> tdx_section(const json::value& value) {
  auto obj = object_with_keys(value, "tdx", kTdxKeys);
  if (!obj) return std::unexpected(obj.error());
  Policy::Tdx tdx;
  const std::array<std::pair<std::string_view, std::vector<Bytes>*>, 6> registers = {
      {{"mrtd", &tdx.mrtd}, {"rtmr0", &tdx.rtmr0}, {"rtmr1", &tdx.rtmr1}, {"rtmr2", &tdx.rtmr2},
       {"rtmr3", &tdx.rtmr3}, {"mrseam", &tdx.mrseam}}};
  for (const auto& [key, out] : registers) {
    auto list = hex_list(**obj, key, "tdx.", 48);
    if (!list) return std::unexpected(list.error());
    *out = std::move(*list);
  }
  auto xfam = hex_list(**obj, "xfam", "tdx.", 8);
  if (!xfam) return std::unexpected(xfam.error());
  tdx.xfam = std::move(*xfam);
  if (const auto* status = (*obj)->if_contains("minTcbStatus")) {
    const auto* text = status->if_string();
    const auto found = text == nullptr ? kTcbStatuses.end()
                                       : std::find(kTcbStatuses.begin(), kTcbStatuses.end(),
                                                   std::string_view(text->data(), text->size()));
    if (found == kTcbStatuses.end())
      return bad("tdx.minTcbStatus", "must be one of UpToDate, SWHardeningNeeded, ConfigurationNeeded, "
                                     "ConfigurationAndSWHardeningNeeded, OutOfDate, OutOfDateConfigurationNeeded");
    tdx.min_tcb_status = std::string(*found);
  }
  return tdx;
}

// "minTcb": the 8 bytes of the reported TCB in report order (bootloader first, microcode last),
// as 16 hex digits; kept as the little-endian integer the report holds.
Outcome<std::optional<std::uint64_t>> min_tcb(const json::object& obj) {
  const auto* value = obj.if_contains("minTcb");
  if (value == nullptr) return std::optional<std::uint64_t>();
  const auto* text = value->if_string();
  const auto tcb = text == nullptr ? std::nullopt : snp_tcb_from_hex(std::string_view(text->data(), text->size()));
  if (!tcb) return bad("sevSnp.minTcb", "must be the 8-byte reported TCB as 16 hex digits (e.g. 0300000000000873)");
  return std::optional<std::uint64_t>(*tcb);
}

Outcome<Policy::SevSnp> sev_snp_section(const json::value& value) {
  auto obj = object_with_keys(value, "sevSnp", kSevSnpKeys);
  if (!obj) return std::unexpected(obj.error());
  Policy::SevSnp snp;
  const std::array<std::tuple<std::string_view, std::vector<Bytes>*, std::size_t>, 4> lists = {
      {{"measurement", &snp.measurement, 48}, {"hostData", &snp.host_data, 32},
       {"idKeyDigest", &snp.id_key_digest, 48}, {"authorKeyDigest", &snp.author_key_digest, 48}}};
  for (const auto& [key, out, size] : lists) {
    auto list = hex_list(**obj, key, "sevSnp.", size);
    if (!list) return std::unexpected(list.error());
    *out = std::move(*list);
  }
  auto tcb = min_tcb(**obj);
  if (!tcb) return std::unexpected(tcb.error());
  snp.min_tcb = *tcb;
  auto smt = boolean(**obj, "allowSmt", "sevSnp.", snp.allow_smt);
  if (!smt) return std::unexpected(smt.error());
  snp.allow_smt = *smt;
  auto migration = boolean(**obj, "allowMigrationAgent", "sevSnp.", snp.allow_migration_agent);
  if (!migration) return std::unexpected(migration.error());
  snp.allow_migration_agent = *migration;
  return snp;
}

json::array hex_array(const std::vector<Bytes>& values) {
  json::array out;
  for (const auto& value : values) out.emplace_back(to_hex(value));
  return out;
}

}  // namespace

Outcome<Policy> parse_policy(std::string_view text) {
  if (text.size() > kMaxPolicyBytes)
    return bad("file", "is larger than " + std::to_string(kMaxPolicyBytes) + " bytes");
  auto parsed = protocol::detail::parse_json_strict(text, "attestation policy", Errc::invalid_request);
  if (!parsed) return fail(Check::malformed, parsed.error().message);
  auto top = object_with_keys(*parsed, "document", kTopKeys);
  if (!top) return std::unexpected(top.error());
  Policy policy;
  auto listed = providers(**top);
  if (!listed) return std::unexpected(listed.error());
  policy.providers = std::move(*listed);
  auto debug = boolean(**top, "allowDebug", "", false);
  if (!debug) return std::unexpected(debug.error());
  policy.allow_debug = *debug;
  if (const auto* tdx = (*top)->if_contains("tdx")) {
    auto section = tdx_section(*tdx);
    if (!section) return std::unexpected(section.error());
    policy.tdx = std::move(*section);
  }
  if (const auto* snp = (*top)->if_contains("sevSnp")) {
    auto section = sev_snp_section(*snp);
    if (!section) return std::unexpected(section.error());
    policy.sev_snp = std::move(*section);
  }
  return policy;
}

Outcome<Policy> load_policy(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return fail(Check::malformed, "attestation policy: cannot read " + file.string());
  std::string text;
  text.resize(kMaxPolicyBytes + 1);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) return fail(Check::malformed, "attestation policy: cannot read " + file.string());
  text.resize(static_cast<std::size_t>(in.gcount()));
  auto policy = parse_policy(text);
  if (!policy) policy.error().message += " (" + file.string() + ")";
  return policy;
}

std::string serialize_policy(const Policy& policy) {
  json::array providers;
  for (const auto& name : policy.providers) providers.emplace_back(name);
  const auto& tdx = policy.tdx;
  json::object tdx_obj{{"mrtd", hex_array(tdx.mrtd)},     {"rtmr0", hex_array(tdx.rtmr0)},
                       {"rtmr1", hex_array(tdx.rtmr1)},   {"rtmr2", hex_array(tdx.rtmr2)},
                       {"rtmr3", hex_array(tdx.rtmr3)},   {"mrseam", hex_array(tdx.mrseam)},
                       {"xfam", hex_array(tdx.xfam)},     {"minTcbStatus", tdx.min_tcb_status}};
  const auto& snp = policy.sev_snp;
  json::object snp_obj{{"measurement", hex_array(snp.measurement)},
                       {"hostData", hex_array(snp.host_data)},
                       {"idKeyDigest", hex_array(snp.id_key_digest)},
                       {"authorKeyDigest", hex_array(snp.author_key_digest)},
                       {"allowSmt", snp.allow_smt},
                       {"allowMigrationAgent", snp.allow_migration_agent}};
  if (snp.min_tcb) {
    Bytes tcb(8);
    for (std::size_t i = 0; i < 8; ++i) tcb[i] = static_cast<std::uint8_t>(*snp.min_tcb >> (8 * i));
    snp_obj["minTcb"] = to_hex(tcb);
  }
  return json::serialize(json::object{{"providers", std::move(providers)},
                                      {"allowDebug", policy.allow_debug},
                                      {"tdx", std::move(tdx_obj)},
                                      {"sevSnp", std::move(snp_obj)}});
}

}  // namespace rvenc::attestation
