// The gateway's own view of each event stream, written to a file for the traffic-analysis
// benchmark (rvenc gateway --record-traffic FILE, used by rvenc bench traffic; off by default).
//
// Design: it records exactly what an observer at the gateway's socket has anyway and nothing
// more: per stream the request id, the billed usage, and for every event relayed the time since
// the request arrived (ms) and the event's size in bytes. Never a payload, a key or a header. One
// JSON line per finished stream, appended under a mutex (streams finish on several threads).
#pragma once

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string_view>
#include <utility>
#include <vector>

#include "rvenc/common/error.hpp"
#include "rvenc/protocol/chat.hpp"

namespace rvenc::gateway {

// One stream's events as seen: (ms since the request arrived, bytes).
class StreamView {
 public:
  // Adds the complete events in `bytes` (each ends with a blank line), all seen at `ms`.
  void add_events(std::string_view bytes, double ms);
  [[nodiscard]] const std::vector<std::pair<double, std::size_t>>& events() const noexcept { return events_; }

 private:
  std::vector<std::pair<double, std::size_t>> events_;
};

class TrafficRecorder {
 public:
  // Appends to `path` (created with mode 0600 if missing). invalid_request when it cannot.
  [[nodiscard]] static Result<std::shared_ptr<TrafficRecorder>> open(const std::filesystem::path& path);
  void record(std::string_view request_id, const StreamView& view, const protocol::Usage& usage);

 private:
  explicit TrafficRecorder(std::ofstream out) : out_(std::move(out)) {}
  std::mutex mutex_;
  std::ofstream out_;
};

}  // namespace rvenc::gateway
