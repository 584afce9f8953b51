#pragma once
// Optimiser pieces for training: AdamW (the torch.optim.AdamW update), CAME (the reference's optimiser) and global
// gradient-norm clipping with non-finite detection. The state is plain tensors so checkpoints can store it in
// safetensors.
#include <ATen/ATen.h>

#include <memory>
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

// What the training loops need from an optimiser.
class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // One update from the parameters' .grad() (parameters without a gradient are left alone).
  virtual void step() = 0;
  virtual void zero_grad() = 0;
  virtual void set_lr(double lr) = 0;
  virtual double lr() const = 0;
  // Named state tensors, for checkpoints; load_state is its inverse (Error on a missing or misshapen entry).
  virtual std::vector<std::pair<std::string, at::Tensor>> state() const = 0;
  virtual void load_state(const std::vector<std::pair<std::string, at::Tensor>>& state) = 0;
};

class AdamW : public Optimizer {
 public:
  AdamW(std::vector<std::pair<std::string, at::Tensor>> params, AdamWOptions options);
  void step() override;
  void zero_grad() override;
  void set_lr(double lr) override { options_.lr = lr; }
  double lr() const override { return options_.lr; }
  int64_t steps() const { return step_; }
  // exp_avg.<name>, exp_avg_sq.<name> and "step", for checkpoints.
  std::vector<std::pair<std::string, at::Tensor>> state() const override;
  void load_state(const std::vector<std::pair<std::string, at::Tensor>>& state) override;

 private:
  std::vector<std::pair<std::string, at::Tensor>> params_;
  std::vector<at::Tensor> exp_avg_, exp_avg_sq_;
  AdamWOptions options_;
  int64_t step_ = 0;
};

struct CAMEOptions {
  double lr = 1e-4;
  double beta1 = 0.9, beta2 = 0.999, beta3 = 0.9999;
  double eps1 = 1e-30, eps2 = 1e-16;
  double clip_threshold = 1.0;
  double weight_decay = 0.0;
};

// CAME (Luo et al. 2023, "Confidence-guided Adaptive Memory Efficient Optimization"), the SANA-Sprint reference
// optimiser. For tensors with >= 2 dims the second moment and the confidence (instability) are kept factored over
// the last two dims (row and column means, as Adafactor), else in full:
//   u  = g / sqrt(V),  V = beta2 V + (1 - beta2)(g^2 + eps1)          (factored: V_ij ~ r_i c_j / mean(r))
//   u /= max(1, RMS(u) / clip_threshold)
//   m  = beta1 m + (1 - beta1) u
//   U  = beta3 U + (1 - beta3)((u - m)^2 + eps2)                      (factored, >= 2 dims only)
//   p -= lr m / sqrt(U)  (>= 2 dims),  p -= lr m  (1 dim);  weight decay p -= lr wd p.
// No bias correction (as the reference implementation).
class CAME : public Optimizer {
 public:
  CAME(std::vector<std::pair<std::string, at::Tensor>> params, CAMEOptions options);
  void step() override;
  void zero_grad() override;
  void set_lr(double lr) override { options_.lr = lr; }
  double lr() const override { return options_.lr; }
  std::vector<std::pair<std::string, at::Tensor>> state() const override;
  void load_state(const std::vector<std::pair<std::string, at::Tensor>>& state) override;

 private:
  struct Slot {
    at::Tensor exp_avg, exp_avg_sq, row, col, res_row, res_col;  // factored tensors use row/col, others exp_avg_sq
  };
  std::vector<std::pair<std::string, at::Tensor>> params_;
  std::vector<Slot> slots_;
  CAMEOptions options_;
  int64_t step_ = 0;
};

// "adamw" (betas 0.9, 0.999, eps 1e-8) or "came" (the reference's betas and eps); Error naming --optimizer otherwise.
std::unique_ptr<Optimizer> make_optimizer(const std::string& name,
                                          std::vector<std::pair<std::string, at::Tensor>> params, double lr,
                                          double weight_decay);

// Scales all gradients so their global L2 norm is at most max_norm; returns the norm before clipping (inf/nan if a
// gradient is not finite, in which case nothing is scaled: the caller skips the step).
double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm);

}  // namespace sana
