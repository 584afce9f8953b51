#pragma once
// Optimiser pieces for training: AdamW (the torch.optim.AdamW update) and global gradient-norm clipping with
// non-finite detection. The state is plain tensors so checkpoints can store it in safetensors.
#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

namespace sana {

struct AdamWOptions {
  double lr = 1e-4;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

class AdamW {
 public:
  AdamW(std::vector<std::pair<std::string, at::Tensor>> params, AdamWOptions options);
  // One update from the parameters' .grad() (parameters without a gradient are left alone).
  void step();
  void zero_grad();
  void set_lr(double lr) { options_.lr = lr; }
  double lr() const { return options_.lr; }
  int64_t steps() const { return step_; }
  // exp_avg.<name>, exp_avg_sq.<name> and "step", for checkpoints.
  std::vector<std::pair<std::string, at::Tensor>> state() const;
  void load_state(const std::vector<std::pair<std::string, at::Tensor>>& state);

 private:
  std::vector<std::pair<std::string, at::Tensor>> params_;
  std::vector<at::Tensor> exp_avg_, exp_avg_sq_;
  AdamWOptions options_;
  int64_t step_ = 0;
};

// Scales all gradients so their global L2 norm is at most max_norm; returns the norm before clipping (inf/nan if a
// gradient is not finite, in which case nothing is scaled: the caller skips the step).
double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm);

}  // namespace sana
