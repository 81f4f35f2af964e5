#include "rvenc/gateway/traffic_recorder.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <boost/json/serialize.hpp>

namespace rvenc::gateway {

namespace json = boost::json;

void StreamView::add_events(std::string_view bytes, double ms) {
  std::size_t start = 0;
  for (auto end = bytes.find("\n\n"); end != std::string_view::npos; end = bytes.find("\n\n", start)) {
    events_.emplace_back(ms, end + 2 - start);
    start = end + 2;
  }
}

Result<std::shared_ptr<TrafficRecorder>> TrafficRecorder::open(const std::filesystem::path& path) {
  // Created 0600 before the stream opens it: request ids and timings are the operator's business.
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return fail(Errc::invalid_request, "--record-traffic: cannot write " + path.string());
  ::close(fd);
  std::ofstream out(path, std::ios::app);
  if (!out) return fail(Errc::invalid_request, "--record-traffic: cannot write " + path.string());
  return std::shared_ptr<TrafficRecorder>(new TrafficRecorder(std::move(out)));
}

void TrafficRecorder::record(std::string_view request_id, const StreamView& view, const protocol::Usage& usage) {
  json::array events;
  events.reserve(view.events().size());
  for (const auto& [ms, bytes] : view.events()) events.push_back(json::array{ms, bytes});
  const std::string line = json::serialize(json::object{{"requestId", request_id},
                                                        {"completionTokens", usage.completion_tokens},
                                                        {"events", std::move(events)}});
  const std::scoped_lock lock(mutex_);
  out_ << line << '\n' << std::flush;
}

}  // namespace rvenc::gateway
