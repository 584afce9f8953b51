#include "sana/diffusion/scm_scheduler.h"

#include <cmath>

#include "sana/error.h"

namespace sana {

const at::Tensor& SCMScheduler::set_timesteps(const SCMTimestepOptions& o) {
  if (o.steps < 1) throw Error("--steps must be at least 1, got " + std::to_string(o.steps));
  if (!(o.max_timesteps > 0 && o.max_timesteps <= 1.6))
    throw Error("--max-timesteps: " + std::to_string(o.max_timesteps) + " is outside (0, pi/2]");
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  if (!o.timesteps.empty()) {
    if (static_cast<int>(o.timesteps.size()) != o.steps + 1)
      throw Error("--timesteps: " + std::to_string(o.steps) + " steps need " + std::to_string(o.steps + 1) +
                  " values (the last one 0), got " + std::to_string(o.timesteps.size()));
    for (size_t i = 0; i < o.timesteps.size(); ++i) {
      const double t = o.timesteps[i];
      if (!(t >= 0 && t <= 1.6)) throw Error("--timesteps: value " + std::to_string(t) + " is outside [0, pi/2]");
      if (i > 0 && !(t < o.timesteps[i - 1])) throw Error("--timesteps: values must strictly decrease");
    }
    timesteps_ = at::tensor(std::vector<float>(o.timesteps.begin(), o.timesteps.end()), f32);
  } else if (o.steps == 2 && o.intermediate_timesteps) {
    const double mid = *o.intermediate_timesteps;
    if (!(mid > 0 && mid < o.max_timesteps))
      throw Error("--intermediate-timesteps: " + std::to_string(mid) + " must lie in (0, max_timesteps)");
    timesteps_ = at::tensor({static_cast<float>(o.max_timesteps), static_cast<float>(mid), 0.0f}, f32);
  } else {
    timesteps_ = at::linspace(o.max_timesteps, 0.0, o.steps + 1, f32);
  }
  return timesteps_;
}

std::pair<at::Tensor, at::Tensor> SCMScheduler::step(const at::Tensor& v, int i, const at::Tensor& x,
                                                     at::Generator& gen) const {
  if (!timesteps_.defined() || i < 0 || i >= num_steps())
    throw Error("SCMScheduler::step: step " + std::to_string(i) + " outside the schedule");
  const at::Tensor s = timesteps_[i].to(x.device()), t = timesteps_[i + 1].to(x.device());
  const at::Tensor x0 = at::cos(s) * x - at::sin(s) * v;
  // The reference draws on the CPU generator in fp32 and then moves the noise to the latent's device.
  const at::Tensor z = at::randn(v.sizes(), gen, at::TensorOptions().dtype(at::kFloat)).to(x.device()) *
                       config_.sigma_data;
  return {at::cos(t) * x0 + at::sin(t) * z, x0};
}

}  // namespace sana
