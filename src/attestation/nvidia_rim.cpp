// NVIDIA RIMs (SWID tags) read with libxml2, their XMLDSig signature checked with libxmlsec1
// (OpenSSL backend) and its signer's chain with x509.hpp, and their comparison with a GPU's
// measurements (nvidia.hpp).
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/err.h>
#include <xmlsec/crypto.h>
#include <xmlsec/errors.h>
#include <xmlsec/openssl/evp.h>
#include <xmlsec/xmldsig.h>
#include <xmlsec/xmlsec.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <memory>

#include "rvenc/attestation/nvidia.hpp"
#include "rvenc/protocol/attestation.hpp"
#include "x509.hpp"

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
  if (!idx || !alternatives || *alternatives == 0 || !size || !active)
    return bad("index, alternatives, size or active missing or out of range");
  if (*active != "True" && *active != "False")
    return bad("index " + std::to_string(*idx) + ": active is neither True nor False");
  RimMeasurement out{.name = attribute(node, "name").value_or(""), .active = *active == "True", .size = *size};
  for (unsigned i = 0; i < *alternatives; ++i) {
    auto hash = attribute(node, ("Hash" + std::to_string(i)).c_str(), kSha384Namespace);
    if (!hash || hash->size() != 2 * *size || !is_hex(*hash))
      return bad("index " + std::to_string(*idx) + ": Hash" + std::to_string(i) + " is missing or not " +
                 std::to_string(*size) + " bytes of hex");
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

// --- the XMLDSig signature (libxmlsec1, OpenSSL backend) ---------------------------------------

constexpr std::string_view kDsigNamespace = "http://www.w3.org/2000/09/xmldsig#";
constexpr std::size_t kMaxRimCertificates = 8;

// libxmlsec1 and its OpenSSL backend, initialized once for the process (never shut down: other
// threads may verify at any time); its errors are not printed, a Failure tells them.
bool xmlsec_ready() {
  static const bool ready = [] {
    if (xmlSecInit() < 0 || xmlSecCheckVersion() != 1) return false;
    xmlSecErrorsDefaultCallbackEnableOutput(0);
    return xmlSecOpenSSLAppInit(nullptr) >= 0 && xmlSecOpenSSLInit() >= 0;
  }();
  return ready;
}

struct DsigCtxFree {
  void operator()(xmlSecDSigCtx* ctx) const noexcept { xmlSecDSigCtxDestroy(ctx); }
};

bool is_dsig(const xmlNode* node, std::string_view name) {
  return node->type == XML_ELEMENT_NODE && node->ns != nullptr && node->ns->href != nullptr &&
         std::string_view(reinterpret_cast<const char*>(node->ns->href)) == kDsigNamespace &&
         std::string_view(reinterpret_cast<const char*>(node->name)) == name;
}

xmlNode* dsig_child(xmlNode* parent, std::string_view name) {
  for (xmlNode* node = parent == nullptr ? nullptr : parent->children; node != nullptr; node = node->next)
    if (is_dsig(node, name)) return node;
  return nullptr;
}

// The one ds:Signature among the root's children.
Outcome<xmlNode*> signature_node(xmlNode* root) {
  xmlNode* found = nullptr;
  for (xmlNode* node = root == nullptr ? nullptr : root->children; node != nullptr; node = node->next) {
    if (!is_dsig(node, "Signature")) continue;
    if (found != nullptr) return fail(Check::malformed, "RIM has more than one ds:Signature");
    found = node;
  }
  if (found == nullptr) return fail(Check::malformed, "RIM has no ds:Signature");
  return found;
}

// KeyInfo/X509Data/X509Certificate, signer first.
Outcome<x509::Certs> signature_certificates(xmlNode* signature) {
  x509::Certs certs;
  xmlNode* data = dsig_child(dsig_child(signature, "KeyInfo"), "X509Data");
  for (xmlNode* node = data == nullptr ? nullptr : data->children; node != nullptr; node = node->next) {
    if (!is_dsig(node, "X509Certificate")) continue;
    if (certs.size() == kMaxRimCertificates) return fail(Check::malformed, "RIM KeyInfo has too many certificates");
    xmlChar* content = xmlNodeGetContent(node);
    std::string text(content == nullptr ? "" : reinterpret_cast<const char*>(content));
    xmlFree(content);
    std::erase_if(text, [](unsigned char c) { return std::isspace(c) != 0; });
    auto der = protocol::base64_decode(text, "X509Certificate");
    if (!der) return fail(Check::malformed, "RIM KeyInfo certificate is not base64");
    auto cert = x509::parse_der_cert(*der, "RIM KeyInfo certificate");
    if (!cert) return std::unexpected(cert.error());
    certs.push_back(std::move(*cert));
  }
  if (certs.empty()) return fail(Check::malformed, "RIM KeyInfo has no X509Certificate");
  return certs;
}

// Only what NVIDIA's RIMs use: C14N 1.1, ECDSA-SHA384, one enveloped Reference URI="" with SHA-384.
bool restrict_algorithms(xmlSecDSigCtx* ctx) {
  ctx->enabledReferenceUris = xmlSecTransformUriTypeEmpty;
  return xmlSecDSigCtxEnableSignatureTransform(ctx, xmlSecTransformInclC14N11Id) >= 0 &&
         xmlSecDSigCtxEnableSignatureTransform(ctx, xmlSecTransformEcdsaSha384Id) >= 0 &&
         xmlSecDSigCtxEnableReferenceTransform(ctx, xmlSecTransformEnvelopedId) >= 0 &&
         xmlSecDSigCtxEnableReferenceTransform(ctx, xmlSecTransformInclC14N11Id) >= 0 &&
         xmlSecDSigCtxEnableReferenceTransform(ctx, xmlSecTransformSha384Id) >= 0;
}

Outcome<void> verify_dsig(xmlNode* signature, X509* signer) {
  if (!xmlsec_ready()) return fail(Check::signature, "the XML signature library did not initialize");
  const std::unique_ptr<xmlSecDSigCtx, DsigCtxFree> ctx(xmlSecDSigCtxCreate(nullptr));
  if (!ctx || !restrict_algorithms(ctx.get())) return fail(Check::signature, "the XML signature context failed");
  EVP_PKEY* key = X509_get_pubkey(signer);
  xmlSecKeyDataPtr data = key == nullptr ? nullptr : xmlSecOpenSSLEvpKeyAdopt(key);
  if (data == nullptr) {
    EVP_PKEY_free(key);
    return fail(Check::cert_chain, "RIM signer " + x509::subject_cn(signer) + " has no usable key");
  }
  ctx->signKey = xmlSecKeyCreate();
  if (ctx->signKey == nullptr || xmlSecKeySetValue(ctx->signKey, data) < 0) {
    xmlSecKeyDataDestroy(data);
    return fail(Check::signature, "the XML signature key failed");
  }
  const bool verified = xmlSecDSigCtxVerify(ctx.get(), signature) >= 0 && ctx->status == xmlSecDSigStatusSucceeded &&
                        xmlSecPtrListGetSize(&ctx->signedInfoReferences) == 1;
  ERR_clear_error();
  if (!verified)
    return fail(Check::signature, "the RIM's XML signature does not verify with " + x509::subject_cn(signer));
  return {};
}

Outcome<void> verify_rim_signature(xmlDoc* doc, const TrustAnchors& anchors, std::int64_t at) {
  auto signature = signature_node(xmlDocGetRootElement(doc));
  if (!signature) return std::unexpected(signature.error());
  auto certs = signature_certificates(*signature);
  if (!certs) return std::unexpected(certs.error());
  auto roots = x509::parse_anchors(anchors);
  if (!roots) return std::unexpected(roots.error());
  auto chain = x509::verify_chain({.leaf = certs->front().get(),
                                   .intermediates = std::span(*certs).subspan(1),
                                   .anchors = *roots,
                                   .at = at,
                                   .what = "RIM signer chain"});
  if (!chain) return std::unexpected(chain.error());
  return verify_dsig(*signature, certs->front().get());
}

using DocPtr = std::unique_ptr<xmlDoc, DocFree>;

Outcome<DocPtr> parse_document(std::string_view xml) {
  if (xml.size() > kMaxRimBytes)
    return fail(Check::malformed, "RIM is over " + std::to_string(kMaxRimBytes) + " bytes");
  static const bool parser_ready = (xmlInitParser(), true);  // once, before threads race to it
  (void)parser_ready;
  // No network, no entity expansion, no DTD loading; libxml2's default limits bound depth and size.
  const int options = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING;
  DocPtr doc(xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "rim.swidtag", nullptr, options));
  if (!doc) return fail(Check::malformed, "RIM is not well-formed XML");
  return doc;
}

}  // namespace

Outcome<Rim> parse_rim(std::string_view xml) {
  auto doc = parse_document(xml);
  if (!doc) return std::unexpected(doc.error());
  return parse_rim_tree(xmlDocGetRootElement(doc->get()));
}

Outcome<Rim> verify_rim(const RimVerifyInput& input) {
  auto doc = parse_document(input.xml);
  if (!doc) return std::unexpected(doc.error());
  if (auto ok = verify_rim_signature(doc->get(), input.anchors, input.at); !ok) return std::unexpected(ok.error());
  return parse_rim_tree(xmlDocGetRootElement(doc->get()));
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
