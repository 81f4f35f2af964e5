// rvenc attest: fetch the enclave's attestation through the gateway with a fresh challenge,
// verify it against the policy, and print what was verified (with -m MODEL: of an enclave serving
// MODEL).
#include <ctime>
#include <iostream>

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include "attest_verify.hpp"
#include "client_flags.hpp"
#include "rvenc/client/client.hpp"
#include "rvenc/common/hex.hpp"

namespace rvenc::cli {
namespace {

std::string utc_time(std::int64_t seconds) {
  const std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

int attest(const client::ClientSettings& settings, const std::string& model, bool as_json) {
  auto options = resolve_client_settings(settings, "attest");
  if (!options) return report_error("attest", options.error());
  auto document = client::attest(*options, model);
  if (!document) return report_error("attest", document.error());

  const std::string measurement = to_hex(document->measurement);
  const std::string key_id = to_hex(document->key_id);
  if (as_json) {
    std::cout << boost::json::serialize(boost::json::object{{"gatewayUrl", options->base_url},
                                                            {"provider", document->provider},
                                                            {"measurement", measurement},
                                                            {"keyId", key_id},
                                                            {"notAfter", document->not_after},
                                                            {"bindingOk", true}})
              << std::endl;
    return kExitOk;
  }
  std::string trust = document->provider;
  if (document->provider == "simulated" && options->attestation.simulated_platform_key)
    trust += " (signed by platform key " + to_hex(*options->attestation.simulated_platform_key) + ")";
  const bool hardware = document->provider != "simulated";
  if (hardware)
    trust += options->trust_anchors ? " (evidence verified against the TEST root given)"
                                    : " (evidence verified offline against the vendor's pinned root)";
  const auto& policy = options->hardware_policy;
  const bool pinned = options->attestation.expected_measurement ||
                      (document->provider == "tdx" && !policy.tdx.mrtd.empty()) ||
                      (document->provider == "sev-snp" && !policy.sev_snp.measurement.empty());
  std::cout << "gateway      " << options->base_url << "\n"
            << "provider     " << trust << "\n"
            << "measurement  " << measurement
            << (pinned ? " (as required)" : " (not pinned: pass --measurement or --attestation-policy)") << "\n"
            << "keyId        " << key_id << "\n"
            << "notAfter     " << utc_time(document->not_after) << " (" << document->not_after << ")\n"
            << (document->binding == protocol::Binding::v1
                    ? "binding ok   reportData (binding 1) binds the X-Wing public key to our fresh challenge; "
                      "notAfter is not attested (an enclave of an older release)\n"
                    : "binding ok   reportData (binding 2) binds the keyId, X-Wing public key and notAfter to our "
                      "fresh challenge\n")
            << std::flush;
  return kExitOk;
}

void setup(CLI::App& app, std::function<int()>& run) {
  auto* cmd = app.add_subcommand("attest", "Verify the enclave attestation (through the gateway) and print what was verified");
  auto settings = std::make_shared<client::ClientSettings>();
  auto as_json = std::make_shared<bool>(false);
  auto model = std::make_shared<std::string>();
  add_client_flags(*cmd, *settings, false);
  add_model_flag(*cmd, *model, "Attest an enclave serving this model (default: any enclave the gateway picks)");
  flag(*cmd, "--json", *as_json, "Print the verified facts as one JSON object");
  auto* verify = add_attest_verify(*cmd, run);
  cmd->callback([settings, model, as_json, verify, &run] {
    if (verify->parsed()) return;  // `rvenc attest verify`: its own callback set `run`
    run = [settings, model, as_json] { return attest(*settings, *model, *as_json); };
  });
}

const Registrar registrar{{"attest", setup}};

}  // namespace
}  // namespace rvenc::cli
