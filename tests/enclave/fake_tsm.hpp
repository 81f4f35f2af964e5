// A fake Linux configfs-tsm report entry for tests of the hardware attestation providers, in
// process (ConfigfsTsmProvider) or behind a real `rvenc enclave --attestation sev-snp --tsm-root`.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "rvenc/common/hex.hpp"
#include "rvenc/enclave/attestation.hpp"

namespace rvenc::enclave::fake {

namespace fs = std::filesystem;

// A SEV-SNP certificate table as configfs-tsm's auxblob carries it (GHCB extended report):
// entries of the GUID's 16 bytes in the order of its text ("63da758d-e664-…"), little-endian
// 32-bit offset and length from the table's start, an all-zero entry, then the certificates.
inline std::vector<std::uint8_t> snp_cert_table(
    const std::vector<std::pair<std::string_view, std::vector<std::uint8_t>>>& certs) {
  std::vector<std::uint8_t> table((certs.size() + 1) * 24, 0);
  std::size_t offset = table.size();
  for (std::size_t i = 0; i < certs.size(); ++i) {
    std::string hex(certs[i].first);
    std::erase(hex, '-');
    const auto guid = from_hex(hex, "guid").value();
    std::copy(guid.begin(), guid.end(), table.begin() + static_cast<std::ptrdiff_t>(i * 24));
    for (std::size_t b = 0; b < 4; ++b) {
      table[i * 24 + 16 + b] = static_cast<std::uint8_t>(offset >> (8 * b));
      table[i * 24 + 20 + b] = static_cast<std::uint8_t>(certs[i].second.size() >> (8 * b));
    }
    offset += certs[i].second.size();
  }
  for (const auto& [guid, cert] : certs) table.insert(table.end(), cert.begin(), cert.end());
  return table;
}

// A fake configfs-tsm report entry: `outblob` is a FIFO served by a thread that, like the kernel,
// produces a report carrying the reportData last written to `inblob` when outblob is read, after
// an optional delay per report (a slow platform). With a ReportMaker the report is whatever it
// makes for that reportData (a quote / report signed by the test signers), and `auxblob` (SEV-SNP
// certificate table) may be given.
class FakeTsm {
 public:
  using ReportMaker = std::function<std::vector<std::uint8_t>(const protocol::ReportData&)>;

  FakeTsm(const fs::path& root, const std::string& entry, std::string provider, ReportMaker make_report,
          const std::vector<std::uint8_t>& auxblob = {})
      : entry_(root / entry), layout_{}, make_report_(std::move(make_report)) {
    fs::create_directories(entry_);
    std::ofstream(entry_ / "provider") << provider << "\n";
    if (!auxblob.empty())
      std::ofstream(entry_ / "auxblob", std::ios::binary)
          .write(reinterpret_cast<const char*>(auxblob.data()), static_cast<std::streamsize>(auxblob.size()));
    if (::mkfifo((entry_ / "outblob").c_str(), 0600) != 0) throw std::runtime_error("mkfifo failed");
    thread_ = std::thread([this] { serve(); });
  }
  FakeTsm(const fs::path& root, const std::string& entry, std::string provider, TsmKind layout,
          bool echo_report_data = true, std::chrono::milliseconds delay = std::chrono::milliseconds(0))
      : entry_(root / entry), layout_(report_layout(layout)), echo_(echo_report_data), delay_(delay) {
    fs::create_directories(entry_);
    std::ofstream(entry_ / "provider") << provider << "\n";
    if (::mkfifo((entry_ / "outblob").c_str(), 0600) != 0) throw std::runtime_error("mkfifo failed");
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeTsm() {
    stop_ = true;
    // Opening the read end releases a writer blocked in open().
    const int fd = ::open((entry_ / "outblob").c_str(), O_RDONLY | O_NONBLOCK);
    thread_.join();
    if (fd >= 0) ::close(fd);
  }

  static std::uint8_t measurement_byte(std::size_t i) { return static_cast<std::uint8_t>(0xA0 + i); }
  int reports() const { return reports_; }

 private:
  void serve() {
    for (;;) {
      const int fd = ::open((entry_ / "outblob").c_str(), O_WRONLY);
      if (stop_) {
        if (fd >= 0) ::close(fd);
        return;
      }
      if (fd < 0) return;
      // Hardware takes its time per report (and serializes them): `delay` models that.
      if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
      std::ifstream in(entry_ / "inblob", std::ios::binary);
      std::vector<char> inblob((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      const auto report = make_report_ ? made_report(inblob) : fake_report(inblob);
      [[maybe_unused]] auto written = ::write(fd, report.data(), report.size());
      // A fresh FIFO for the next report, so this reader sees exactly one report and EOF.
      ::mkfifo((entry_ / "outblob.next").c_str(), 0600);
      fs::rename(entry_ / "outblob.next", entry_ / "outblob");
      ++reports_;  // before close: the reader sees EOF only after it
      ::close(fd);
    }
  }

  std::vector<std::uint8_t> made_report(const std::vector<char>& inblob) const {
    protocol::ReportData report_data{};
    if (inblob.size() == report_data.size()) std::copy(inblob.begin(), inblob.end(), report_data.begin());
    return make_report_(report_data);
  }

  std::vector<std::uint8_t> fake_report(const std::vector<char>& inblob) const {
    std::vector<std::uint8_t> report(layout_.min_size, 0x11);
    if (echo_ && inblob.size() == protocol::kReportDataBytes)
      std::copy(inblob.begin(), inblob.end(), report.begin() + static_cast<std::ptrdiff_t>(layout_.report_data_offset));
    for (std::size_t i = 0; i < layout_.measurement_size; ++i) report[layout_.measurement_offset + i] = measurement_byte(i);
    return report;
  }

  fs::path entry_;
  ReportLayout layout_;
  ReportMaker make_report_;
  bool echo_ = true;
  std::chrono::milliseconds delay_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int> reports_{0};
  std::thread thread_;
};

}  // namespace rvenc::enclave::fake
