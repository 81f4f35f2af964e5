// Shared by the fuzz targets: an invariant that must hold for every input (abort() makes
// libFuzzer record the input as a crash).
#pragma once

#include <cstdio>
#include <cstdlib>

#define RVENC_FUZZ_CHECK(cond)                                                              \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      std::fprintf(stderr, "invariant failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                         \
    }                                                                                       \
  } while (false)
