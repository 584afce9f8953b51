#pragma once
// Helpers shared by the tests: the fixture root and tensor comparisons.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>

#include "sana/error.h"
#include "sana/io/config.h"
#include "sana/io/safetensors.h"
#include "sana/pipeline/options.h"
#include <nlohmann/json.hpp>

namespace sana::test {

// The message of the sana::Error that f throws; empty when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const sana::Error& e) {
    return e.what();
  }
  return "";
}

// The options of a pipeline fixture's case from its metadata (prompt, seed, steps, size, guidance), at exactly that
// size, with the Sprint pipelines' default middle time for 2 steps; control and init images are the caller's.
inline sana::GenerateOptions case_options(const nlohmann::json& m) {
  sana::GenerateOptions o;
  o.prompts = m["prompt"].get<std::vector<std::string>>();
  o.seed = m["seed"].get<uint64_t>();
  o.steps = m["steps"].get<int>();
  o.height = o.width = m["hw"].get<int>();
  o.resolution_binning = false;
  if (m.contains("guidance")) o.guidance_scale = m["guidance"].get<double>();
  if (o.steps == 2) o.intermediate_timesteps = 1.3;  // teachers ignore it
  return o;
}

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
  return (a.cpu().to(at::kDouble) - b.cpu().to(at::kDouble)).abs().max().item<double>();
}

// at::equal across devices (a result on the test device against a fixture on the CPU).
inline bool same(const at::Tensor& a, const at::Tensor& b) { return at::equal(a.cpu(), b.cpu()); }

// The device the reference-pipeline tests run on: $SANA_TEST_DEVICE ("cuda" from scripts/device/run.sh), else the
// CPU. On CUDA, TF32 is switched off so that fp32 means fp32.
inline at::Device test_device() {
  const char* name = std::getenv("SANA_TEST_DEVICE");
  const at::Device device(name && *name ? name : "cpu");
  if (device.is_cuda()) {
    at::globalContext().setAllowTF32CuBLAS(false);
    at::globalContext().setAllowTF32CuDNN(false);
  }
  return device;
}

// Prompt embeddings [B, L, C] with the padded positions zeroed: no consumer reads them, and the pipelines' prefix
// cache does not compute them (the reference does), so fixtures are compared at the unpadded positions.
inline at::Tensor unpadded(const at::Tensor& embeds, const at::Tensor& mask) {
  return embeds * mask.to(embeds.device()).unsqueeze(-1).to(embeds.scalar_type());
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
