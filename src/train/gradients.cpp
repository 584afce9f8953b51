// Named parameters and the shared optimiser step (gradients.h).
#include "train/gradients.h"

#include <cmath>

#include "sana/train/distributed.h"
#include "train/ema.h"

namespace sana::detail {

NamedTensors trainable(const torch::nn::Module& module, const std::string& prefix) {
  NamedTensors out;
  for (const auto& p : module.named_parameters())
    if (p.value().requires_grad()) out.emplace_back(prefix + p.key(), p.value());
  return out;
}

std::vector<at::Tensor> tensors_of(const NamedTensors& named) {
  std::vector<at::Tensor> out;
  for (const auto& [n, t] : named) out.push_back(t);
  return out;
}

double warmup_lr(double lr, int warmup, int64_t step) {
  if (warmup <= 0) return lr;
  return lr * std::min(1.0, static_cast<double>(step + 1) / warmup);
}

std::pair<double, bool> apply_gradients(Optimizer& optim, const NamedTensors& params, double lr, int warmup_steps,
                                        int64_t lr_step, double clip, DataParallel* dp, EMA* ema) {
  const std::vector<at::Tensor> tensors = tensors_of(params);
  if (dp) dp->average_gradients(tensors);
  const double norm = clip_grad_norm(tensors, clip);
  if (!std::isfinite(norm)) return {norm, false};
  optim.set_lr(warmup_lr(lr, warmup_steps, lr_step));
  optim.step();
  if (ema) ema->update();
  return {norm, true};
}

}  // namespace sana::detail
