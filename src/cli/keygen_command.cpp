// rvenc keygen: verify the enclave's attestation, then print fresh encryption keys
// {"sharedSecret","cipherText","keyId"} (hex) and "notAfter" (the enclave key's, epoch seconds)
// and, with -m, "models": [MODEL] for ClientOptions::encryption_keys / the TS
// SDK. With -m MODEL the keys are for an enclave serving MODEL (the gateway chooses among its
// replicas by load).
#include <iostream>

#include "client_flags.hpp"
#include "rvenc/client/client.hpp"

namespace rvenc::cli {
namespace {

void setup(CLI::App& app, std::function<int()>& run) {
  auto* cmd = app.add_subcommand("keygen", "Verify the enclave attestation and print new encryption keys as JSON");
  auto settings = std::make_shared<client::ClientSettings>();
  auto model = std::make_shared<std::string>();
  add_client_flags(*cmd, *settings, false);
  add_model_flag(*cmd, *model, "Keys for an enclave serving this model (default: any enclave the gateway picks)");
  cmd->callback([settings, model, &run] {
    run = [settings, model] {
      auto options = resolve_client_settings(*settings, "keygen");
      if (!options) return report_error("keygen", options.error());
      auto keys = client::generate_encryption_keys(*options, *model);
      if (!keys) return report_error("keygen", keys.error());
      std::cout << keys->to_json() << std::endl;
      return kExitOk;
    };
  });
}

const Registrar registrar{{"keygen", setup}};

}  // namespace
}  // namespace rvenc::cli
