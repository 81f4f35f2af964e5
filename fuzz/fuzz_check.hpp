// Shared by the fuzz targets: an invariant that must hold for every input (abort() makes
// libFuzzer record the input as a crash).
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <boost/json/value.hpp>

#define RVENC_FUZZ_CHECK(cond)                                                              \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      std::fprintf(stderr, "invariant failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                         \
    }                                                                                       \
  } while (false)

namespace rvenc::fuzz {

// Boost.JSON parses an out-of-range decimal (7e77777) as infinity, and infinity does not
// serialise to JSON that parses back: round trips are only defined for finite numbers.
inline bool all_finite(const boost::json::value& v) {
  if (v.is_double()) return std::isfinite(v.get_double());
  if (v.is_object()) {
    for (const auto& [key, value] : v.get_object())
      if (!all_finite(value)) return false;
  }
  if (v.is_array()) {
    for (const auto& value : v.get_array())
      if (!all_finite(value)) return false;
  }
  return true;
}

}  // namespace rvenc::fuzz
