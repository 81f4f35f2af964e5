#include "rvenc/enclave/attestation.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include <sodium.h>
#include <spdlog/spdlog.h>

#include "rvenc/common/hex.hpp"
#include "rvenc/enclave/key.hpp"

namespace rvenc::enclave {

namespace fs = std::filesystem;

namespace {

// Hardware reports are a few KiB (SEV-SNP 1184 bytes, TDX quotes ~5-8 KiB with certificates).
constexpr std::size_t kMaxReportBytes = 1024 * 1024;
constexpr std::size_t kReadChunk = 64 * 1024;

Result<std::vector<std::uint8_t>> read_whole_file(const fs::path& path, std::size_t limit) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(Errc::attestation_failed, "cannot open " + path.string() + ": " + std::strerror(errno));
  std::vector<std::uint8_t> out;
  std::array<std::uint8_t, 4096> buffer{};
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string reason = std::strerror(errno);
      ::close(fd);
      return fail(Errc::attestation_failed, "cannot read " + path.string() + ": " + reason);
    }
    if (n == 0) break;
    out.insert(out.end(), buffer.begin(), buffer.begin() + n);
    if (out.size() > limit) {
      ::close(fd);
      return fail(Errc::attestation_failed, path.string() + " is larger than expected");
    }
  }
  ::close(fd);
  return out;
}

Status write_whole_file(const fs::path& path, std::span<const std::uint8_t> bytes) {
  // configfs binary attributes take the value when the file is closed; no O_TRUNC (configfs
  // attributes do not support truncation).
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return fail(Errc::attestation_failed, "cannot open " + path.string() + ": " + std::strerror(errno));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string reason = std::strerror(errno);
      ::close(fd);
      return fail(Errc::attestation_failed, "cannot write " + path.string() + ": " + reason);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0)
    return fail(Errc::attestation_failed, "cannot write " + path.string() + ": " + std::strerror(errno));
  return {};
}

Result<crypto::Sha256Digest> hash_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(Errc::internal_error, "cannot read " + path.string() + " to measure it");
  // Streamed: the executable can be tens of MiB.
  crypto_hash_sha256_state state;
  crypto_hash_sha256_init(&state);
  std::vector<char> buffer(kReadChunk);
  while (in.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) || in.gcount() > 0)
    crypto_hash_sha256_update(&state, reinterpret_cast<const unsigned char*>(buffer.data()),
                              static_cast<unsigned long long>(in.gcount()));
  if (in.bad()) return fail(Errc::internal_error, "cannot read " + path.string() + " to measure it");
  crypto::Sha256Digest digest{};
  crypto_hash_sha256_final(&state, digest.data());
  return digest;
}

std::optional<TsmKind> kind_from_provider_file(std::string text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  if (text == "sev_guest") return TsmKind::sev_snp;
  if (text == "tdx_guest") return TsmKind::tdx;
  return std::nullopt;
}

}  // namespace

// --- simulated ---------------------------------------------------------------------------------

SimulatedProvider::SimulatedProvider(crypto::Ed25519KeyPair platform, crypto::Sha256Digest measurement)
    : platform_(std::move(platform)), measurement_(measurement) {
  lock_memory(platform_.secret_key.data(), platform_.secret_key.size());
}

SimulatedProvider::~SimulatedProvider() { unlock_memory(platform_.secret_key.data(), platform_.secret_key.size()); }

Result<std::unique_ptr<SimulatedProvider>> SimulatedProvider::create(const crypto::Ed25519Seed& platform_seed,
                                                                     const fs::path& executable) {
  auto measurement = hash_file(executable);
  if (!measurement) return std::unexpected(measurement.error());
  return std::unique_ptr<SimulatedProvider>(
      new SimulatedProvider(crypto::ed25519_keypair_from_seed(platform_seed), *measurement));
}

Result<std::vector<std::uint8_t>> SimulatedProvider::evidence(const protocol::ReportData& report_data) {
  std::vector<std::uint8_t> message(report_data.begin(), report_data.end());
  message.insert(message.end(), measurement_.begin(), measurement_.end());
  const auto signature = crypto::ed25519_sign(platform_, message);
  return std::vector<std::uint8_t>(signature.begin(), signature.end());
}

// --- configfs-tsm --------------------------------------------------------------------------

std::string_view tsm_kind_name(TsmKind kind) noexcept { return kind == TsmKind::sev_snp ? "sev-snp" : "tdx"; }

ReportLayout report_layout(TsmKind kind, std::span<const std::uint8_t> report) noexcept {
  // SEV-SNP ABI spec, ATTESTATION_REPORT (0x4A0 bytes): REPORT_DATA at 0x50, MEASUREMENT at 0x90.
  if (kind == TsmKind::sev_snp) return {0x4A0, 0x50, 0x90, 48};
  // TDX DCAP quote: a 48-byte header; version 4 has the TD report body right after it, version 5
  // a 6-byte body descriptor (type u16, size u32) first. MRTD at body+136, REPORTDATA at body+520
  // in both TD report 1.0 (584 bytes) and 1.5 (648 bytes, the same fields first).
  constexpr std::size_t kHeader = 48;
  constexpr std::size_t kV5Descriptor = 6;
  const bool v5 = report.size() >= 2 && report[0] == 5 && report[1] == 0;  // version, little-endian u16
  const std::size_t body = kHeader + (v5 ? kV5Descriptor : 0);
  return {body + 584, body + 520, body + 136, 48};
}

ConfigfsTsmProvider::ConfigfsTsmProvider(TsmKind kind, fs::path entry, bool created)
    : kind_(kind), entry_(std::move(entry)), created_entry_(created) {}

ConfigfsTsmProvider::~ConfigfsTsmProvider() {
  // configfs removes the attributes with the directory; on a plain directory this fails harmlessly.
  if (created_entry_) ::rmdir(entry_.c_str());
}

Result<std::unique_ptr<ConfigfsTsmProvider>> ConfigfsTsmProvider::create(std::optional<TsmKind> kind,
                                                                         const fs::path& root,
                                                                         std::string entry_name) {
  std::error_code ec;
  if (!fs::is_directory(root, ec))
    return fail(Errc::attestation_failed,
                "no confidential-computing hardware: " + root.string() +
                    " (Linux configfs-tsm) does not exist; use --attestation simulated for development");
  if (entry_name.empty()) entry_name = "rvenc-" + std::to_string(::getpid());
  const fs::path entry = root / entry_name;
  bool created = false;
  if (::mkdir(entry.c_str(), 0700) == 0) {
    created = true;
  } else if (errno != EEXIST) {
    return fail(Errc::attestation_failed, "cannot create the report entry " + entry.string() + ": " +
                                              std::strerror(errno) + " (run as root?)");
  }
  std::unique_ptr<ConfigfsTsmProvider> provider(new ConfigfsTsmProvider(TsmKind::sev_snp, entry, created));

  auto provider_text = read_whole_file(entry / "provider", 256);
  if (!provider_text) return std::unexpected(provider_text.error());
  const auto found = kind_from_provider_file(std::string(crypto::as_chars(*provider_text)));
  if (!found) return fail(Errc::attestation_failed, "configfs-tsm offers an unsupported provider");
  if (kind && *kind != *found)
    return fail(Errc::attestation_failed, std::string("--attestation ") + std::string(tsm_kind_name(*kind)) +
                                              " was asked for, but this machine offers " +
                                              std::string(tsm_kind_name(*found)));
  provider->kind_ = *found;

  // A first report, bound to nothing, tells the measurement.
  const protocol::ReportData zero{};
  auto report = provider->evidence(zero);
  if (!report) return std::unexpected(report.error());
  const auto layout = report_layout(provider->kind_, *report);
  provider->measurement_.assign(report->begin() + static_cast<std::ptrdiff_t>(layout.measurement_offset),
                                report->begin() + static_cast<std::ptrdiff_t>(layout.measurement_offset +
                                                                              layout.measurement_size));
  return provider;
}

Result<std::vector<std::uint8_t>> ConfigfsTsmProvider::evidence(const protocol::ReportData& report_data) {
  std::lock_guard lock(mutex_);
  return report_locked(report_data);
}

Result<std::vector<std::uint8_t>> ConfigfsTsmProvider::report_locked(const protocol::ReportData& report_data) {
  if (auto ok = write_whole_file(entry_ / "inblob", report_data); !ok) return std::unexpected(ok.error());
  auto report = read_whole_file(entry_ / "outblob", kMaxReportBytes);
  if (!report) return report;
  const auto layout = report_layout(kind_, *report);
  if (report->size() < layout.min_size)
    return fail(Errc::attestation_failed, std::string(tsm_kind_name(kind_)) + " report is too short (" +
                                              std::to_string(report->size()) + " bytes)");
  // The report must carry what we asked to bind; anything else means a confused or shared entry.
  const auto* at = report->data() + layout.report_data_offset;
  if (!std::equal(report_data.begin(), report_data.end(), at))
    return fail(Errc::attestation_failed,
                std::string(tsm_kind_name(kind_)) + " report does not carry the requested reportData");
  if (kind_ == TsmKind::sev_snp) read_aux_certs_locked();
  return report;
}

void ConfigfsTsmProvider::read_aux_certs_locked() {
  aux_certs_.clear();
  std::error_code ec;
  if (!fs::exists(entry_ / "auxblob", ec)) return;
  auto blob = read_whole_file(entry_ / "auxblob", protocol::kMaxCollateralBytes);
  if (!blob || blob->empty()) return;  // no certificates from the host: --collateral only
  auto certs = parse_snp_cert_table(*blob);
  if (!certs) {
    spdlog::warn("sev-snp: ignoring the auxblob: {}", certs.error().message);
    return;
  }
  aux_certs_ = std::move(*certs);
}

protocol::CollateralFiles ConfigfsTsmProvider::collateral() {
  const protocol::CollateralFiles from_dir = collateral_dir_ ? collateral_dir_->files() : protocol::CollateralFiles{};
  protocol::CollateralFiles files = from_dir;
  std::lock_guard lock(mutex_);
  for (const auto& [name, bytes] : aux_certs_) files.insert_or_assign(name, bytes);
  if (auto ok = protocol::check_collateral(files); !ok) {
    spdlog::warn("sev-snp: leaving out the auxblob's certificates: {}", ok.error().message);
    return from_dir;
  }
  return files;
}

// --- selection --------------------------------------------------------------------------------

Result<std::unique_ptr<AttestationProvider>> make_attestation_provider(const AttestationConfig& config) {
  if (config.mode == "simulated" && !config.collateral_dir.empty())
    return fail(Errc::invalid_request, "--collateral is for hardware attestation (sev-snp, tdx), not simulated");
  if (config.mode == "simulated") {
    auto seed = load_or_create_seed_file(config.platform_key_file, "platform key file");
    if (!seed) return std::unexpected(seed.error());
    if (seed->created) spdlog::info("created a new platform key in {}", config.platform_key_file.string());
    auto provider = SimulatedProvider::create(seed->seed, config.executable);
    if (!provider) return std::unexpected(provider.error());
    return std::unique_ptr<AttestationProvider>(std::move(*provider));
  }
  std::optional<TsmKind> kind;
  if (config.mode == "sev-snp") {
    kind = TsmKind::sev_snp;
  } else if (config.mode == "tdx") {
    kind = TsmKind::tdx;
  } else if (config.mode != "auto") {
    return fail(Errc::invalid_request,
                "unknown attestation provider '" + config.mode + "' (use simulated, sev-snp, tdx or auto)");
  }
  auto provider = ConfigfsTsmProvider::create(kind, config.tsm_root);
  if (!provider) return std::unexpected(provider.error());
  if (!config.collateral_dir.empty()) {
    auto dir = CollateralDir::open(config.collateral_dir);
    if (!dir) return std::unexpected(dir.error());
    (*provider)->set_collateral_dir(std::move(*dir));
  }
  return std::unique_ptr<AttestationProvider>(std::move(*provider));
}

}  // namespace rvenc::enclave
