#pragma once
// Shared by the libFuzzer targets (docs/RELIABILITY.md, "Fuzzing"): the loaders read paths, so each input is written
// to a per-process file under /dev/shm first; a sana::Error is the expected answer to bad input, anything else that
// escapes (another exception, a crash, a sanitizer report) is a finding.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

#include "sana/error.h"

namespace sana::fuzz {

inline std::filesystem::path work_dir() {
  static const std::filesystem::path dir = [] {
    const auto d = std::filesystem::path("/dev/shm") / ("sana_fuzz_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

// The input's bytes as the file `name` in the work folder; returns its path.
inline std::string as_file(const uint8_t* data, size_t size, const std::string& name) {
  const std::string path = (work_dir() / name).string();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

template <class F>
void expect_clean_answer(F&& f) {
  try {
    f();
  } catch (const sana::Error&) {
  }
}

}  // namespace sana::fuzz
