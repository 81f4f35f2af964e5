#include "rvenc/client/hardware.hpp"

#include <algorithm>

#include "rvenc/client/client.hpp"
#include "rvenc/common/clock.hpp"

namespace rvenc::client {
namespace {

namespace att = attestation;

Result<std::int64_t> verify_document(const protocol::AttestationDocument& doc, const att::Policy& policy,
                                     const att::TrustAnchors& anchors, att::Provider provider) {
  att::Collateral collateral;
  for (const auto& [name, bytes] : doc.collateral) collateral.files.emplace(name, bytes);
  std::array<std::uint8_t, protocol::kReportDataBytes> expected{};
  std::copy(doc.report_data.begin(), doc.report_data.end(), expected.begin());
  auto verified = att::verify(provider, att::VerifyInput{doc.evidence, collateral, anchors, policy, unix_now(), expected});
  if (!verified) return fail(Errc::attestation_failed, doc.provider + " evidence: " + verified.error().message);
  if (!crypto::constant_time_equal(verified->measurement, doc.measurement))
    return fail(Errc::attestation_failed, doc.provider +
                                              " evidence: measurement: the document's \"measurement\" is not the one "
                                              "its evidence carries");
  return verified->valid_until;
}

}  // namespace

protocol::HardwareVerifier hardware_verifier(att::Policy policy, std::optional<att::TrustAnchors> anchors) {
  const att::TrustAnchors tdx_roots = anchors ? *anchors : att::pinned_roots(att::Provider::tdx);
  const att::TrustAnchors snp_roots = anchors ? *anchors : att::pinned_roots(att::Provider::sev_snp);
  return [policy = std::move(policy), tdx_roots, snp_roots](const protocol::AttestationDocument& doc) {
    const auto provider = att::provider_from_name(doc.provider);
    if (!provider) return Result<std::int64_t>(fail(Errc::attestation_failed, "no verifier for this provider"));
    return verify_document(doc, policy, *provider == att::Provider::tdx ? tdx_roots : snp_roots, *provider);
  };
}

std::string hardware_trust(const att::Policy& policy, const std::optional<att::TrustAnchors>& anchors) {
  const std::string canonical = att::serialize_policy(policy);
  if (!anchors && canonical == att::serialize_policy(att::Policy{})) return {};
  std::string text = "policy " + canonical + "\nroots ";
  if (!anchors) return text + "pinned";
  for (const auto& pem : anchors->pem_roots) text += pem;
  return text;
}

void install_hardware_verifier(ClientOptions& options) {
  if (options.attestation.hardware_verifier) return;
  options.attestation.hardware_verifier = hardware_verifier(options.hardware_policy, options.trust_anchors);
  options.attestation.hardware_trust = hardware_trust(options.hardware_policy, options.trust_anchors);
}

}  // namespace rvenc::client
