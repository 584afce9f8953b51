#pragma once
// Data-parallel training through PyTorch's c10d: Gloo across processes on CPU, NCCL across GPUs (CUDA LibTorch).
// Rank and world come from torchrun-style variables: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT.
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

namespace sana {

struct DistEnv {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool distributed() const { return world_size > 1; }
};

// Reads the torchrun variables (absent: a single process). Malformed values are an Error naming the variable.
DistEnv dist_env_from_environment();

class DataParallel {
 public:
  // Connects the processes (rank 0 hosts the TCP store). backend: "gloo" | "nccl" | "auto" (nccl for CUDA devices).
  DataParallel(const DistEnv& env, const std::string& backend = "auto", const at::Device& device = at::kCPU);
  ~DataParallel();

  // Averages the gradients of `params` over all processes (one flattened all-reduce).
  void average_gradients(const std::vector<at::Tensor>& params);
  // Copies rank 0's parameter values to every process.
  void broadcast_parameters(const std::vector<at::Tensor>& params);
  // Sum of a scalar over the processes (e.g. to agree on skipping a non-finite step).
  double all_reduce_sum(double value);
  void barrier();

  const DistEnv& env() const { return env_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  DistEnv env_;
};

}  // namespace sana
