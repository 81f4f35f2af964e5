// The frames a rvenc-mux/1 client connection has queued and not sent yet (mux.cpp's frame writer).
// Private to rvenc_http.
//
// Design: every stream appends its frames (REQUEST, WINDOW, RESET) to one buffer, and the first
// frame of a batch starts one flush; the flush, posted after everything ready to run, takes the
// whole buffer, so the frames of all streams leave in one send. The outbox is the bookkeeping of
// that rule (no socket, no lock: the connection calls it under its mutex); the connection does the
// writing. Tested without a server (tests/http/http_mux_streams_test.cpp).
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace rvenc::http::detail {

class MuxOutbox {
 public:
  // Where frames are appended (mux::append_frame and friends).
  [[nodiscard]] std::string& frames() { return out_; }
  [[nodiscard]] bool empty() const { return out_.empty(); }

  // True when the caller must start a flush: frames are queued and none is under way.
  [[nodiscard]] bool start_flush() {
    if (out_.empty() || flushing_) return false;
    flushing_ = true;
    return true;
  }
  // The queued frames, all of them, for one send; nullopt when none are left (the flush is over).
  [[nodiscard]] std::optional<std::string> take() {
    if (out_.empty()) {
      flushing_ = false;
      return std::nullopt;
    }
    return std::exchange(out_, std::string());
  }
  // The flush stops without sending (the connection is not open, or closed).
  void stop_flush() { flushing_ = false; }
  // Drops what is queued (the connection failed).
  void clear() { out_.clear(); }

 private:
  std::string out_;
  bool flushing_ = false;
};

}  // namespace rvenc::http::detail
