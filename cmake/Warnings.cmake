# rvenc_warnings: the warning set every rvenc target builds with.
add_library(rvenc_warnings INTERFACE)
target_compile_options(rvenc_warnings INTERFACE -Wall -Wextra -Wpedantic -Wshadow=local -Wnon-virtual-dtor
  -Wno-missing-field-initializers)
# GCC 12 takes Asio's coroutine frames (awaitable_frame_base's operator new takes them from
# aligned_alloc, its own operator delete gives them back) for a mismatched new/delete pair.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(rvenc_warnings INTERFACE -Wno-mismatched-new-delete)
endif()
