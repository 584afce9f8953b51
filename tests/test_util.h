#pragma once
// Helpers shared by the tests: the fixture root and tensor comparisons.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "sana/io/config.h"
#include "sana/io/safetensors.h"

namespace sana::test {

// $SANA_FIXTURES, or the project's tests/data.
inline std::string fixture_root() {
  const char* env = std::getenv("SANA_FIXTURES");
  return env && *env ? std::string(env) : std::string(SANA_TEST_DATA);
}

inline std::string fixture(const std::string& relative) {
  return (std::filesystem::path(fixture_root()) / relative).string();
}

// The project's own fixtures in tests/data (not part of the shared reference set, so not under $SANA_FIXTURES):
// resize_lanczos/, made with Pillow.
inline std::string project_fixture(const std::string& relative) {
  return (std::filesystem::path(SANA_TEST_DATA) / relative).string();
}

inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

// Asserts equal shapes and max |a - b| <= tol, printing the error.
#define EXPECT_CLOSE(actual, expected, tol)                                                          \
  do {                                                                                               \
    const at::Tensor _a = (actual), _e = (expected);                                                 \
    ASSERT_EQ(_a.sizes(), _e.sizes());                                                               \
    const double _d = ::sana::test::max_abs_diff(_a, _e);                                            \
    EXPECT_LE(_d, (tol)) << "max abs error " << _d << " (reference max |x| "                         \
                         << _e.abs().max().item<double>() << ")";                                    \
  } while (0)

// A fresh empty directory under the system temp dir, removed at scope exit.
class TempDir {
 public:
  TempDir() {
    path_ = std::filesystem::temp_directory_path() /
            ("sana_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  static int& counter() {
    static int c = 0;
    return c;
  }
  std::filesystem::path path_;
};

#ifdef SANA_CLI
// What a run of the sana-sprint binary answered: exit status (-1: killed by a signal, or by the time limit) and stderr.
struct CliRun {
  int rc;
  std::string err;
};

// Runs `sana-sprint ARGS` (with `env` assignments in front) under a hard time limit (SIGKILL): a hang shows as rc -1,
// like a crash.
inline CliRun run_cli(const std::string& args, const std::string& env = "", double kill_after_seconds = 600) {
  TempDir dir;
  const std::string err_file = dir.file("stderr.txt");
  const std::string cmd = env + " timeout -s KILL " + std::to_string(kill_after_seconds) + " " + SANA_CLI + " " +
                          args + " 2>" + err_file + " >/dev/null </dev/null";
  const int status = std::system(cmd.c_str());
  const bool exited = WIFEXITED(status) && WEXITSTATUS(status) != 137;  // 137: timeout's SIGKILL, or the child's
  return {exited ? WEXITSTATUS(status) : -1, sana::read_text_file(err_file)};
}
#endif

}  // namespace sana::test
