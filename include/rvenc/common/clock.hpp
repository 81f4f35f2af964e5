// The wall clock in whole Unix seconds, as every timestamp rvenc stores or sends uses it
// (envelope timestamps, key notAfter, ledger rows, chunk `created`).
//
// Design: one function, so "what time is it" has one definition; code that must be tested
// against other times takes a clock or a `now` argument instead of calling this deep inside.
#pragma once

#include <chrono>
#include <cstdint>

namespace rvenc {

[[nodiscard]] inline std::int64_t unix_now() noexcept {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The same in milliseconds (request ids, ordered by time).
[[nodiscard]] inline std::int64_t unix_now_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace rvenc
