#pragma once
// Device, dtype and thread settings shared by the CLI and the benchmark programs.
#include <ATen/ATen.h>

#include <string>

namespace sana {

// "fp32" | "bf16" | "fp16" | "fp64" (also "float32", "bfloat16", "float16", "float64"); Error naming `flag`.
at::ScalarType parse_dtype(const std::string& text, const std::string& flag = "--dtype");
// "cpu" | "cuda" | "cuda:N"; Error if the LibTorch build or machine has no CUDA.
at::Device parse_device(const std::string& text, const std::string& flag = "--device");
// Sets LibTorch's intra-op threads (0 = all cores) for the calling thread, only when they differ; Error naming `flag`
// outside 0 .. 4 x the cores.
void set_threads(int threads, const std::string& flag = "-t/--threads");
// Process-wide CPU settings for the executables: threads (as set_threads) and glibc malloc tuning. glibc hands
// freed blocks of 128 KiB..32 MiB back to the kernel (munmap, heap trimming), so each large activation is
// page-faulted in again by the next op; keeping them in the heap halved system time and made the 0.6B forward
// at 1024^2 ~6% faster. Costs at most a few hundred MB of retained heap.
// Blocks of 32 MiB and more (the activations of a high-resolution decode) then come from install_cpu_allocator.
// On CUDA it also turns on cuDNN's benchmark mode (each convolution shape is timed once; the shapes repeat).
void configure_runtime(int threads);
// Makes LibTorch's CPU allocator map blocks of 32 MiB and more on 2 MiB boundaries with huge pages advised: one page
// fault per 2 MiB instead of per 4 KiB when an activation is first written (docs/PERFORMANCE.md).
void install_cpu_allocator();
// Hands the heap's free pages back to the kernel (glibc's malloc_trim), so that the process's RSS falls to what is
// still alive after a model is released: configure_runtime keeps freed blocks below 32 MiB in the heap, where they
// would otherwise stay counted. (A CUDA device's caching allocator keeps its blocks for the process's next use.)
void release_free_memory();
// At most `arenas` glibc malloc arenas for the threads that allocate from now on. By default each such thread gets
// one of its own (up to 8 per core), and memory freed by work that many threads touched stays scattered over them in
// pieces malloc_trim cannot return: over bench_server's soak of 2000 mixed requests the idle RSS grew by 178 MiB with
// the default and by 17 MiB with two arenas, at the same throughput (docs/PERFORMANCE.md).
void limit_malloc_arenas(int arenas);
// Waits for queued GPU work (no-op on CPU), for timing.
void synchronize(const at::Device& device);

}  // namespace sana
