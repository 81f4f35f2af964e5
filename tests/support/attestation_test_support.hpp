// Test support for the attestation verifiers: the fixture directory (../shared/attestation, real
// vendor evidence and collateral; its README says what each set must give). The test signers
// (synthetic TDX quotes and SEV-SNP reports under test roots) sit beside this file as *_signer.hpp.
#pragma once

#include <filesystem>

// Asserts that a verifier Outcome failed at Check::`named` with a message starting "named: ".
#define EXPECT_FAILS_AT(outcome, named)                                             \
  do {                                                                              \
    const auto& o_ = (outcome);                                                     \
    ASSERT_FALSE(o_.has_value()) << "verified, expected " #named;                   \
    EXPECT_EQ(o_.error().check, ::rvenc::attestation::Check::named) << o_.error().message; \
    EXPECT_TRUE(o_.error().message.starts_with(#named ": ")) << o_.error().message; \
  } while (0)

namespace rvenc::test {

// ../shared/attestation of the source tree.
[[nodiscard]] std::filesystem::path attestation_fixtures();

}  // namespace rvenc::test
