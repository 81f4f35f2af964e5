// A real `rvenc enclave --attestation sev-snp|tdx` on a fake configfs-tsm tree (fake_tsm.hpp),
// for process tests of hardware attestation (collateral, the client verifiers, end to end).
// The provider's report entry is named after the enclave's pid, so the enclave starts behind a
// shell that waits until the fake entry exists and then becomes the enclave (exec keeps the pid).
#pragma once

#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "fake_tsm.hpp"
#include "support/test_support.hpp"

namespace rvenc::enclave::fake {

class FakeHardwareEnclave {
 public:
  // `kind` says which fake hardware answers ("sev_guest" / "tdx_guest"); `make_report` makes the
  // report for each reportData (nullptr: the fake layout report); `extra` are more enclave flags.
  FakeHardwareEnclave(const rvenc::test::TempDir& dir, TsmKind kind, FakeTsm::ReportMaker make_report,
                      const std::vector<std::string>& extra, const std::vector<std::uint8_t>& auxblob = {}) {
    const std::string root = dir.file("tsm");
    std::filesystem::create_directories(root);
    std::ofstream(dir.file("gateway.token")) << "test-gateway-token-0123456789abcdef\n";
    std::string command = "while [ ! -e '" + dir.file("tsm.ready") + "' ]; do sleep 0.05; done; exec '" +
                          rvenc::test::rvenc_binary() + "' enclave --attestation " +
                          std::string(tsm_kind_name(kind)) + " --tsm-root '" + root +
                          "' --listen 127.0.0.1:0 --gateway-token-file '" + dir.file("gateway.token") + "'";
    for (const auto& arg : extra) command += " '" + arg + "'";
    process = std::make_unique<rvenc::test::ChildProcess>(std::vector<std::string>{"/bin/sh", "-c", command});
    const std::string entry = "rvenc-" + std::to_string(process->pid());
    const std::string provider = kind == TsmKind::sev_snp ? "sev_guest" : "tdx_guest";
    tsm = make_report ? std::make_unique<FakeTsm>(root, entry, provider, std::move(make_report), auxblob)
                      : std::make_unique<FakeTsm>(root, entry, provider, kind);
    std::ofstream(dir.file("tsm.ready")) << "go\n";
    auto found = process->wait_for_url();
    if (!found) throw std::runtime_error("the enclave did not start:\n" + process->output());
    url = *found;
  }
  ~FakeHardwareEnclave() {
    process.reset();  // before the fake it reads from
    tsm.reset();
  }
  FakeHardwareEnclave(const FakeHardwareEnclave&) = delete;
  FakeHardwareEnclave& operator=(const FakeHardwareEnclave&) = delete;

  std::unique_ptr<FakeTsm> tsm;
  std::unique_ptr<rvenc::test::ChildProcess> process;
  std::string url;
  static constexpr std::string_view kGatewayToken = "test-gateway-token-0123456789abcdef";
};

}  // namespace rvenc::enclave::fake
