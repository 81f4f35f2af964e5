// verify(): the one entry point the clients and `rvenc attest verify` call. It refuses a provider
// the policy does not list before any parsing, then runs that provider's verifier.
#include <algorithm>

#include "rvenc/attestation/verifier.hpp"

namespace rvenc::attestation {

Outcome<Verified> verify(Provider provider, const VerifyInput& input) {
  const auto name = provider_name(provider);
  const auto& allowed = input.policy.providers;
  if (std::find(allowed.begin(), allowed.end(), name) == allowed.end())
    return fail(Check::measurement, "provider " + std::string(name) + " is not among the policy's providers");
  auto verified = provider == Provider::tdx ? verify_tdx(input) : verify_sev_snp(input);
  if (verified && verified->provider != provider)
    return fail(Check::malformed, "the " + std::string(name) + " verifier answered for another provider");
  return verified;
}

}  // namespace rvenc::attestation
