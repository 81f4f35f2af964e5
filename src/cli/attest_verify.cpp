#include "attest_verify.hpp"

#include <ctime>
#include <iostream>

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include "command.hpp"
#include "rvenc/attestation/verifier.hpp"
#include "rvenc/common/hex.hpp"

namespace rvenc::cli {
namespace {

namespace att = attestation;

struct VerifyFlags {
  std::string provider;
  std::string evidence;
  std::string collateral;  // empty: the directory of `evidence`
  std::string trust_root;  // empty: the vendors' pinned roots
  std::string policy;      // empty: the default policy (debug refused, any measurement)
  std::optional<std::int64_t> at;
  bool json = false;
};

int usage(std::string_view message) {
  std::cerr << "rvenc attest verify: " << message << "\n";
  return kExitUsage;
}

int refused(const att::Failure& failure) {
  std::cerr << "rvenc attest verify: " << failure.message << "\n";
  return kExitFailure;
}

void print(const att::Verified& verified, bool as_json, bool policy_given) {
  const std::string measurement = to_hex(verified.measurement);
  const std::string report_data = to_hex(verified.report_data);
  if (as_json) {
    std::cout << boost::json::serialize(boost::json::object{{"provider", att::provider_name(verified.provider)},
                                                            {"measurement", measurement},
                                                            {"tcbStatus", verified.tcb_status},
                                                            {"debug", verified.debug},
                                                            {"reportData", report_data}})
              << std::endl;
    return;
  }
  std::cout << "provider     " << att::provider_name(verified.provider) << "\n"
            << "measurement  " << measurement
            << (policy_given ? " (allowed by the policy)" : " (not pinned: list it in a --policy file)") << "\n"
            << "tcbStatus    " << verified.tcb_status << "\n"
            << "debug        " << (verified.debug ? "true" : "false") << "\n"
            << "reportData   " << report_data << "\n";
  for (const auto& [name, value] : verified.fields)
    std::cout << name << std::string(name.size() < 13 ? 13 - name.size() : 1, ' ') << value << "\n";
  std::cout << "validUntil   " << verified.valid_until << "\n" << std::flush;
}

int run_verify(const VerifyFlags& flags) {
  const auto provider = att::provider_from_name(flags.provider);
  if (!provider) return usage("--provider must be tdx or sev-snp");
  att::Policy policy;
  if (!flags.policy.empty()) {
    auto loaded = att::load_policy(flags.policy);
    if (!loaded) return usage("--policy: " + loaded.error().message);
    policy = std::move(*loaded);
  }
  att::TrustAnchors anchors = att::pinned_roots(*provider);
  if (!flags.trust_root.empty()) {
    auto loaded = att::load_trust_anchors(flags.trust_root);
    if (!loaded) return usage("--trust-root: " + loaded.error().message);
    anchors = std::move(*loaded);
    std::cerr << "rvenc attest verify: WARNING: trusting the test root(s) of " << flags.trust_root << " instead of "
              << (*provider == att::Provider::tdx ? "Intel's" : "AMD's") << " pinned root\n";
  }
  auto evidence = att::load_file(flags.evidence);
  if (!evidence) return refused(evidence.error());
  std::filesystem::path dir = flags.collateral;
  if (dir.empty()) dir = std::filesystem::path(flags.evidence).parent_path();
  if (dir.empty()) dir = ".";
  auto collateral = att::Collateral::load_dir(dir);
  if (!collateral) return refused(collateral.error());
  const std::int64_t at = flags.at ? *flags.at : static_cast<std::int64_t>(std::time(nullptr));
  auto verified = att::verify(*provider, att::VerifyInput{*evidence, *collateral, anchors, policy, at, std::nullopt});
  if (!verified) return refused(verified.error());
  print(*verified, flags.json, !flags.policy.empty());
  return kExitOk;
}

}  // namespace

CLI::App* add_attest_verify(CLI::App& attest, std::function<int()>& run) {
  auto* cmd = attest.add_subcommand(
      "verify", "Verify TDX / SEV-SNP evidence offline against the vendor's root: exit 0 and what was verified, "
                "or exit 1 naming the failed check");
  auto flags = std::make_shared<VerifyFlags>();
  option(*cmd, "--provider", flags->provider, "tdx or sev-snp")->required()->check(CLI::IsMember({"tdx", "sev-snp"}));
  option(*cmd, "--evidence", flags->evidence, "The quote (quote.dat) or attestation report (report.bin)")->required();
  option(*cmd, "--collateral", flags->collateral,
         "Directory of collateral files named as in shared/attestation/README.md (default: the evidence's directory)");
  // Flag only, no variable: another root must never come from an environment left behind.
  cmd->add_option("--trust-root", flags->trust_root,
                  "PEM root(s) to trust INSTEAD of the vendor's pinned root (test roots only; printed as a "
                  "warning; no environment variable)");
  option(*cmd, "--policy", flags->policy,
         "Policy JSON (docs/attestation.md): providers, measurements, debug, TCB (default: debug refused, any "
         "measurement, TDX TCB UpToDate)");
  // Flag only: a verification time left in the environment would accept expired collateral.
  cmd->add_option("--at", flags->at, "Verification time, Unix seconds (default: now; no environment variable)")
      ->check(CLI::NonNegativeNumber);
  flag(*cmd, "--json", flags->json, "Print {provider, measurement, tcbStatus, debug, reportData} as one JSON object");
  cmd->callback([flags, &run] { run = [flags] { return run_verify(*flags); }; });
  return cmd;
}

}  // namespace rvenc::cli
