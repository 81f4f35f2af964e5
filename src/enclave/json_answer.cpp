#include "rvenc/enclave/json_answer.hpp"

#include <utility>

#include "rvenc/crypto/secret.hpp"

namespace rvenc::enclave {

JsonAnswerRelay::~JsonAnswerRelay() { crypto::secure_wipe(held_.data(), held_.size()); }

// Statements of their own, no co_await inside a condition or on a temporary's result: g++ 12
// destroys such awaitables twice (as noted in service.cpp).
http::awaitable<Status> JsonAnswerRelay::send(std::string plaintext) {
  const bool delivered = co_await sink_(std::move(plaintext));
  if (!delivered) co_return fail(Errc::transport_error, "the client disconnected");
  co_return Status{};
}

http::awaitable<Status> JsonAnswerRelay::add(std::string_view bytes) {
  if (auto checked = check_.feed(bytes); !checked) co_return checked;
  if (!in_records_ && held_.size() + bytes.size() <= records_.capacity()) {
    held_.append(bytes);
    co_return Status{};
  }
  if (!in_records_) {
    in_records_ = true;
    records_.push_part(held_);
    crypto::secure_wipe(held_.data(), held_.size());
    held_.clear();
  }
  records_.push_part(bytes);
  co_return co_await send_records(false);
}

http::awaitable<Status> JsonAnswerRelay::send_records(bool all) {
  while (all ? !records_.empty() : records_.record_full()) {
    std::string record = records_.next_record(protocol::RecordFill::none);
    Status sent = co_await send(std::move(record));
    if (!sent) co_return sent;
  }
  co_return Status{};
}

http::awaitable<Result<std::optional<protocol::Usage>>> JsonAnswerRelay::finish() {
  auto usage = check_.finish();
  if (!usage) co_return usage;
  if (!in_records_) {
    std::string whole = std::move(held_);
    held_.clear();
    Status sent = co_await send(std::move(whole));
    if (!sent) co_return std::unexpected(sent.error());
    co_return usage;
  }
  records_.end_chunk();
  Status sent = co_await send_records(true);
  if (!sent) co_return std::unexpected(sent.error());
  co_return usage;
}

}  // namespace rvenc::enclave
