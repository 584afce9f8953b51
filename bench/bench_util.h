#pragma once
// Shared pieces of the benchmark programs: timing, peak memory, the machine's sgemm rate.
#include <string>
#include <vector>

namespace sana::bench {

double now_seconds();
double median(std::vector<double> v);
// Peak resident set size of this process so far, in MiB (getrusage ru_maxrss).
double peak_rss_mib();
// Achieved single-precision GEMM rate (GFLOP/s) of at::mm on n x n matrices, median of `reps`, at the current
// LibTorch thread setting: the yardstick for "fraction of the machine's sgemm".
double sgemm_gflops(int n = 2048, int reps = 5);
std::string machine_summary();  // CPU model, cores, LibTorch threads

}  // namespace sana::bench
