# Included by the top-level CMakeLists.txt (before src/) when RVENC_BUILD_FUZZ is ON: every
# target gets libFuzzer coverage plus ASan and UBSan; the fuzz executables link libFuzzer itself.
# Configure with clang (scripts/fuzz.sh uses clang++-14) and RVENC_CORE_ONLY=ON.
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "RVENC_BUILD_FUZZ needs clang for libFuzzer: -DCMAKE_CXX_COMPILER=clang++-14")
endif()

add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
  -fno-omit-frame-pointer
  -Wno-unknown-warning-option)  # the shared warning set has GCC-only options
add_link_options(-fsanitize=address,undefined)

# libstdc++ 12's <expected> needs constrained special members (P0848) that clang implements only
# from version 16: older clang gets the small std::expected of fuzz/compat instead.
if(CMAKE_CXX_COMPILER_VERSION VERSION_LESS 16)
  include_directories(BEFORE "${CMAKE_CURRENT_LIST_DIR}/compat")
endif()
