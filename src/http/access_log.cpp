// The access-log line and the Handler decorator that writes it (access_log.hpp).
#include "rvenc/http/access_log.hpp"

#include <memory>
#include <string>
#include <utility>

#include <spdlog/spdlog.h>

#include "rvenc/common/auth.hpp"

namespace rvenc::http {
namespace {

// Forwards everything to the server's writer and remembers the status it answered with.
class StatusTap final : public ResponseWriter {
 public:
  explicit StatusTap(ResponseWriter& inner) : inner_(inner) {}

  awaitable<void> send(Response response) override {
    status_ = response.result_int();
    co_await inner_.send(std::move(response));
  }
  awaitable<bool> begin_stream(ResponseHeader header) override {
    status_ = header.result_int();
    co_return co_await inner_.begin_stream(std::move(header));
  }
  awaitable<bool> write(std::string_view bytes) override { co_return co_await inner_.write(bytes); }
  [[nodiscard]] bool write_now(std::string_view bytes) override { return inner_.write_now(bytes); }
  awaitable<void> end_stream(std::string_view last_bytes) override { co_await inner_.end_stream(last_bytes); }
  [[nodiscard]] bool client_gone() const override { return inner_.client_gone(); }
  [[nodiscard]] bool started() const override { return inner_.started(); }
  [[nodiscard]] std::optional<IpAddress> client_address() const override { return inner_.client_address(); }
  void send_trailer(std::string_view payload) override { inner_.send_trailer(payload); }

  [[nodiscard]] unsigned status() const noexcept { return status_; }

 private:
  ResponseWriter& inner_;
  unsigned status_ = 0;
};

}  // namespace

void log_access(std::string_view request_id, const Request& request, unsigned status,
                std::chrono::steady_clock::duration elapsed, std::string_view masked_key) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count();
  std::string path(target_path(request).substr(0, kMaxLoggedPathChars));
  for (char& c : path)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';  // a path cannot forge a log line
  spdlog::info("{}{}{} {} {} {}ms key {}", request_id, request_id.empty() ? "" : " ",
               std::string_view(request.method_string()), path, status, ms, masked_key.empty() ? "-" : masked_key);
}

Handler with_access_log(Handler inner) {
  return [inner = std::move(inner)](Request& request, ResponseWriter& writer) -> awaitable<void> {
    const auto started = std::chrono::steady_clock::now();
    // Masked before the handler runs: a handler may move the request's fields away.
    const auto token = bearer_token(request[boost::beast::http::field::authorization]);
    const std::string masked = token ? mask_secret(*token) : std::string();
    StatusTap tap(writer);
    co_await inner(request, tap);
    log_access({}, request, tap.status(), std::chrono::steady_clock::now() - started, masked);
  };
}

}  // namespace rvenc::http
