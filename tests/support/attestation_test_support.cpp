// Test support for the attestation verifiers: where the real vendor fixtures are.
#include "support/attestation_test_support.hpp"

namespace rvenc::test {

std::filesystem::path attestation_fixtures() { return RVENC_ATTESTATION_FIXTURES_DIR; }

}  // namespace rvenc::test
