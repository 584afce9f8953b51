#include "sana/runtime.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <malloc.h>

#include <thread>

#include "sana/error.h"

namespace sana {

at::ScalarType parse_dtype(const std::string& text, const std::string& flag) {
  if (text == "fp32" || text == "float32") return at::kFloat;
  if (text == "bf16" || text == "bfloat16") return at::kBFloat16;
  if (text == "fp16" || text == "float16") return at::kHalf;
  if (text == "fp64" || text == "float64") return at::kDouble;
  throw Error(flag + ": '" + text + "' is not one of fp32, bf16, fp16, fp64");
}

at::Device parse_device(const std::string& text, const std::string& flag) {
  if (text == "cpu") return at::Device(at::kCPU);
  if (text.rfind("cuda", 0) == 0) {
    if (!at::hasCUDA())
      throw Error(flag + ": " + text + " is not available: this build of LibTorch has no CUDA (or no GPU is visible); rebuild with a "
                  "CUDA LibTorch via -DCMAKE_PREFIX_PATH");
    try {
      return at::Device(text);
    } catch (const std::exception&) {
      throw Error(flag + ": '" + text + "' is not cuda or cuda:N");
    }
  }
  throw Error(flag + ": '" + text + "' is not cpu, cuda or cuda:N");
}

void set_threads(int threads, const std::string& flag) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // Far more threads than cores only contend (and hundreds stall while being created).
  if (threads < 0 || threads > 4 * cores)
    throw Error(flag + ": " + std::to_string(threads) + " is not between 0 (all cores) and 4 x the " +
                std::to_string(cores) + " cores of this machine");
  // Setting the count rebuilds LibTorch's pools (~20 ms), which a library called per image must not pay each time.
  const int wanted = threads > 0 ? threads : cores;
  if (at::get_num_threads() != wanted) at::set_num_threads(wanted);
}

void configure_runtime(int threads) {
  set_threads(threads);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // the largest value glibc accepts
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  mallopt(M_TOP_PAD, 64 << 20);
  install_cpu_allocator();
  // On CUDA the shapes of a run repeat (the same resolution every step and every request), so letting cuDNN time
  // its convolution algorithms once per shape pays for itself: the DC-AE decoder is all convolutions.
  at::globalContext().setBenchmarkCuDNN(true);
}

void release_free_memory() { malloc_trim(0); }

void limit_malloc_arenas(int arenas) { mallopt(M_ARENA_MAX, arenas); }

void synchronize(const at::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index() < 0 ? -1 : device.index());
}

}  // namespace sana
