// The shared pieces of the attestation verifiers: check names, failures, providers, collateral.
#include "rvenc/attestation/verifier.hpp"

#include <fstream>
#include <iterator>
#include <system_error>

namespace rvenc::attestation {

std::string_view check_name(Check check) noexcept {
  switch (check) {
    case Check::signature: return "signature";
    case Check::cert_chain: return "cert_chain";
    case Check::crl: return "crl";
    case Check::expired: return "expired";
    case Check::tcb_status: return "tcb_status";
    case Check::qe_identity: return "qe_identity";
    case Check::debug: return "debug";
    case Check::measurement: return "measurement";
    case Check::report_data: return "report_data";
    case Check::malformed: return "malformed";
  }
  return "malformed";
}

std::unexpected<Failure> fail(Check check, std::string_view detail) {
  std::string message(check_name(check));
  message += ": ";
  message += detail;
  return std::unexpected<Failure>(Failure{check, std::move(message)});
}

std::string_view provider_name(Provider provider) noexcept {
  return provider == Provider::tdx ? "tdx" : "sev-snp";
}

std::optional<Provider> provider_from_name(std::string_view name) noexcept {
  if (name == "tdx") return Provider::tdx;
  if (name == "sev-snp") return Provider::sev_snp;
  return std::nullopt;
}

const Bytes* Collateral::find(std::string_view name) const {
  const auto it = files.find(name);
  return it == files.end() ? nullptr : &it->second;
}

Outcome<Collateral> Collateral::load_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) return fail(Check::malformed, "cannot read the collateral directory " + dir.string() + ": " + ec.message());
  Collateral collateral;
  for (const auto& entry : it) {
    if (!entry.is_regular_file(ec)) continue;
    const auto size = entry.file_size(ec);
    if (ec || size > kMaxCollateralFileBytes) {
      return fail(Check::malformed, "collateral file " + entry.path().filename().string() + " is over " +
                                        std::to_string(kMaxCollateralFileBytes) + " bytes");
    }
    if (collateral.files.size() == kMaxCollateralFiles) {
      return fail(Check::malformed, "more than " + std::to_string(kMaxCollateralFiles) + " files in " + dir.string());
    }
    auto bytes = load_file(entry.path());
    if (!bytes) return std::unexpected(bytes.error());
    collateral.files.emplace(entry.path().filename().string(), std::move(*bytes));
  }
  return collateral;
}

}  // namespace rvenc::attestation
