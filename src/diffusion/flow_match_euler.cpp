// diffusers FlowMatchEulerDiscreteScheduler (static shift), step for step (flow_scheduler.h).
#include <cmath>

#include "sana/diffusion/flow_scheduler.h"
#include "sana/error.h"

namespace sana {
namespace {

class FlowMatchEuler : public FlowScheduler {
 public:
  explicit FlowMatchEuler(const FlowSchedulerConfig& c) : c_(c) {
    // The training schedule: t = N..1, sigma = t / N shifted, in float32; its ends bound the sampling schedule.
    const int64_t N = c.num_train_timesteps;
    const at::Tensor t = at::linspace(1, static_cast<double>(N), N, at::kFloat).flip(0);
    const at::Tensor s = t / static_cast<double>(N);
    const at::Tensor shifted = c.shift * s / (1 + (c.shift - 1) * s);
    sigma_max_ = shifted[0].item<double>();
    sigma_min_ = shifted[N - 1].item<double>();
  }

  void set_timesteps(int steps) override {
    if (steps < 1) throw Error("steps must be at least 1, got " + std::to_string(steps));
    const double N = c_.num_train_timesteps;
    std::vector<double> sigmas = numpy_linspace(sigma_max_ * N, sigma_min_ * N, steps);
    for (double& s : sigmas) {
      s /= N;
      s = c_.shift * s / (1 + (c_.shift - 1) * s);
    }
    const at::Tensor s32 = at::tensor(sigmas, at::kDouble).to(at::kFloat);
    timesteps_ = s32 * N;
    sigmas_ = at::cat({s32, at::zeros({1}, at::kFloat)});
  }

  at::Tensor step(const at::Tensor& v, int i, const at::Tensor& x) override {
    const at::Tensor dt = sigmas_[i + 1] - sigmas_[i];
    return (x.to(at::kFloat) + dt * v).to(v.scalar_type());
  }

  std::string solver() const override { return "euler"; }

 private:
  FlowSchedulerConfig c_;
  double sigma_max_ = 1, sigma_min_ = 0;
};

}  // namespace

std::unique_ptr<FlowScheduler> make_flow_match_euler(const FlowSchedulerConfig& config) {
  return std::make_unique<FlowMatchEuler>(config);
}

}  // namespace sana
