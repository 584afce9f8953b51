#pragma once
// Device, dtype and thread settings shared by the CLI and the benchmark programs.
#include <ATen/ATen.h>

#include <string>

namespace sana {

// "fp32" | "bf16" | "fp16" | "fp64" (also "float32", "bfloat16", "float16", "float64"); Error naming `flag`.
at::ScalarType parse_dtype(const std::string& text, const std::string& flag = "--dtype");
// "cpu" | "cuda" | "cuda:N"; Error if the LibTorch build or machine has no CUDA.
at::Device parse_device(const std::string& text, const std::string& flag = "--device");
// Sets LibTorch's intra-op threads (0 = all cores).
void set_threads(int threads);
// Waits for queued GPU work (no-op on CPU), for timing.
void synchronize(const at::Device& device);

}  // namespace sana
