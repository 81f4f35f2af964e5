// Test support for the attestation verifiers: the fixture directory (../shared/attestation, real
// vendor evidence and collateral; its README says what each set must give). The test signers
// (synthetic TDX quotes and SEV-SNP reports under test roots) sit beside this file as *_signer.hpp.
#pragma once

#include <filesystem>

namespace rvenc::test {

// ../shared/attestation of the source tree.
[[nodiscard]] std::filesystem::path attestation_fixtures();

}  // namespace rvenc::test
