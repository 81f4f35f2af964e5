// NVIDIA RIMs (SWID tags) read with libxml2, and their comparison with a GPU's measurements
// (nvidia.hpp). The RIM's XMLDSig signature is not verified here (docs/gpu-attestation.md).
#include <libxml/parser.h>
#include <libxml/tree.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <memory>

#include "rvenc/attestation/nvidia.hpp"

namespace rvenc::attestation {
namespace {

constexpr std::string_view kSwidNamespace = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd";
constexpr std::string_view kSha384Namespace = "http://www.w3.org/2001/04/xmlenc#sha384";
constexpr unsigned kMaxAlternatives = 16;
constexpr unsigned kMaxIndex = 255;

struct DocFree {
  void operator()(xmlDoc* doc) const noexcept { xmlFreeDoc(doc); }
};
const xmlChar* x(std::string_view text) { return reinterpret_cast<const xmlChar*>(text.data()); }

// An attribute's value (namespaced when `ns` is not empty); nullopt when absent.
std::optional<std::string> attribute(xmlNode* node, const char* name, std::string_view ns = {}) {
  xmlChar* value = ns.empty() ? xmlGetNoNsProp(node, x(name)) : xmlGetNsProp(node, x(name), x(ns));
  if (value == nullptr) return std::nullopt;
  std::string out(reinterpret_cast<const char*>(value));
  xmlFree(value);
  return out;
}

bool is_element(const xmlNode* node, std::string_view name) {
  return node->type == XML_ELEMENT_NODE && node->ns != nullptr && node->ns->href != nullptr &&
         std::string_view(reinterpret_cast<const char*>(node->ns->href)) == kSwidNamespace &&
         std::string_view(reinterpret_cast<const char*>(node->name)) == name;
}

xmlNode* child(xmlNode* parent, std::string_view name) {
  for (xmlNode* node = parent->children; node != nullptr; node = node->next)
    if (is_element(node, name)) return node;
  return nullptr;
}

std::optional<unsigned> number(const std::optional<std::string>& text, unsigned max) {
  unsigned value = 0;
  if (!text || text->empty()) return std::nullopt;
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc{} || end != text->data() + text->size() || value > max) return std::nullopt;
  return value;
}

std::string lower(std::string text) {
  std::ranges::transform(text, text.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

bool is_hex(std::string_view text) {
  return std::ranges::all_of(text, [](unsigned char c) { return std::isxdigit(c) != 0; });
}

Outcome<RimMeasurement> parse_resource(xmlNode* node, unsigned& index) {
  const auto bad = [](std::string_view what) { return fail(Check::malformed, "RIM Resource: " + std::string(what)); };
  const auto idx = number(attribute(node, "index"), kMaxIndex);
  const auto alternatives = number(attribute(node, "alternatives"), kMaxAlternatives);
  const auto size = number(attribute(node, "size"), 1024);
  const auto active = attribute(node, "active");
  if (!idx || !alternatives || *alternatives == 0 || !size || !active) return bad("index, alternatives, size or active missing or out of range");
  if (*active != "True" && *active != "False") return bad("index " + std::to_string(*idx) + ": active is neither True nor False");
  RimMeasurement out{.name = attribute(node, "name").value_or(""), .active = *active == "True", .size = *size};
  for (unsigned i = 0; i < *alternatives; ++i) {
    auto hash = attribute(node, ("Hash" + std::to_string(i)).c_str(), kSha384Namespace);
    if (!hash || hash->size() != 2 * *size || !is_hex(*hash))
      return bad("index " + std::to_string(*idx) + ": Hash" + std::to_string(i) + " is missing or not " + std::to_string(*size) + " bytes of hex");
    out.alternatives.push_back(lower(std::move(*hash)));
  }
  index = *idx;
  return out;
}

Outcome<Rim> parse_rim_tree(xmlNode* root) {
  if (root == nullptr || !is_element(root, "SoftwareIdentity")) return fail(Check::malformed, "RIM is not a SWID tag");
  xmlNode* meta = child(root, "Meta");
  xmlNode* payload = child(root, "Payload");
  if (meta == nullptr || payload == nullptr) return fail(Check::malformed, "RIM has no Meta or no Payload");
  Rim rim{.colloquial_version = lower(attribute(meta, "colloquialVersion").value_or("")),
          .product = attribute(meta, "product").value_or("")};
  if (rim.colloquial_version.empty()) return fail(Check::malformed, "RIM has no colloquialVersion");
  for (xmlNode* node = payload->children; node != nullptr; node = node->next) {
    if (!is_element(node, "Resource")) continue;
    unsigned index = 0;
    auto measurement = parse_resource(node, index);
    if (!measurement) return std::unexpected(measurement.error());
    if (!rim.measurements.try_emplace(index, std::move(*measurement)).second)
      return fail(Check::malformed, "RIM has index " + std::to_string(index) + " twice");
  }
  if (rim.measurements.empty()) return fail(Check::malformed, "RIM has no measurement");
  return rim;
}

}  // namespace

Outcome<Rim> parse_rim(std::string_view xml) {
  if (xml.size() > kMaxRimBytes) return fail(Check::malformed, "RIM is over " + std::to_string(kMaxRimBytes) + " bytes");
  // No network, no entity expansion, no DTD loading; libxml2's default limits bound depth and size.
  const int options = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING;
  const std::unique_ptr<xmlDoc, DocFree> doc(
      xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "rim.swidtag", nullptr, options));
  if (!doc) return fail(Check::malformed, "RIM is not well-formed XML");
  return parse_rim_tree(xmlDocGetRootElement(doc.get()));
}

namespace {

// Active golden values of all RIMs by index; malformed when two RIMs claim one index.
Outcome<std::map<unsigned, const RimMeasurement*>> golden_values(std::span<const Rim> rims) {
  std::map<unsigned, const RimMeasurement*> golden;
  for (const auto& rim : rims)
    for (const auto& [index, measurement] : rim.measurements) {
      if (!measurement.active) continue;
      if (!golden.try_emplace(index, &measurement).second)
        return fail(Check::malformed, "two RIMs have an active measurement at index " + std::to_string(index));
    }
  return golden;
}

}  // namespace

Outcome<void> compare_with_rims(const GpuVerified& gpu, std::span<const Rim> rims) {
  if (rims.empty()) return fail(Check::measurement, "no RIM to compare the GPU's measurements with");
  auto golden = golden_values(rims);
  if (!golden) return std::unexpected(golden.error());
  std::string mismatched;
  for (const auto& [index, measurement] : *golden) {
    const auto it = gpu.measurements.find(index);
    const bool matches = it != gpu.measurements.end() && it->second.size() == 2 * measurement->size &&
                         std::ranges::find(measurement->alternatives, it->second) != measurement->alternatives.end();
    if (!matches) mismatched += (mismatched.empty() ? "" : ", ") + std::to_string(index);
  }
  if (!mismatched.empty())
    return fail(Check::measurement, "the GPU's measurements at index " + mismatched + " match no RIM value");
  for (const auto& rim : rims)
    if (rim.colloquial_version != lower(gpu.vbios_version) && rim.colloquial_version != lower(gpu.driver_version))
      return fail(Check::measurement, "RIM version " + rim.colloquial_version + " is neither the GPU's VBIOS " +
                                                  gpu.vbios_version + " nor its driver " + gpu.driver_version);
  return {};
}

}  // namespace rvenc::attestation
