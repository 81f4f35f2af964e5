// Hardware attestation in the client SDK: the verifier of sev-snp / tdx documents the client
// installs into protocol::AttestationPolicy (rvenc_core has no X.509 and no verifier of its own).
//
// Design: the document's evidence and collateral (carried in the document, so no network is
// needed) go through attestation::verify() at the current time, against the vendors' pinned roots
// (or trust anchors given on purpose) and the measurement policy; REPORT_DATA must equal the
// document's reportData (which verify_attestation has checked binds the key to our challenge) and
// the document's "measurement" must be the one the evidence carries, so what `rvenc attest` prints
// and `--measurement` pins is the hardware's. The answer is until when the verification holds
// (valid_until): the client uses the keys no longer than min(that, notAfter).
#pragma once

#include <optional>
#include <string>

#include "rvenc/attestation/verifier.hpp"
#include "rvenc/protocol/attestation.hpp"

namespace rvenc::client {

struct ClientOptions;

// The verifier for `policy` and `anchors` (nullopt: the vendors' pinned roots).
[[nodiscard]] protocol::HardwareVerifier hardware_verifier(attestation::Policy policy,
                                                           std::optional<attestation::TrustAnchors> anchors);

// Canonical text of what decides that verifier's answers (policy, anchors): protocol's
// hardware_trust. Empty for the defaults (default policy, the vendors' roots), so that trust
// digests of default settings stay those of earlier releases.
[[nodiscard]] std::string hardware_trust(const attestation::Policy& policy,
                                         const std::optional<attestation::TrustAnchors>& anchors);

// options.attestation gets the verifier of options.hardware_policy / options.trust_anchors (and
// its hardware_trust) unless the caller installed one. create_client does this itself.
void install_hardware_verifier(ClientOptions& options);

}  // namespace rvenc::client
