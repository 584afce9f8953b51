// `--dtype auto`: the probe, its per-machine cache and the rule (dtype_auto.h).
#include "sana/pipeline/dtype_auto.h"

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/version.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "sana/io/atomic_file.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace sana {
namespace {

// Fastest of `runs` timed runs after one warm-up.
template <class F>
double fastest(int runs, F&& f) {
  f();
  double best = 1e30;
  for (int r = 0; r < runs; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

// What makes a measurement valid for another process: the CPU, the threads it may use and the library.
std::string machine_key() {
  return cpu_model() + " | " + std::to_string(at::get_num_threads()) + " threads | LibTorch " + TORCH_VERSION;
}

fs::path cache_folder(const std::string& given) {
  if (!given.empty()) return given;
  if (const char* d = std::getenv("SANA_CACHE_DIR"); d && *d) return d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "sana-sprint";
  if (const char* h = std::getenv("HOME"); h && *h) return fs::path(h) / ".cache" / "sana-sprint";
  return {};
}

std::string times(const DtypeProbe& p) {
  char s[160];
  std::snprintf(s, sizeof s, "matrix product bf16/fp32 %.2f, convolution %.2f", p.matmul_bf16 / p.matmul_fp32,
                p.conv_bf16 / p.conv_fp32);
  return s;
}

}  // namespace

StageDtypes choose_dtypes(const DtypeProbe& p) {
  StageDtypes d;
  d.transformer = p.matmul_bf16 < 0.9 * p.matmul_fp32 ? at::kBFloat16 : at::kFloat;
  d.vae = p.conv_bf16 < 0.9 * p.conv_fp32 ? at::kBFloat16 : at::kFloat;
  return d;
}

DtypeProbe probe_cpu_dtypes() {
  c10::InferenceMode guard;
  DtypeProbe p;
  // The 0.6B transformer's products at 1024^2 (1024 tokens, width 1152) and a decoder stage's 3x3 convolution.
  const at::Tensor a = at::randn({1024, 1152}), w = at::randn({1152, 1152}) / 34;
  const at::Tensor x = at::randn({1, 128, 96, 96}), k = at::randn({128, 128, 3, 3}) / 34;
  for (const at::ScalarType t : {at::kFloat, at::kBFloat16}) {
    const at::Tensor at_ = a.to(t), wt = w.to(t), xt = x.to(t), kt = k.to(t);
    const double mm = fastest(5, [&] { at::matmul(at_, wt); });
    const double conv = fastest(3, [&] { at::conv2d(xt, kt, {}, 1, 1); });
    (t == at::kFloat ? p.matmul_fp32 : p.matmul_bf16) = mm;
    (t == at::kFloat ? p.conv_fp32 : p.conv_bf16) = conv;
  }
  return p;
}

StageDtypes auto_dtypes(const at::Device& device, const std::string& cache_dir) {
  if (device.is_cuda()) return {at::kBFloat16, at::kBFloat16, "CUDA: bf16"};
  const fs::path folder = cache_folder(cache_dir);
  const fs::path file = folder.empty() ? fs::path() : folder / "dtype-auto.json";
  const std::string key = machine_key();
  // Once per process and cache file (the loaders ask more than once per load).
  static std::mutex mutex;
  static std::map<std::string, StageDtypes> decided;
  std::lock_guard<std::mutex> lock(mutex);
  if (const auto it = decided.find(file.string() + "\n" + key); it != decided.end()) return it->second;
  json cache = json::object();
  if (!file.empty() && fs::is_regular_file(file)) {
    cache = json::parse(std::ifstream(file), nullptr, /*allow_exceptions=*/false);
    if (!cache.is_object()) cache = json::object();  // a damaged cache is measured anew, not an error
  }
  DtypeProbe p;
  std::string source = "measured";
  const json* entry = cache.contains(key) ? &cache.at(key) : nullptr;
  if (entry && entry->is_object() && entry->value("matmul_fp32", 0.0) > 0 && entry->value("matmul_bf16", 0.0) > 0 &&
      entry->value("conv_fp32", 0.0) > 0 && entry->value("conv_bf16", 0.0) > 0) {
    p = {entry->value("matmul_fp32", 0.0), entry->value("matmul_bf16", 0.0), entry->value("conv_fp32", 0.0),
         entry->value("conv_bf16", 0.0)};
    source = "cached in " + file.string();
  } else {
    p = probe_cpu_dtypes();
    if (!file.empty()) {
      cache[key] = {{"matmul_fp32", p.matmul_fp32}, {"matmul_bf16", p.matmul_bf16}, {"conv_fp32", p.conv_fp32},
                    {"conv_bf16", p.conv_bf16}};
      try {
        fs::create_directories(folder);
        write_file_atomic(file.string(), cache.dump(2) + "\n");
        source += ", saved in " + file.string();
      } catch (const std::exception&) {
        // no cache then; the next load measures again
      }
    }
  }
  StageDtypes d = choose_dtypes(p);
  d.how = std::string("text encoder and transformer ") + (d.transformer == at::kBFloat16 ? "bf16" : "fp32") +
          ", VAE " + (d.vae == at::kBFloat16 ? "bf16" : "fp32") + " (" + times(p) + "; " + source + ")";
  decided[file.string() + "\n" + key] = d;
  return d;
}

}  // namespace sana
