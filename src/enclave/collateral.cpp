#include "rvenc/enclave/collateral.hpp"

#include <algorithm>
#include <array>
#include <optional>

#include <spdlog/spdlog.h>

#include "rvenc/attestation/bytes.hpp"
#include "rvenc/attestation/verifier.hpp"

namespace rvenc::enclave {

namespace fs = std::filesystem;

namespace {

constexpr std::size_t kCertEntryBytes = 24;
constexpr std::size_t kMaxCertEntries = 64;

// The GUIDs of the table as the bytes stand on the wire (the order of their text form).
constexpr std::array<std::uint8_t, 16> kVcekGuid = {0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64,
                                                    0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd};
constexpr std::array<std::uint8_t, 16> kVlekGuid = {0xa8, 0x07, 0x4b, 0xc2, 0xa2, 0x5a, 0x48, 0x3e,
                                                    0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8, 0xa1};
constexpr std::array<std::uint8_t, 16> kAskGuid = {0x4a, 0xb7, 0xb3, 0x79, 0xbb, 0xac, 0x4f, 0xe4,
                                                   0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7, 0x82};
constexpr std::array<std::uint8_t, 16> kArkGuid = {0xc0, 0xb4, 0x06, 0xa4, 0xa8, 0x03, 0x49, 0x52,
                                                   0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0, 0xae};

// The table's ASK/ARK as the PEM that ask_ark.pem holds; a certificate that does not parse is an error.
Result<std::string> certificate_pem(std::span<const std::uint8_t> der, std::string_view what) {
  auto pem = attestation::certificate_pem(der);
  if (!pem) return fail(Errc::invalid_request, "auxblob: the " + std::string(what) + " " + pem.error().message);
  return std::move(*pem);
}

std::vector<std::uint8_t> as_bytes(const std::string& text) { return {text.begin(), text.end()}; }

}  // namespace

Result<protocol::CollateralFiles> parse_snp_cert_table(std::span<const std::uint8_t> blob) {
  protocol::CollateralFiles files;
  std::optional<std::string> ask;
  std::optional<std::string> ark;
  for (std::size_t i = 0;; ++i) {
    const std::size_t at = i * kCertEntryBytes;
    if (i > kMaxCertEntries || at + kCertEntryBytes > blob.size())
      return fail(Errc::invalid_request, "auxblob: the SEV-SNP certificate table has no terminating entry");
    const auto* entry = blob.data() + at;
    if (std::all_of(entry, entry + kCertEntryBytes, [](std::uint8_t b) { return b == 0; })) break;
    const std::uint64_t offset = attestation::load_le<std::uint32_t>(blob, at + 16);
    const std::uint64_t length = attestation::load_le<std::uint32_t>(blob, at + 20);
    if (length == 0 || offset + length > blob.size())
      return fail(Errc::invalid_request, "auxblob: a certificate lies outside the table");
    const auto cert = blob.subspan(offset, length);
    const std::span<const std::uint8_t> guid(entry, 16);
    if (std::equal(guid.begin(), guid.end(), kVcekGuid.begin())) files["vcek.der"].assign(cert.begin(), cert.end());
    else if (std::equal(guid.begin(), guid.end(), kVlekGuid.begin())) files["vlek.der"].assign(cert.begin(), cert.end());
    const bool is_ask = std::equal(guid.begin(), guid.end(), kAskGuid.begin());
    if (is_ask || std::equal(guid.begin(), guid.end(), kArkGuid.begin())) {
      auto pem = certificate_pem(cert, is_ask ? "ASK" : "ARK");
      if (!pem) return std::unexpected(pem.error());
      (is_ask ? ask : ark) = std::move(*pem);
    }
  }
  if (ask || ark) files["ask_ark.pem"] = as_bytes(ask.value_or("") + ark.value_or(""));
  return files;
}

Result<std::unique_ptr<CollateralDir>> CollateralDir::open(const fs::path& dir) {
  std::unique_ptr<CollateralDir> collateral(new CollateralDir(dir));
  auto stamp = collateral->stamp();
  if (!stamp) return std::unexpected(stamp.error());
  auto files = collateral->read();
  if (!files) return std::unexpected(files.error());
  collateral->stamp_ = std::move(*stamp);
  collateral->files_ = std::move(*files);
  return collateral;
}

Result<CollateralDir::Stamp> CollateralDir::stamp() const {
  std::error_code ec;
  Stamp stamp;
  for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    const auto size = it->file_size(ec);
    const auto mtime = it->last_write_time(ec);
    if (ec) break;
    stamp.emplace_back(it->path().filename().string(), size,
                       static_cast<std::int64_t>(mtime.time_since_epoch().count()));
    if (stamp.size() > protocol::kMaxCollateralFiles) break;  // read() names the bound
  }
  if (ec) return fail(Errc::invalid_request, "--collateral: cannot read " + dir_.string() + ": " + ec.message());
  std::sort(stamp.begin(), stamp.end());
  return stamp;
}

Result<protocol::CollateralFiles> CollateralDir::read() const {
  auto loaded = attestation::Collateral::load_dir(dir_);
  if (!loaded) return fail(Errc::invalid_request, "--collateral: " + loaded.error().message);
  protocol::CollateralFiles files(loaded->files.begin(), loaded->files.end());
  if (auto ok = protocol::check_collateral(files); !ok)
    return fail(Errc::invalid_request, "--collateral " + dir_.string() + ": " + ok.error().message);
  return files;
}

protocol::CollateralFiles CollateralDir::files() {
  std::lock_guard lock(mutex_);
  auto now = stamp();
  if (now && *now != stamp_) {
    if (auto files = read(); files) {
      files_ = std::move(*files);
      stamp_ = std::move(*now);
      spdlog::info("collateral: re-read {} ({} files)", dir_.string(), files_.size());
    } else {
      stamp_ = std::move(*now);  // warned once; read again when the directory changes again
      spdlog::warn("collateral: keeping the previous files: {}", files.error().message);
    }
  } else if (!now) {
    spdlog::warn("collateral: keeping the previous files: {}", now.error().message);
  }
  return files_;
}

}  // namespace rvenc::enclave
