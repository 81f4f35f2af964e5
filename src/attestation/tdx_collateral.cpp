// Intel's TDX collateral (tdx.hpp): TCB Info v3 and QE Identity v2 JSON (Intel PCS API), the byte
// range of their signed values, and TCB level matching as Intel's QVL does it.
#include <boost/json.hpp>

#include <algorithm>
#include <ctime>
#include <string>

#include "rvenc/attestation/tdx.hpp"
#include "rvenc/common/hex.hpp"

namespace rvenc::attestation::tdx {
namespace {

namespace json = boost::json;

constexpr std::size_t kMaxLevels = 64;

std::unexpected<Failure> bad(std::string_view doc, std::string_view what) {
  return fail(Check::malformed, std::string(doc) + ": " + std::string(what));
}

// ---- the signed value's byte range -----------------------------------------------------------

std::size_t skip_ws(std::string_view t, std::size_t i) {
  while (i < t.size() && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r')) ++i;
  return i;
}

// The end of the JSON string starting at t[i] == '"' (one past its closing quote), npos if none.
std::size_t string_end(std::string_view t, std::size_t i) {
  for (++i; i < t.size(); ++i) {
    if (t[i] == '\\') ++i;
    else if (t[i] == '"') return i + 1;
  }
  return std::string_view::npos;
}

// The end of the JSON value starting at t[i] (already known to parse), npos if none.
std::size_t value_end(std::string_view t, std::size_t i) {
  if (i >= t.size()) return std::string_view::npos;
  if (t[i] == '"') return string_end(t, i);
  if (t[i] != '{' && t[i] != '[') {
    while (i < t.size() && t[i] != ',' && t[i] != '}' && t[i] != ']' && t[i] != ' ' && t[i] != '\n' &&
           t[i] != '\r' && t[i] != '\t')
      ++i;
    return i;
  }
  std::size_t depth = 0;
  for (; i < t.size(); ++i) {
    if (t[i] == '"') {
      i = string_end(t, i);
      if (i == std::string_view::npos) return i;
      --i;
    } else if (t[i] == '{' || t[i] == '[') {
      ++depth;
    } else if ((t[i] == '}' || t[i] == ']') && --depth == 0) {
      return i + 1;
    }
  }
  return std::string_view::npos;
}

// The raw bytes of the top-level member `key` (its value, exactly as written). The document has
// parsed already, so the walk only has to find the member, not validate.
std::optional<std::pair<std::size_t, std::size_t>> raw_member(std::string_view t, std::string_view key) {
  std::size_t i = skip_ws(t, 0);
  if (i >= t.size() || t[i] != '{') return std::nullopt;
  std::optional<std::pair<std::size_t, std::size_t>> found;
  for (i = skip_ws(t, i + 1); i < t.size() && t[i] == '"';) {
    const std::size_t key_end = string_end(t, i);
    if (key_end == std::string_view::npos) return std::nullopt;
    const std::string_view name = t.substr(i + 1, key_end - i - 2);
    i = skip_ws(t, key_end);
    if (i >= t.size() || t[i] != ':') return std::nullopt;
    i = skip_ws(t, i + 1);
    const std::size_t end = value_end(t, i);
    if (end == std::string_view::npos) return std::nullopt;
    if (name == key) {
      if (found) return std::nullopt;  // duplicate keys: which one was signed is ambiguous
      found = std::pair{i, end - i};
    }
    i = skip_ws(t, end);
    if (i < t.size() && t[i] == ',') i = skip_ws(t, i + 1);
  }
  return found;
}

// ---- field readers ---------------------------------------------------------------------------

// "2023-06-18T08:42:58Z" → Unix seconds.
std::optional<std::int64_t> parse_time(std::string_view s) {
  if (s.size() != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != 'Z')
    return std::nullopt;
  auto num = [&](std::size_t at, std::size_t n) -> int {
    int v = 0;
    for (std::size_t k = at; k < at + n; ++k) {
      if (s[k] < '0' || s[k] > '9') return -1;
      v = v * 10 + (s[k] - '0');
    }
    return v;
  };
  std::tm tm{};
  tm.tm_year = num(0, 4) - 1900;
  tm.tm_mon = num(5, 2) - 1;
  tm.tm_mday = num(8, 2);
  tm.tm_hour = num(11, 2);
  tm.tm_min = num(14, 2);
  tm.tm_sec = num(17, 2);
  if (tm.tm_year < 0 || tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour < 0 ||
      tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 || tm.tm_sec < 0 || tm.tm_sec > 60)
    return std::nullopt;
  return static_cast<std::int64_t>(::timegm(&tm));
}

// Typed reads of an object's members; the first problem is kept in `error` (later ones do not
// replace it), so callers check `error` once after a group of reads.
struct Fields {
  const json::object& obj;
  std::string error;

  const json::value* get(std::string_view key) {
    const auto* v = obj.if_contains(key);
    if (v == nullptr && error.empty()) error = "missing \"" + std::string(key) + "\"";
    return v;
  }
  std::string str(std::string_view key) {
    const auto* v = get(key);
    if (v != nullptr && v->is_string()) return std::string(v->get_string());
    if (v != nullptr && error.empty()) error = "\"" + std::string(key) + "\" is not a string";
    return {};
  }
  std::uint64_t uint(std::string_view key, std::uint64_t max) {
    const auto* v = get(key);
    if (v == nullptr) return 0;
    if (v->is_uint64() && v->get_uint64() <= max) return v->get_uint64();
    if (v->is_int64() && v->get_int64() >= 0 && static_cast<std::uint64_t>(v->get_int64()) <= max)
      return static_cast<std::uint64_t>(v->get_int64());
    if (error.empty()) error = "\"" + std::string(key) + "\" is not an integer in 0.." + std::to_string(max);
    return 0;
  }
  template <std::size_t N>
  void hex(std::string_view key, std::array<std::uint8_t, N>& out) {
    const std::string text = str(key);
    if (!error.empty()) return;
    if (auto ok = from_public_hex_into(text, out, key); !ok) error = ok.error().message;
  }
  std::int64_t time(std::string_view key) {
    const std::string text = str(key);
    if (!error.empty()) return 0;
    const auto t = parse_time(text);
    if (!t) error = "\"" + std::string(key) + "\" is not an ISO 8601 UTC time";
    return t.value_or(0);
  }
  const json::array* array(std::string_view key, std::size_t max) {
    const auto* v = get(key);
    if (v == nullptr) return nullptr;
    if (!v->is_array() || v->get_array().size() > max) {
      if (error.empty()) error = "\"" + std::string(key) + "\" is not an array of at most " + std::to_string(max);
      return nullptr;
    }
    return &v->get_array();
  }
};

// Parses `{"<member>": {...}, "signature": "hex"}`: the object, the signed range, the signature.
Outcome<json::value> parse_signed(std::span<const std::uint8_t> bytes, std::string_view doc, std::string_view member,
                                  SignedJson& out) {
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  boost::system::error_code ec;
  json::value root = json::parse(text, ec);
  if (ec || !root.is_object()) return bad(doc, "not a JSON object");
  const auto* body = root.get_object().if_contains(member);
  if (body == nullptr || !body->is_object()) return bad(doc, "no \"" + std::string(member) + "\" object");
  const auto range = raw_member(text, member);
  if (!range) return bad(doc, "cannot find the raw bytes of \"" + std::string(member) + "\"");
  out.body_offset = range->first;
  out.body_size = range->second;
  Fields top{root.get_object(), {}};
  top.hex("signature", out.signature);
  if (!top.error.empty()) return bad(doc, top.error);
  return json::value(body->get_object());
}

std::vector<IsvsvnLevel> isvsvn_levels(const json::array& levels, std::string& error) {
  std::vector<IsvsvnLevel> out;
  for (const auto& level : levels) {
    if (!level.is_object() || !level.get_object().if_contains("tcb") ||
        !level.get_object().at("tcb").is_object()) {
      error = "a TCB level is not an object with \"tcb\"";
      return out;
    }
    Fields l{level.get_object(), {}};
    Fields t{level.get_object().at("tcb").get_object(), {}};
    IsvsvnLevel entry;
    entry.isvsvn = static_cast<std::uint16_t>(t.uint("isvsvn", 0xFFFF));
    entry.status = l.str("tcbStatus");
    if (!t.error.empty() || !l.error.empty()) {
      error = t.error.empty() ? l.error : t.error;
      return out;
    }
    out.push_back(std::move(entry));
  }
  return out;
}

// 16 {"svn": n} components; like QVL, an SVN keeps its low 8 bits (QVL's own samples carry
// sign-extended bytes such as 65473 for 0xC1).
bool components(const json::object& tcb, std::string_view key, Svn16& out, std::string& error) {
  const auto* v = tcb.if_contains(key);
  if (v == nullptr || !v->is_array() || v->get_array().size() != out.size()) {
    error = "\"" + std::string(key) + "\" is not an array of 16 components";
    return false;
  }
  for (std::size_t i = 0; i < out.size(); ++i) {
    const auto& c = v->get_array()[i];
    if (!c.is_object()) {
      error = "a component of \"" + std::string(key) + "\" is not an object";
      return false;
    }
    Fields f{c.get_object(), {}};
    out[i] = static_cast<std::uint8_t>(f.uint("svn", 0xFFFF) & 0xFFU);
    if (!f.error.empty()) {
      error = f.error;
      return false;
    }
  }
  return true;
}

bool tcb_levels(const json::array& levels, std::vector<TcbLevel>& out, std::string& error) {
  for (const auto& level : levels) {
    const auto* tcb = level.is_object() ? level.get_object().if_contains("tcb") : nullptr;
    if (tcb == nullptr || !tcb->is_object()) {
      error = "a TCB level is not an object with \"tcb\"";
      return false;
    }
    TcbLevel entry;
    Fields l{level.get_object(), {}};
    Fields t{tcb->get_object(), {}};
    entry.status = l.str("tcbStatus");
    entry.pce_svn = static_cast<std::uint16_t>(t.uint("pcesvn", 0xFFFF));
    if (!l.error.empty() || !t.error.empty()) {
      error = l.error.empty() ? t.error : l.error;
      return false;
    }
    if (!components(tcb->get_object(), "sgxtcbcomponents", entry.sgx_components, error) ||
        !components(tcb->get_object(), "tdxtcbcomponents", entry.tdx_components, error))
      return false;
    out.push_back(std::move(entry));
  }
  return true;
}

bool module_identities(const json::array& ids, std::vector<TdxModuleIdentity>& out, std::string& error) {
  for (const auto& id : ids) {
    if (!id.is_object()) {
      error = "a TDX module identity is not an object";
      return false;
    }
    Fields f{id.get_object(), {}};
    TdxModuleIdentity entry;
    entry.id = f.str("id");
    f.hex("mrsigner", entry.mrsigner);
    f.hex("attributes", entry.attributes);
    f.hex("attributesMask", entry.attributes_mask);
    const auto* levels = f.array("tcbLevels", kMaxLevels);
    if (!f.error.empty()) {
      error = f.error;
      return false;
    }
    entry.levels = isvsvn_levels(*levels, error);
    if (!error.empty()) return false;
    out.push_back(std::move(entry));
  }
  return true;
}

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return s;
}

bool components_at_least(std::span<const std::uint8_t> have, std::span<const std::uint8_t> need,
                         std::size_t from = 0) {
  for (std::size_t i = from; i < have.size(); ++i)
    if (have[i] < need[i]) return false;
  return true;
}

// The TDX module of the quote (MRSIGNERSEAM, SEAM_ATTRIBUTES under the mask) is the expected one.
Outcome<void> check_module(const TdReport& body, const Hash48& mrsigner, const std::array<std::uint8_t, 8>& attributes,
                           const std::array<std::uint8_t, 8>& mask, std::string_view which) {
  bool match = body.mrsignerseam == mrsigner;
  for (std::size_t i = 0; i < attributes.size(); ++i)
    match = match && (body.seam_attributes[i] & mask[i]) == (attributes[i] & mask[i]);
  if (!match)
    return fail(Check::tcb_status, "the TDX module (MRSIGNERSEAM " + to_hex(body.mrsignerseam) + ", SEAM attributes " +
                                       to_hex(body.seam_attributes) + ") is not the TCB Info's " + std::string(which));
  return {};
}

}  // namespace

Outcome<TcbInfo> parse_tcb_info(std::span<const std::uint8_t> bytes) {
  constexpr std::string_view kDoc = "tcbinfo.json";
  TcbInfo info;
  auto body = parse_signed(bytes, kDoc, "tcbInfo", info.signed_json);
  if (!body) return std::unexpected(body.error());
  Fields f{body->get_object(), {}};
  if (f.str("id") != "TDX" && f.error.empty()) return bad(kDoc, "\"id\" is not \"TDX\" (an SGX TCB Info?)");
  if (f.uint("version", 1000) != 3 && f.error.empty()) return bad(kDoc, "\"version\" is not 3");
  info.signed_json.issue_date = f.time("issueDate");
  info.signed_json.next_update = f.time("nextUpdate");
  f.hex("fmspc", info.fmspc);
  f.hex("pceId", info.pce_id);
  const auto* module = f.get("tdxModule");
  if (module != nullptr && module->is_object()) {
    Fields m{module->get_object(), {}};
    m.hex("mrsigner", info.module_mrsigner);
    m.hex("attributes", info.module_attributes);
    m.hex("attributesMask", info.module_attributes_mask);
    if (!m.error.empty()) return bad(kDoc, "tdxModule: " + m.error);
  } else if (f.error.empty()) {
    return bad(kDoc, "\"tdxModule\" is not an object");
  }
  const auto* levels = f.array("tcbLevels", kMaxLevels);
  if (!f.error.empty()) return bad(kDoc, f.error);
  std::string error;
  if (!tcb_levels(*levels, info.levels, error)) return bad(kDoc, error);
  if (body->get_object().contains("tdxModuleIdentities")) {
    const auto* ids = f.array("tdxModuleIdentities", kMaxLevels);
    if (!f.error.empty()) return bad(kDoc, f.error);
    if (!module_identities(*ids, info.module_identities, error)) return bad(kDoc, error);
  }
  return info;
}

Outcome<QeIdentity> parse_qe_identity(std::span<const std::uint8_t> bytes) {
  constexpr std::string_view kDoc = "qeidentity.json";
  QeIdentity id;
  auto body = parse_signed(bytes, kDoc, "enclaveIdentity", id.signed_json);
  if (!body) return std::unexpected(body.error());
  Fields f{body->get_object(), {}};
  if (f.str("id") != "TD_QE" && f.error.empty()) return bad(kDoc, "\"id\" is not \"TD_QE\"");
  if (f.uint("version", 1000) != 2 && f.error.empty()) return bad(kDoc, "\"version\" is not 2");
  id.signed_json.issue_date = f.time("issueDate");
  id.signed_json.next_update = f.time("nextUpdate");
  std::array<std::uint8_t, 4> misc{}, misc_mask{};
  f.hex("miscselect", misc);
  f.hex("miscselectMask", misc_mask);
  // MISCSELECT is a little-endian u32 in the report, written big-endian in the JSON.
  for (auto b : misc) id.miscselect = (id.miscselect << 8U) | b;
  for (auto b : misc_mask) id.miscselect_mask = (id.miscselect_mask << 8U) | b;
  f.hex("attributes", id.attributes);
  f.hex("attributesMask", id.attributes_mask);
  f.hex("mrsigner", id.mrsigner);
  id.isv_prod_id = static_cast<std::uint16_t>(f.uint("isvprodid", 0xFFFF));
  const auto* levels = f.array("tcbLevels", kMaxLevels);
  if (!f.error.empty()) return bad(kDoc, f.error);
  std::string error;
  id.levels = isvsvn_levels(*levels, error);
  if (!error.empty()) return bad(kDoc, error);
  return id;
}

std::optional<int> tcb_status_rank(std::string_view status) noexcept {
  static constexpr std::array<std::string_view, 7> kOrder = {
      "Revoked", "OutOfDateConfigurationNeeded", "OutOfDate", "ConfigurationAndSWHardeningNeeded",
      "ConfigurationNeeded", "SWHardeningNeeded", "UpToDate"};
  for (std::size_t i = 0; i < kOrder.size(); ++i)
    if (kOrder[i] == status) return static_cast<int>(i);
  return std::nullopt;
}

Outcome<std::string> match_tcb_level(const TcbInfo& info, const PckExtensions& pck, const TdReport& body) {
  const auto& svn = body.tee_tcb_svn;
  // With a TDX module version (TEE_TCB_SVN[1] > 0), its SVNs are judged by the module identity.
  const std::size_t from = svn[1] > 0 ? 2 : 0;
  const TcbLevel* level = nullptr;
  for (const auto& l : info.levels) {
    if (components_at_least(pck.cpu_svn_components, l.sgx_components) && pck.pce_svn >= l.pce_svn &&
        components_at_least(svn, l.tdx_components, from)) {
      level = &l;
      break;
    }
  }
  if (level == nullptr)
    return fail(Check::tcb_status, "no TCB level of the TCB Info matches the PCK's CPU SVN " +
                                       to_hex(pck.cpu_svn_components) + ", PCESVN " + std::to_string(pck.pce_svn) +
                                       " and the quote's TEE_TCB_SVN " + to_hex(svn));
  std::string status = level->status;
  if (from == 0 || info.module_identities.empty()) {
    if (auto ok = check_module(body, info.module_mrsigner, info.module_attributes, info.module_attributes_mask,
                               "tdxModule");
        !ok)
      return std::unexpected(ok.error());
    return status;
  }
  const std::string id = "TDX_" + upper(to_hex(std::span(svn).subspan(1, 1)));
  const auto module = std::find_if(info.module_identities.begin(), info.module_identities.end(),
                                   [&](const auto& m) { return upper(m.id) == id; });
  if (module == info.module_identities.end())
    return fail(Check::tcb_status, "the TCB Info has no TDX module identity " + id);
  if (auto ok = check_module(body, module->mrsigner, module->attributes, module->attributes_mask, id); !ok)
    return std::unexpected(ok.error());
  const auto module_level = std::find_if(module->levels.begin(), module->levels.end(),
                                         [&](const auto& l) { return svn[0] >= l.isvsvn; });
  if (module_level == module->levels.end())
    return fail(Check::tcb_status, "no TCB level of TDX module " + id + " matches its SVN " + std::to_string(svn[0]));
  const auto a = tcb_status_rank(status), b = tcb_status_rank(module_level->status);
  if (a && b && *b < *a) status = module_level->status;
  if (!b) status = module_level->status;  // unknown: let the caller refuse it by name
  return status;
}

}  // namespace rvenc::attestation::tdx
