// The TrigFlow wrapper: exact identities of the flow -> TrigFlow map, and the reference pipeline's per-step x0
// predictions reproduced through the wrapper around the fixture's SANA-Sprint transformer.
#include <cmath>
#include <set>

#include "sana/diffusion/flow_scheduler.h"
#include "sana/diffusion/trigflow.h"
#include "test_util.h"

using sana::test::fixture;

// With the ideal flow velocity v = eps - x0 the wrapper must see x_s = (1-s) x0 + s eps and return exactly the ideal
// TrigFlow output F = cos t eps - sin t x0 (docs/ARCHITECTURE.md, "TrigFlow"), in float64 to rounding error.
TEST(TrigFlow, IdealFlowVelocityGivesIdealTrigFlowOutput) {
  at::manual_seed(0);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor x0 = at::randn({4, 3, 5, 5}, f64), eps = at::randn({4, 3, 5, 5}, f64);
  const at::Tensor t = at::tensor({0.05, 0.6, 1.2, 1.5707}, f64);
  const at::Tensor tv = t.view({-1, 1, 1, 1});
  const at::Tensor x_hat = at::cos(tv) * x0 + at::sin(tv) * eps;  // x_t / sigma_d

  double worst_input = 0;
  const at::Tensor F = sana::trigflow_from_flow(
      [&](const at::Tensor& x_s, const at::Tensor& s) {
        const at::Tensor sv = s.view({-1, 1, 1, 1});
        worst_input = sana::test::max_abs_diff(x_s, (1 - sv) * x0 + sv * eps);
        return eps - x0;
      },
      x_hat, t);
  EXPECT_LE(worst_input, 1e-12);
  EXPECT_CLOSE(F, at::cos(tv) * eps - at::sin(tv) * x0, 1e-12);
  // ... and x0 prediction from the TrigFlow output recovers x0: cos t x_t - sin t sigma_d F = sigma_d x0.
  const double sigma_d = 0.5;
  EXPECT_CLOSE(sana::trigflow_predict_x0(sigma_d * x_hat, t, F, sigma_d), sigma_d * x0, 1e-12);
}

TEST(TrigFlow, TimeMapValues) {
  // Values of the time map at chosen points.
  const at::Tensor t = at::tensor({1.5708, 1.3, 1.0, M_PI / 4}, at::kDouble);
  const at::Tensor s = sana::trigflow_to_flow_time(t);
  EXPECT_NEAR(s[0].item<double>(), 1.0, 1e-5);
  EXPECT_NEAR(s[1].item<double>(), 0.78271, 1e-5);
  EXPECT_NEAR(s[2].item<double>(), 0.60898, 1e-5);
  EXPECT_NEAR(s[3].item<double>(), 0.5, 1e-12);
}

// The SanaSprintPipeline fixture stores, per step, the transformer's input and timestep and the scheduler's x0
// ("denoised"). Through SanaTrigFlow the same x0 must come out of the step's starting latent.
TEST(TrigFlow, ReproducesPipelineStepPredictions) {
  const double sigma_d = 0.5;
  auto model = sana::SanaTransformer2DModel::from_pretrained(fixture("pipeline_sprint_tiny/transformer"), at::kFloat);
  const sana::SanaTrigFlow trig(model);
  auto ref = sana::SafetensorsFile::open(fixture("pipeline_sprint_tiny/expected.safetensors"));
  std::set<std::string> cases;
  for (const auto& [name, _] : ref->tensors()) cases.insert(name.substr(0, name.find('.')));
  ASSERT_FALSE(cases.empty());
  for (const auto& c : cases) {
    const at::Tensor timesteps = ref->get(c + ".timesteps");
    sana::SanaTransformerInputs cond;
    cond.encoder_hidden_states = ref->get(c + ".prompt_embeds");
    cond.encoder_attention_mask = ref->get(c + ".prompt_attention_mask");
    cond.guidance = ref->get(c + ".guidance");
    at::Tensor x = ref->get(c + ".initial_noise") * sigma_d;
    for (int64_t i = 0; i + 1 < timesteps.size(0); ++i) {
      SCOPED_TRACE(c + " step " + std::to_string(i));
      const std::string step = c + ".step" + std::to_string(i);
      const at::Tensor t = timesteps[i].expand({x.size(0)});
      EXPECT_CLOSE(sana::trigflow_to_flow_time(t), ref->get(step + ".transformer_timestep"), 1e-6);
      const at::Tensor F = trig.forward(x / sigma_d, t, cond);
      EXPECT_CLOSE(sana::trigflow_predict_x0(x, t, F, sigma_d), ref->get(step + ".denoised"), 1e-4);
      x = ref->get(step + ".prev_sample");  // the next step starts from the reference latent
    }
  }
}

namespace {

// A flow model: the tiny SANA teacher fixture (no guidance embedding) with fixed text, in float64.
struct FlowTeacher {
  std::shared_ptr<sana::SanaTransformer2DModel> model =
      sana::SanaTransformer2DModel::from_pretrained(sana::test::fixture("transformer_sana_tiny"), at::kDouble);
  std::shared_ptr<const sana::SafetensorsFile> io =
      sana::SafetensorsFile::open(sana::test::fixture("transformer_sana_tiny/io.safetensors"));
  sana::FlowVelocityFn velocity = [this](const at::Tensor& x_s, const at::Tensor& s) {
    sana::SanaTransformerInputs in;
    in.hidden_states = x_s;
    in.encoder_hidden_states = io->get("case0.encoder_hidden_states").to(at::kDouble);
    in.encoder_attention_mask = io->get("case0.encoder_attention_mask");
    in.timestep = s;
    return model->forward(in);
  };
  // A tensor of the fixture's latent shape (batch, channels, size), for noise.
  at::Tensor latent_like() const { return io->get("case0.hidden_states").to(at::kDouble); }
};

}  // namespace

// Training-free transform (docs/ARCHITECTURE.md, "TrigFlow"): the TrigFlow view of a flow model predicts the same x0 as the flow
// model at matched times: x0_flow = x_s - s v(x_s, s) with x_s = x_hat / (sin t + cos t), s = sin t / (sin t + cos t).
TEST(TrigFlow, SameX0PredictionAsTheFlowModel) {
  FlowTeacher teacher;
  at::manual_seed(5);
  const double sd = 0.5;
  const at::Tensor x_t = at::randn_like(teacher.latent_like()) * sd;
  const at::Tensor t = at::linspace(0.35, 1.25, x_t.size(0), at::kDouble);
  const at::Tensor F = sana::trigflow_from_flow(teacher.velocity, x_t / sd, t);
  const at::Tensor x0_trig = sana::trigflow_predict_x0(x_t, t, F, sd) / sd;  // in unit-variance units
  const at::Tensor s = sana::trigflow_to_flow_time(t);
  const at::Tensor x_s = x_t / sd / (at::sin(t) + at::cos(t)).view({-1, 1, 1, 1});
  const at::Tensor x0_flow = x_s - s.view({-1, 1, 1, 1}) * teacher.velocity(x_s, s);
  EXPECT_CLOSE(x0_trig, x0_flow, 1e-10);
}

// ... and a first-order TrigFlow ODE solver on the wrapped model retraces the flow Euler sampler at matched times,
// so both give the same image.
TEST(TrigFlow, OdeSamplerMatchesFlowEuler) {
  FlowTeacher teacher;
  at::manual_seed(6);
  const double sd = 0.5;
  const at::Tensor noise = at::randn_like(teacher.latent_like());
  const int steps = 6;
  // The flow Euler scheduler's times s_i (diffusers' schedule, shift 1) and the matched TrigFlow times
  // t_i = atan(s_i / (1 - s_i)) (t = pi/2 at s = 1). The scheduler starts from the noise at s_0 = 1.
  const auto euler = sana::FlowScheduler::create(sana::FlowSchedulerConfig{});
  const at::Tensor flow = euler->sample(teacher.velocity, noise, steps);
  std::vector<double> ts;
  for (int i = 0; i <= steps; ++i) {
    const double s = euler->sigmas()[i].item<double>();
    ts.push_back(s >= 1 ? M_PI / 2 : std::atan(s / (1 - s)));
  }
  const sana::TrigFlowFn F = [&](const at::Tensor& x_hat, const at::Tensor& t) {
    return sana::trigflow_from_flow(teacher.velocity, x_hat, t);
  };
  // At t = pi/2, x_t = sigma_d * noise; at t = 0 the TrigFlow latent is sigma_d * x0.
  const at::Tensor trig = sana::sample_trigflow_ode(F, sd * noise, at::tensor(ts, at::kDouble), sd) / sd;
  EXPECT_CLOSE(trig, flow, 1e-6);  // the schedule is float32; the rest float64
}
