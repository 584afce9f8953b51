#include "bench_util.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <thread>

namespace sana::bench {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

double peak_rss_mib() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;  // Linux reports KiB
}

double current_rss_mib() {
  std::ifstream statm("/proc/self/statm");
  long long pages_total = 0, pages_resident = 0;
  if (!(statm >> pages_total >> pages_resident)) return 0.0;
  return pages_resident * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1 << 20);
}

double sgemm_gflops(int n, int reps, at::ScalarType dtype) {
  const at::Tensor a = at::randn({n, n}).to(dtype), b = at::randn({n, n}).to(dtype);
  at::Tensor c = at::mm(a, b);  // warm-up
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    const double t0 = now_seconds();
    at::mm_out(c, a, b);
    times.push_back(now_seconds() - t0);
  }
  return 2.0 * n * n * static_cast<double>(n) / median(times) / 1e9;
}

std::string machine_summary() {
  std::string cpu = "unknown CPU";
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  // Which libblas.so.3 the loader picked (the OpenMP or the pthreads OpenBLAS, or something else).
  std::string blas = "unknown BLAS";
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);)
    if (line.find("libblas.so") != std::string::npos) {
      blas = line.substr(line.find('/'));
      break;
    }
  return cpu + ", " + std::to_string(std::thread::hardware_concurrency()) + " cores, LibTorch threads " +
         std::to_string(at::get_num_threads()) + ", BLAS " + blas;
}

}  // namespace sana::bench
