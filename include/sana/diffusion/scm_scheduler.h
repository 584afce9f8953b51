#pragma once
// diffusers SCMScheduler (prediction_type "trigflow"): the few-step sampler of SANA-Sprint (docs/ARCHITECTURE.md, "TrigFlow").
//   x0     = cos(s) x - sin(s) v                       (v = sigma_d * F, the TrigFlow velocity)
//   x_next = cos(t) x0 + sin(t) z,  z ~ N(0, sigma_d^2) drawn at every step, also the last (t = 0), as the reference
//                                                       does, so a seed gives the reference's noise sequence.
#include <ATen/ATen.h>

#include <optional>
#include <utility>
#include <vector>

#include "sana/io/config.h"

namespace sana {

struct SCMTimestepOptions {
  int steps = 2;
  double max_timesteps = 1.57080;                    // slightly above pi/2, the reference default
  std::optional<double> intermediate_timesteps;      // 2 steps only: [max, intermediate, 0]
  std::vector<double> timesteps;                     // custom schedule (steps + 1 values, decreasing, last 0)
};

class SCMScheduler {
 public:
  explicit SCMScheduler(SCMSchedulerConfig config = {}) : config_(std::move(config)) {}

  // Builds the schedule (float32, steps + 1 values). Unlike the reference pipeline, which raises unless
  // intermediate_timesteps is None for steps != 2, an intermediate value is simply ignored there (with the
  // pipeline default 1.3 applied only to 2 steps by the caller). Errors name the offending option.
  const at::Tensor& set_timesteps(const SCMTimestepOptions& options);
  const at::Tensor& timesteps() const { return timesteps_; }
  int num_steps() const { return static_cast<int>(timesteps_.size(0)) - 1; }

  // Step i (0-based): returns {x_next, x0}. `v` is the TrigFlow velocity sigma_d * F, `x` the current latent.
  std::pair<at::Tensor, at::Tensor> step(const at::Tensor& v, int i, const at::Tensor& x, at::Generator& gen) const;

  const SCMSchedulerConfig& config() const { return config_; }

 private:
  SCMSchedulerConfig config_;
  at::Tensor timesteps_;
};

}  // namespace sana
