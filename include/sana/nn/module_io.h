#pragma once
// Moving module parameters in and out of safetensors checkpoints, by name, strictly.
#include <torch/nn/module.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "sana/io/safetensors.h"

namespace sana::nn {

struct LoadOptions {
  // Checkpoint names are this prefix + the module's names (e.g. "model." for a *ForCausalLM checkpoint).
  std::string prefix;
  // Checkpoint tensors starting with one of these are skipped instead of being "unexpected" (e.g. "lm_head.").
  std::vector<std::string> ignore;
};

// Copies every parameter and buffer of `module` from `ckpt`, casting to the parameter's dtype and device.
// Strict: tensors missing from the checkpoint, tensors the module does not have and shape mismatches are one Error
// that lists the names. `what` names the component in messages (e.g. "transformer").
// CPU parameters whose dtype equals the stored one become views of the memory-mapped file (no copy).
void load_state_dict(torch::nn::Module& module, const Checkpoint& ckpt, const std::string& what,
                     const LoadOptions& options = {});

// Parameters then buffers, by their full dotted names.
std::vector<std::pair<std::string, at::Tensor>> state_dict(const torch::nn::Module& module);

// Writes state_dict(module) atomically (see save_safetensors).
void save_state_dict(const torch::nn::Module& module, const std::string& path,
                     const std::map<std::string, std::string>& metadata = {});

int64_t count_parameters(const torch::nn::Module& module);

// Seeded random weights, the scheme of the reference fixtures (keeps activations O(1) at any width):
// >= 2-D weights ~ N(0, 1/fan_in) with fan_in = numel / shape[0]; `scale_shift_table` ~ N(0, 0.2^2);
// 1-D weights ~ 1 + N(0, 0.1^2); biases ~ N(0, 0.05^2).
void init_random(torch::nn::Module& module, uint64_t seed);

}  // namespace sana::nn
