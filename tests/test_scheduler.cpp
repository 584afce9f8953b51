// SCMScheduler against the diffusers fixture: schedules for 1, 2, 4 steps and one step with the reference's noise.
#include "sana/diffusion/scm_scheduler.h"
#include "sana/error.h"
#include "test_util.h"

#include <ATen/CPUGeneratorImpl.h>

using sana::test::fixture;

TEST(SCMScheduler, MatchesDiffusersFixture) {
  auto io = sana::SafetensorsFile::open(fixture("scheduler/io.safetensors"));
  const auto cfg = sana::load_scm_scheduler_config(fixture("scheduler/scheduler_config.json"));
  std::vector<int> step_counts;  // the recorded cases: "steps<N>.timesteps"
  for (const auto& [name, info] : io->tensors())
    if (name.rfind("steps", 0) == 0 && name.size() > 11 && name.substr(name.size() - 10) == ".timesteps")
      step_counts.push_back(std::stoi(name.substr(5, name.size() - 15)));
  ASSERT_FALSE(step_counts.empty());
  for (int n : step_counts) {
    SCOPED_TRACE("steps " + std::to_string(n));
    const std::string p = "steps" + std::to_string(n) + ".";
    sana::SCMScheduler sched(cfg);
    sana::SCMTimestepOptions opt;
    opt.steps = n;
    if (n == 2) opt.intermediate_timesteps = 1.3;  // the pipeline default, legal for 2 steps only
    sched.set_timesteps(opt);
    EXPECT_TRUE(at::equal(sched.timesteps(), io->get(p + "timesteps"))) << sched.timesteps();

    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(io->get(p + "step_generator_seed").item<int64_t>());
    const auto [prev, x0] = sched.step(io->get(p + "model_output"), 0, io->get(p + "sample"), gen);
    EXPECT_CLOSE(x0, io->get(p + "pred_original_sample"), 1e-6);
    EXPECT_CLOSE(prev, io->get(p + "prev_sample"), 1e-6);
  }
}

TEST(SCMScheduler, CustomAndInvalidSchedules) {
  sana::SCMScheduler sched;
  sana::SCMTimestepOptions opt;
  opt.steps = 3;
  opt.timesteps = {1.5, 1.0, 0.5, 0.0};
  EXPECT_TRUE(at::allclose(sched.set_timesteps(opt), at::tensor({1.5f, 1.0f, 0.5f, 0.0f})));
  opt.timesteps = {1.5, 0.0};
  EXPECT_THROW(sched.set_timesteps(opt), sana::Error);
  opt.timesteps = {1.0, 1.2, 0.5, 0.0};
  EXPECT_THROW(sched.set_timesteps(opt), sana::Error);
  opt.timesteps.clear();
  opt.steps = 0;
  EXPECT_THROW(sched.set_timesteps(opt), sana::Error);
  // An intermediate time only shapes 2-step schedules; 4 steps stay linspace (the reference raises instead).
  opt.steps = 4;
  opt.intermediate_timesteps = 1.3;
  EXPECT_TRUE(at::allclose(sched.set_timesteps(opt), at::linspace(1.5708, 0.0, 5, at::kFloat)));
}
