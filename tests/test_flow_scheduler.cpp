// The teachers' flow schedulers: against closed-form flows (a point mass, where both solvers are exact, and a
// Gaussian, where the ODE solution is known), against the schedules diffusers stores in the fixtures, and the config
// parsing real SANA folders need (-Infinity in the JSON, unsupported settings named).
#include <cmath>

#include "sana/diffusion/flow_scheduler.h"
#include "sana/error.h"
#include "sana/io/config.h"
#include "test_util.h"

using sana::FlowScheduler;
using sana::FlowSchedulerConfig;

namespace {

using Velocity = std::function<at::Tensor(const at::Tensor&, const at::Tensor&)>;

// Data N(mu, sd^2) per element, noise N(0, 1): the exact flow velocity E[eps - x0 | x_s].
Velocity gaussian_velocity(double mu, double sd) {
  return [mu, sd](const at::Tensor& x, const at::Tensor& s_) {
    const at::Tensor s = s_.to(at::kDouble).view({-1, 1});
    const at::Tensor V = (1 - s).pow(2) * sd * sd + s.pow(2);
    const at::Tensor centered = x - (1 - s) * mu;
    const at::Tensor e_x0 = mu + (1 - s) * sd * sd / V * centered;
    const at::Tensor e_eps = s / V * centered;
    return e_eps - e_x0;
  };
}

FlowSchedulerConfig config(const std::string& cls, double shift) {
  FlowSchedulerConfig c;
  c.class_name = cls;
  c.shift = shift;
  return c;
}

}  // namespace

TEST(FlowScheduler, PointMassIsExact) {
  const at::Tensor target = at::tensor({0.3, -1.2, 2.0}, at::kDouble).view({1, 3});
  // For data = one point the velocity is (x - x0) / s, constant along each straight path.
  const Velocity v = [&](const at::Tensor& x, const at::Tensor& s) {
    return (x - target) / s.to(at::kDouble).view({-1, 1});
  };
  at::manual_seed(0);
  const at::Tensor noise = at::randn({1, 3}, at::kDouble);
  for (const char* cls : {"FlowMatchEulerDiscreteScheduler", "DPMSolverMultistepScheduler"})
    for (double shift : {1.0, 3.0})
      for (int steps : {1, 3, 8}) {
        SCOPED_TRACE(std::string(cls) + " shift " + std::to_string(shift) + " steps " + std::to_string(steps));
        // The samplers step in float32, as diffusers does.
        EXPECT_CLOSE(FlowScheduler::create(config(cls, shift))->sample(v, noise, steps), target, 1e-5);
      }
}

TEST(FlowScheduler, GaussianConvergence) {
  const double mu = 0.7, sd = 0.4;
  at::manual_seed(1);
  const at::Tensor noise = at::randn({1, 64}, at::kDouble);
  const at::Tensor exact = mu + sd * noise;  // the ODE maps standard noise z to mu + sd z
  auto err = [&](const char* cls, int steps) {
    const auto s = FlowScheduler::create(config(cls, 1.0));
    return sana::test::max_abs_diff(s->sample(gaussian_velocity(mu, sd), noise, steps), exact);
  };
  // Euler is first order: doubling the steps roughly halves the error.
  const double e16 = err("FlowMatchEulerDiscreteScheduler", 16), e32 = err("FlowMatchEulerDiscreteScheduler", 32);
  EXPECT_GT(e16 / e32, 1.6);
  EXPECT_LT(e16 / e32, 2.5);
  // DPM-Solver++(2M) converges and is far more accurate at equal steps.
  const double d16 = err("DPMSolverMultistepScheduler", 16), d64 = err("DPMSolverMultistepScheduler", 64);
  EXPECT_LT(d64, d16 / 2);
  EXPECT_LT(d16, e16 / 5);
}

// diffusers' schedules, as the fixtures store them: flow Euler timesteps float (sigma * 1000, from a linspace that
// ends at the shifted 1/1000), DPM-Solver timesteps int64 (truncated), both for shift 3.
TEST(FlowScheduler, SchedulesOfTheFixtureFolders) {
  const std::pair<const char*, const char*> folders[] = {{"pipeline_sana_euler_tiny", "float"},
                                                         {"pipeline_sana_tiny", "int64"}};
  for (const auto& [folder, type] : folders) {
    SCOPED_TRACE(folder);
    const auto cfg = sana::load_flow_scheduler_config(sana::test::fixture(std::string(folder) + "/scheduler/scheduler_config.json"));
    EXPECT_EQ(cfg.shift, 3.0);
    const auto s = FlowScheduler::create(cfg);
    const auto ref = sana::SafetensorsFile::open(sana::test::fixture(std::string(folder) + "/expected.safetensors"));
    for (const auto& [name, text] : ref->metadata()) {
      if (name == "format") continue;
      const at::Tensor expected = ref->get(name + ".timesteps");
      s->set_timesteps(static_cast<int>(expected.size(0)));
      EXPECT_EQ(s->timesteps().scalar_type(), expected.scalar_type()) << type;
      EXPECT_TRUE(at::equal(s->timesteps(), expected)) << s->timesteps() << expected;
      EXPECT_EQ(s->sigmas()[-1].item<float>(), 0.0f);
    }
  }
}

TEST(FlowScheduler, ConfigsAsDiffusersWritesThem) {
  // -Infinity (lambda_min_clipped in every real SANA DPM-Solver config) is accepted.
  const auto c = sana::parse_flow_scheduler_config(
      R"({"_class_name": "DPMSolverMultistepScheduler", "flow_shift": 3.0, "use_flow_sigmas": true,
          "lambda_min_clipped": -Infinity, "prediction_type": "flow_prediction", "variance_type": null})", "mem");
  EXPECT_EQ(c.shift, 3.0);
  auto error_of = [](const std::string& text) {
    try {
      sana::parse_flow_scheduler_config(text, "sched.json");
    } catch (const sana::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error_of(R"({"_class_name": "DPMSolverMultistepScheduler", "use_flow_sigmas": true,
                         "algorithm_type": "sde-dpmsolver++"})").find("algorithm_type"), std::string::npos);
  EXPECT_NE(error_of(R"({"_class_name": "FlowMatchEulerDiscreteScheduler", "use_dynamic_shifting": true})")
                .find("use_dynamic_shifting"), std::string::npos);
  EXPECT_NE(error_of(R"({"_class_name": "DDIMScheduler"})").find("DDIMScheduler"), std::string::npos);
  EXPECT_NE(error_of(R"({"_class_name": "DPMSolverMultistepScheduler"})").find("use_flow_sigmas"), std::string::npos);
  EXPECT_THROW(FlowScheduler::create(FlowSchedulerConfig{}, "heun"), sana::Error);
  EXPECT_EQ(FlowScheduler::create(FlowSchedulerConfig{}, "dpm++2m")->solver(), "dpm++2m");
}
