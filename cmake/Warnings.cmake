# rvenc_warnings: the warning set every rvenc target builds with.
add_library(rvenc_warnings INTERFACE)
target_compile_options(rvenc_warnings INTERFACE -Wall -Wextra -Wpedantic -Wshadow=local -Wnon-virtual-dtor
  -Wno-missing-field-initializers)
