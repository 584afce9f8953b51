#pragma once
// Shared pieces of the benchmark programs: timing, peak memory, the machine's sgemm rate.
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "sana/runtime.h"

namespace sana::bench {

double now_seconds();
double median(std::vector<double> v);
// Peak resident set size of this process so far, in MiB (getrusage ru_maxrss).
double peak_rss_mib();
// Resident set size now, in MiB (/proc/self/statm; 0 where there is none).
double current_rss_mib();
// Achieved GEMM rate (GFLOP/s) of at::mm on n x n matrices of `dtype` (fp32: sgemm; bf16 goes through oneDNN),
// median of `reps`, at the current LibTorch thread setting: the yardstick for "fraction of the machine's rate".
double sgemm_gflops(int n = 2048, int reps = 5, at::ScalarType dtype = at::kFloat);
std::string machine_summary();  // CPU model, cores, LibTorch threads

// Runs f once as a warm-up, then `runs` timed times (waiting for the device each time); returns seconds per run.
template <class F>
std::vector<double> time_runs(int runs, const at::Device& device, F&& f, bool warm_up = true) {
  if (warm_up) {
    f();
    synchronize(device);
  }
  std::vector<double> t;
  for (int r = 0; r < runs; ++r) {
    const double t0 = now_seconds();
    f();
    synchronize(device);
    t.push_back(now_seconds() - t0);
  }
  return t;
}

}  // namespace sana::bench
