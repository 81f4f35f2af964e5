// rvenc keygen: verify the enclave's attestation, then print fresh encryption keys
// {"sharedSecret","cipherText","keyId"} (hex) and "notAfter" (the enclave key's, epoch seconds)
// for ClientOptions::encryption_keys / the TS SDK.
#include <iostream>

#include "client_flags.hpp"
#include "rvenc/client/client.hpp"

namespace rvenc::cli {
namespace {

void setup(CLI::App& app, std::function<int()>& run) {
  auto* cmd = app.add_subcommand("keygen", "Verify the enclave attestation and print new encryption keys as JSON");
  auto settings = std::make_shared<client::ClientSettings>();
  add_client_flags(*cmd, *settings, false);
  cmd->callback([settings, &run] {
    run = [settings] {
      auto options = resolve_client_settings(*settings, "keygen");
      if (!options) return report_error("keygen", options.error());
      auto keys = client::generate_encryption_keys(*options);
      if (!keys) return report_error("keygen", keys.error());
      std::cout << keys->to_json() << std::endl;
      return kExitOk;
    };
  });
}

const Registrar registrar{{"keygen", setup}};

}  // namespace
}  // namespace rvenc::cli
