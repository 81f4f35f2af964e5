// Test support for the attestation verifiers: the fixture directory (../shared/attestation, real
// vendor evidence and collateral; its README says what each set must give). The test signers
// (synthetic TDX quotes and SEV-SNP reports under test roots) sit beside this file as *_signer.hpp;
// expect_failed_at is the check every verifier test makes of a Failure.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <string_view>

#include "rvenc/attestation/verifier.hpp"

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

// `outcome` failed at `check`, its message starting with "<check name>: " and containing `words`.
template <class T>
void expect_failed_at(const attestation::Outcome<T>& outcome, attestation::Check check, std::string_view words = {}) {
  ASSERT_FALSE(outcome.has_value()) << "expected " << attestation::check_name(check);
  EXPECT_EQ(outcome.error().check, check) << outcome.error().message;
  EXPECT_TRUE(outcome.error().message.starts_with(std::string(attestation::check_name(check)) + ": "))
      << outcome.error().message;
  EXPECT_NE(outcome.error().message.find(words), std::string::npos) << outcome.error().message;
}

}  // namespace rvenc::test
