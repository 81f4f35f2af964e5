// Reading evidence, collateral and trust-root files: bounded, and every failure names the file.
#include <fstream>

#include "rvenc/attestation/verifier.hpp"

namespace rvenc::attestation {

Outcome<Bytes> load_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return fail(Check::malformed, "cannot read " + file.string());
  Bytes bytes(kMaxCollateralFileBytes + 1);
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (in.bad()) return fail(Check::malformed, "cannot read " + file.string());
  if (static_cast<std::size_t>(in.gcount()) > kMaxCollateralFileBytes)
    return fail(Check::malformed,
                file.filename().string() + " is over " + std::to_string(kMaxCollateralFileBytes) + " bytes");
  bytes.resize(static_cast<std::size_t>(in.gcount()));
  return bytes;
}

Outcome<TrustAnchors> parse_trust_anchors(std::string_view pem) {
  constexpr std::string_view kBegin = "-----BEGIN CERTIFICATE-----";
  constexpr std::string_view kEnd = "-----END CERTIFICATE-----";
  TrustAnchors anchors;
  for (auto begin = pem.find(kBegin); begin != std::string_view::npos; begin = pem.find(kBegin, begin)) {
    const auto end = pem.find(kEnd, begin);
    if (end == std::string_view::npos) return fail(Check::malformed, "trust root: a PEM certificate has no END line");
    if (anchors.pem_roots.size() == kMaxTrustRoots)
      return fail(Check::malformed, "trust root: more than " + std::to_string(kMaxTrustRoots) + " certificates");
    anchors.pem_roots.emplace_back(pem.substr(begin, end + kEnd.size() - begin));
    anchors.pem_roots.back() += '\n';
    begin = end + kEnd.size();
  }
  if (anchors.pem_roots.empty()) return fail(Check::malformed, "trust root: no PEM certificate found");
  return anchors;
}

Outcome<TrustAnchors> load_trust_anchors(const std::filesystem::path& file) {
  auto bytes = load_file(file);
  if (!bytes) return std::unexpected(bytes.error());
  auto anchors = parse_trust_anchors(std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()));
  if (!anchors) anchors.error().message += " (" + file.string() + ")";
  return anchors;
}

}  // namespace rvenc::attestation
