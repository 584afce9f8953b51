// diffusers DPMSolverMultistepScheduler with flow sigmas (dpmsolver++, midpoint, order <= 2), step for step
// (flow_scheduler.h). With alpha_s = 1 - s and sigma_s = s, lambda = log(alpha / sigma), h = lambda' - lambda:
//   first order:  x' = (sigma' / sigma) x - alpha' (e^-h - 1) x0
//   second order: x' = (sigma' / sigma) x - alpha' (e^-h - 1) (D0 + D1 / 2),  D0 = x0, D1 = (x0 - x0_prev) h / h_prev
// where x0 = x - s v is the data prediction. The coefficients are float32 scalars, as diffusers computes them.
#include "sana/diffusion/flow_scheduler.h"
#include "sana/error.h"

namespace sana {
namespace {

class DPMSolverFlow : public FlowScheduler {
 public:
  explicit DPMSolverFlow(const FlowSchedulerConfig& c) : c_(c) {}

  void set_timesteps(int steps) override {
    if (steps < 1) throw Error("steps must be at least 1, got " + std::to_string(steps));
    const double N = c_.num_train_timesteps;
    const std::vector<double> alphas = numpy_linspace(1, 1.0 / N, steps + 1);
    std::vector<double> sigmas;  // decreasing: the flipped shifted sigmas, without the final one
    for (int i = steps; i >= 1; --i) {
      const double s = 1.0 - alphas[i];
      sigmas.push_back(c_.shift * s / (1 + (c_.shift - 1) * s));
    }
    std::vector<int64_t> t;
    for (double s : sigmas) t.push_back(static_cast<int64_t>(s * N));  // numpy's astype(int64) truncates
    sigmas.push_back(0.0);  // final_sigmas_type "zero"
    sigmas_ = at::tensor(sigmas, at::kDouble).to(at::kFloat);
    timesteps_ = at::tensor(t, at::kLong);
    x0_history_.clear();
    lower_order_nums_ = 0;
  }

  at::Tensor step(const at::Tensor& v, int i, const at::Tensor& x) override {
    const int n = num_steps();
    const bool last = i == n - 1;
    const bool lower_order_final = last && (c_.euler_at_final || (c_.lower_order_final && n < 15) ||
                                            c_.final_sigmas_type == "zero");
    const at::Tensor x0 = x - sigmas_[i] * v;  // flow_prediction -> data prediction
    x0_history_.push_back(x0);
    if (static_cast<int>(x0_history_.size()) > c_.solver_order) x0_history_.erase(x0_history_.begin());
    const at::Tensor sample = x.to(at::kFloat);
    // With order <= 2 every other case is the second-order update.
    const at::Tensor next = c_.solver_order == 1 || lower_order_nums_ < 1 || lower_order_final
                                ? first_order(x0, i, sample)
                                : second_order(i, sample);
    if (lower_order_nums_ < c_.solver_order) ++lower_order_nums_;
    return next.to(v.scalar_type());
  }

  std::string solver() const override { return "dpm++2m"; }

 private:
  // alpha, sigma and lambda of sigmas[i] as float32 scalars.
  struct Point {
    at::Tensor alpha, sigma, lambda;
  };
  Point point(int i) const {
    Point p;
    p.sigma = sigmas_[i];
    p.alpha = 1 - p.sigma;
    p.lambda = at::log(p.alpha) - at::log(p.sigma);
    return p;
  }

  at::Tensor first_order(const at::Tensor& x0, int i, const at::Tensor& sample) const {
    const Point t = point(i + 1), s = point(i);
    const at::Tensor h = t.lambda - s.lambda;
    return (t.sigma / s.sigma) * sample - (t.alpha * (at::exp(-h) - 1.0)) * x0;
  }

  at::Tensor second_order(int i, const at::Tensor& sample) const {
    const Point t = point(i + 1), s0 = point(i), s1 = point(i - 1);
    const at::Tensor& m0 = x0_history_.back();
    const at::Tensor& m1 = x0_history_[x0_history_.size() - 2];
    const at::Tensor h = t.lambda - s0.lambda, h_0 = s0.lambda - s1.lambda;
    const at::Tensor r0 = h_0 / h;
    const at::Tensor D0 = m0, D1 = (at::reciprocal(r0) * 1.0) * (m0 - m1);
    return (t.sigma / s0.sigma) * sample - (t.alpha * (at::exp(-h) - 1.0)) * D0 -
           0.5 * (t.alpha * (at::exp(-h) - 1.0)) * D1;
  }

  FlowSchedulerConfig c_;
  std::vector<at::Tensor> x0_history_;
  int lower_order_nums_ = 0;
};

}  // namespace

std::unique_ptr<FlowScheduler> make_dpm_solver(const FlowSchedulerConfig& config) {
  return std::make_unique<DPMSolverFlow>(config);
}

}  // namespace sana
