#pragma once
// Parameters by name and one optimiser step from their gradients, shared by every trainer.
#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <string>
#include <utility>
#include <vector>

#include "sana/train/optim.h"

namespace sana {

class DataParallel;

namespace detail {

class EMA;
using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// Parameters of a module that require grad, with names.
NamedTensors trainable(const torch::nn::Module& module, const std::string& prefix = "");
std::vector<at::Tensor> tensors_of(const NamedTensors& named);

// Linear warm-up: lr * min(1, (step + 1) / warmup).
double warmup_lr(double lr, int warmup, int64_t step);

// After loss.backward(): averages the gradients over the processes (so they, and their norm, are equal on every
// process), clips them to `clip`, and unless the norm is non-finite sets the warmed-up learning rate for `lr_step`,
// steps and updates the EMA. Returns {gradient norm before clipping, whether the step was taken}.
std::pair<double, bool> apply_gradients(Optimizer& optim, const NamedTensors& params, double lr, int warmup_steps,
                                        int64_t lr_step, double clip, DataParallel* dp, EMA* ema);

}  // namespace detail
}  // namespace sana
