// Collateral the enclave sends with hardware evidence (the attestation document's "collateral",
// docs/attestation.md): the files of `rvenc enclave --collateral DIR` (fetched by the host from
// Intel's PCS / AMD's KDS) and, for SEV-SNP, the certificates configfs-tsm's `auxblob` carries.
//
// Design: the enclave never trusts or checks collateral (the client verifies it up to the vendor's
// root); it only forwards it, bounded as the document allows (protocol::check_collateral), so a
// client needs no network. The directory is re-read when a file in it changes (names, sizes,
// modification times), so the host can refresh CRLs and TCB Info without a restart; a re-read
// that fails (a file half-written, over the bounds) keeps the last good set and logs why.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "rvenc/common/error.hpp"
#include "rvenc/protocol/attestation.hpp"

namespace rvenc::enclave {

class CollateralDir {
 public:
  // invalid_request naming the directory or file when it cannot be read or breaks the bounds.
  [[nodiscard]] static Result<std::unique_ptr<CollateralDir>> open(const std::filesystem::path& dir);

  // The current files (re-read first when the directory changed).
  [[nodiscard]] protocol::CollateralFiles files();
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return dir_; }

 private:
  using Stamp = std::vector<std::tuple<std::string, std::uintmax_t, std::int64_t>>;  // name, size, mtime
  explicit CollateralDir(std::filesystem::path dir) : dir_(std::move(dir)) {}
  [[nodiscard]] Result<Stamp> stamp() const;
  [[nodiscard]] Result<protocol::CollateralFiles> read() const;

  std::filesystem::path dir_;
  std::mutex mutex_;
  Stamp stamp_;
  protocol::CollateralFiles files_;
};

// SEV-SNP certificate table of configfs-tsm's auxblob (the GHCB extended-report format: entries of
// a 16-byte GUID, little-endian 32-bit offset and length from the table's start, ended by an
// all-zero entry) as collateral files: VCEK → "vcek.der", VLEK → "vlek.der", ASK (or ASVK) then
// ARK → "ask_ark.pem". Other GUIDs are skipped. invalid_request when the table is malformed
// (an entry outside the blob, no terminator, too many entries).
[[nodiscard]] Result<protocol::CollateralFiles> parse_snp_cert_table(std::span<const std::uint8_t> blob);

}  // namespace rvenc::enclave
