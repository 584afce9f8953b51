#include "sana/diffusion/flow_sampler.h"

#include <cmath>

#include "sana/error.h"

namespace sana {

namespace {
std::vector<double> flow_times(int steps, double shift) {
  if (steps < 1) throw Error("--steps must be at least 1, got " + std::to_string(steps));
  if (!(shift > 0)) throw Error("flow shift must be positive");
  std::vector<double> s(steps + 1);
  for (int i = 0; i <= steps; ++i) {
    const double u = 1.0 - static_cast<double>(i) / steps;
    s[i] = shift * u / (1.0 + (shift - 1.0) * u);
  }
  return s;
}
}  // namespace

at::Tensor flow_timesteps(int steps, double shift) {
  return at::tensor(flow_times(steps, shift), at::kDouble).to(at::kFloat);
}

at::Tensor sample_flow(const FlowVelocityFn& velocity, at::Tensor x, const FlowSampleOptions& o,
                       const std::function<void(int, double)>& on_step) {
  if (o.solver != "euler" && o.solver != "dpm++2m")
    throw Error("--solver: '" + o.solver + "' is not euler or dpm++2m");
  const std::vector<double> ts = flow_times(o.steps, o.shift);
  const int64_t B = x.size(0);
  at::Tensor x0_prev;
  double h_prev = 0;
  for (int i = 0; i < o.steps; ++i) {
    const double s = ts[i], s_next = ts[i + 1];
    if (on_step) on_step(i, s);
    // Times in the latent's dtype (float32 for the usual fp32 latents; float64 runs stay exact).
    const at::Tensor v = velocity(x, at::full({B}, s, x.options())).to(x.scalar_type());
    if (o.solver == "euler") {
      x = x + (s_next - s) * v;
      continue;
    }
    // DPM-Solver++ in data prediction. At s = 1 the signal is 0 and lambda = -inf; the first step is Euler-like:
    // the exact first-order update there is x' = s' eps_hat + (1 - s') x0_hat, which equals the formula below.
    const at::Tensor x0 = x - s * v;
    if (s_next <= 0) {
      x = x0;  // sigma = 0: the next point is the data prediction itself
      break;
    }
    const double lam = s >= 1 ? -INFINITY : std::log((1 - s) / s), lam_next = std::log((1 - s_next) / s_next);
    const double h = lam_next - lam;
    at::Tensor D = x0;
    if (x0_prev.defined() && std::isfinite(h) && h_prev > 0 && i + 1 < o.steps) {
      const double r = h_prev / h;
      D = (1 + 0.5 / r) * x0 - (0.5 / r) * x0_prev;
    }
    // x_{t} = (sigma_t / sigma_s) x_s - alpha_t (exp(-h) - 1) D, with sigma/alpha of the flow path.
    const double ratio = s_next / s, coeff = (1 - s_next) * (std::isfinite(h) ? -std::expm1(-h) : 1.0);
    x = ratio * x + coeff * D;
    x0_prev = x0;
    h_prev = std::isfinite(h) ? h : 0;
  }
  return x;
}

FlowVelocityFn classifier_free_guidance(const FlowVelocityFn& batched, const FlowVelocityFn& conditional, double w) {
  if (w == 1.0) return conditional;
  return [batched, w](const at::Tensor& x, const at::Tensor& s) {
    const at::Tensor v = batched(at::cat({x, x}), at::cat({s, s}));
    const auto halves = v.chunk(2, 0);
    return halves[0] + w * (halves[1] - halves[0]);
  };
}

}  // namespace sana
