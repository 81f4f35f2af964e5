// Attestation providers of the enclave (PROTOCOL.md section 1): each binds 64 bytes of
// reportData to a measurement of what runs. `simulated` signs with a platform key from a file
// (development and tests); `sev-snp` and `tdx` ask the CPU through Linux configfs-tsm.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rvenc/common/error.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "rvenc/enclave/collateral.hpp"
#include "rvenc/protocol/attestation.hpp"

namespace rvenc::enclave {

inline constexpr std::string_view kDefaultTsmReportRoot = "/sys/kernel/config/tsm/report";
inline constexpr std::string_view kSelfExecutable = "/proc/self/exe";

class AttestationProvider {
 public:
  virtual ~AttestationProvider() = default;
  // "simulated", "sev-snp" or "tdx": the document's "provider".
  [[nodiscard]] virtual std::string_view name() const = 0;
  // What the evidence measures (document's "measurement").
  [[nodiscard]] virtual std::span<const std::uint8_t> measurement() const = 0;
  // The evidence (report, quote or signature) binding `report_data`. May block (hardware):
  // call it off the I/O threads.
  [[nodiscard]] virtual Result<std::vector<std::uint8_t>> evidence(const protocol::ReportData& report_data) = 0;
  // The Ed25519 key that signs simulated evidence (nullopt for hardware).
  [[nodiscard]] virtual std::optional<crypto::Ed25519PublicKey> platform_public_key() const { return std::nullopt; }
  // The collateral to send with the evidence (the document's "collateral"; none for simulated).
  // May read files: call it off the I/O threads, after evidence().
  [[nodiscard]] virtual protocol::CollateralFiles collateral() { return {}; }
};

// measurement = SHA-256 of `executable`; evidence = Ed25519(platform key, reportData ‖ measurement).
class SimulatedProvider final : public AttestationProvider {
 public:
  // internal_error when the executable cannot be read.
  [[nodiscard]] static Result<std::unique_ptr<SimulatedProvider>> create(
      const crypto::Ed25519Seed& platform_seed, const std::filesystem::path& executable = kSelfExecutable);

  ~SimulatedProvider() override;  // unlocks (and wipes) the platform key
  SimulatedProvider(const SimulatedProvider&) = delete;
  SimulatedProvider& operator=(const SimulatedProvider&) = delete;

  [[nodiscard]] std::string_view name() const override { return "simulated"; }
  [[nodiscard]] std::span<const std::uint8_t> measurement() const override { return measurement_; }
  [[nodiscard]] Result<std::vector<std::uint8_t>> evidence(const protocol::ReportData& report_data) override;
  [[nodiscard]] std::optional<crypto::Ed25519PublicKey> platform_public_key() const override {
    return platform_.public_key;
  }

 private:
  SimulatedProvider(crypto::Ed25519KeyPair platform, crypto::Sha256Digest measurement);
  crypto::Ed25519KeyPair platform_;
  crypto::Sha256Digest measurement_;
};

enum class TsmKind { sev_snp, tdx };
[[nodiscard]] std::string_view tsm_kind_name(TsmKind kind) noexcept;  // "sev-snp" / "tdx"

// Linux configfs-tsm (Documentation/ABI/testing/configfs-tsm): one report entry per provider,
// mkdir'd under the root; each evidence() writes reportData to `inblob` and reads the signed
// report or quote from `outblob` (calls are serialised). The entry's `provider` file
// ("sev_guest" / "tdx_guest") says which hardware answers. The report is checked to carry our
// reportData; the measurement (SEV-SNP MEASUREMENT, TDX MRTD, 48 bytes each) is read from a
// first report taken at creation.
class ConfigfsTsmProvider final : public AttestationProvider {
 public:
  // `kind` nullopt: whatever the provider file says. attestation_failed when the tree is absent,
  // the provider is another, or the report is malformed.
  [[nodiscard]] static Result<std::unique_ptr<ConfigfsTsmProvider>> create(
      std::optional<TsmKind> kind, const std::filesystem::path& root = kDefaultTsmReportRoot,
      std::string entry_name = {});
  ~ConfigfsTsmProvider() override;  // removes the entry (best effort)

  [[nodiscard]] std::string_view name() const override { return tsm_kind_name(kind_); }
  [[nodiscard]] std::span<const std::uint8_t> measurement() const override { return measurement_; }
  [[nodiscard]] Result<std::vector<std::uint8_t>> evidence(const protocol::ReportData& report_data) override;
  // The --collateral files, then (SEV-SNP) the certificates of the last report's auxblob, which
  // replace files of the same name: they are what the platform signed this report with.
  [[nodiscard]] protocol::CollateralFiles collateral() override;
  [[nodiscard]] TsmKind kind() const noexcept { return kind_; }
  void set_collateral_dir(std::unique_ptr<CollateralDir> dir) { collateral_dir_ = std::move(dir); }

 private:
  ConfigfsTsmProvider(TsmKind kind, std::filesystem::path entry, bool created);
  Result<std::vector<std::uint8_t>> report_locked(const protocol::ReportData& report_data);
  void read_aux_certs_locked();

  TsmKind kind_;
  std::filesystem::path entry_;
  bool created_entry_;
  std::vector<std::uint8_t> measurement_;
  std::mutex mutex_;
  std::unique_ptr<CollateralDir> collateral_dir_;
  protocol::CollateralFiles aux_certs_;  // of the last report; guarded by mutex_
};

// Where REPORT_DATA and the measurement sit in a SEV-SNP attestation report / TDX quote (v4, or
// v5 when `report` says so; empty `report`: v4).
struct ReportLayout {
  std::size_t min_size;
  std::size_t report_data_offset;
  std::size_t measurement_offset;
  std::size_t measurement_size;
};
[[nodiscard]] ReportLayout report_layout(TsmKind kind, std::span<const std::uint8_t> report = {}) noexcept;

struct AttestationConfig {
  std::string mode = "auto";  // simulated | sev-snp | tdx | auto
  std::filesystem::path platform_key_file = "platform.key";  // simulated only
  std::filesystem::path tsm_root = std::string(kDefaultTsmReportRoot);
  std::filesystem::path executable = std::string(kSelfExecutable);  // simulated measurement
  // --collateral DIR: collateral files sent with hardware evidence (empty: none but the auxblob's).
  std::filesystem::path collateral_dir;
};

// The provider `config.mode` asks for. "auto" picks the hardware the configfs-tsm tree offers and
// never falls back to simulated. attestation_failed when that hardware is unavailable;
// invalid_request for an unknown mode or a bad platform key file.
[[nodiscard]] Result<std::unique_ptr<AttestationProvider>> make_attestation_provider(const AttestationConfig& config);

}  // namespace rvenc::enclave
