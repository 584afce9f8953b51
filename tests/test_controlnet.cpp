// SanaControlNetModel against the diffusers fixture: every block residual and the transformer's output with them
// (<= 1e-4), cases taken from the fixture file; and the model-level rules around it (fit checks, config text).
#include <ATen/core/grad_mode.h>
#include <filesystem>
#include <set>

#include "sana/error.h"
#include "sana/io/config.h"
#include "sana/io/image.h"
#include "sana/models/sana_controlnet.h"
#include "sana/pipeline/sana_sprint.h"
#include <c10/core/InferenceMode.h>
#include "test_util.h"

using sana::test::fixture;

namespace {

// Case prefixes ("case0", ...) of a fixture's io file.
std::set<std::string> cases_of(const sana::SafetensorsFile& io) {
  std::set<std::string> out;
  for (const auto& [name, info] : io.tensors()) out.insert(name.substr(0, name.find('.')));
  return out;
}

}  // namespace

TEST(ControlNet, ReproducesTheReferenceResidualsAndOutput) {
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  const auto controlnet = sana::SanaControlNetModel::from_pretrained(fixture("controlnet_tiny/controlnet"), opts);
  const auto transformer = sana::SanaTransformer2DModel::from_pretrained(fixture("controlnet_tiny/transformer"), opts);
  const auto io = sana::SafetensorsFile::open(fixture("controlnet_tiny/io.safetensors"));
  const auto cases = cases_of(*io);
  ASSERT_FALSE(cases.empty());
  at::NoGradGuard no_grad;
  for (const auto& c : cases) {
    SCOPED_TRACE(c);
    sana::SanaTransformerInputs in;
    in.hidden_states = io->get(c + ".hidden_states");
    in.encoder_hidden_states = io->get(c + ".encoder_hidden_states");
    in.encoder_attention_mask = io->get(c + ".encoder_attention_mask");
    in.timestep = io->get(c + ".timestep");
    const double scale = io->get(c + ".conditioning_scale").item<double>();
    const auto residuals = controlnet->forward(in, io->get(c + ".controlnet_cond"), scale);
    ASSERT_EQ(static_cast<int>(residuals.size()), controlnet->config().num_layers);
    for (size_t i = 0; i < residuals.size(); ++i)
      EXPECT_CLOSE(residuals[i], io->get(c + ".controlnet_block_samples." + std::to_string(i)), 1e-4);
    EXPECT_CLOSE(transformer->forward(in), io->get(c + ".output_without_controlnet"), 1e-4);
    in.controlnet_block_samples = residuals;
    EXPECT_CLOSE(transformer->forward(in), io->get(c + ".output"), 1e-4);
  }
}

TEST(ControlNet, FitChecksNameTheMismatch) {
  const auto t = sana::load_sana_transformer_config(fixture("controlnet_tiny/transformer/config.json"));
  const auto c = sana::load_sana_controlnet_config(fixture("controlnet_tiny/controlnet/config.json"));
  EXPECT_NO_THROW(sana::check_controlnet_fits(c, t, "cn"));
  auto wide = c;
  wide.attention_head_dim *= 2;
  auto deep = c;
  deep.num_layers = t.num_layers + 1;
  auto sprint = c;
  sprint.guidance_embeds = true;
  for (const auto& [bad, key] : {std::pair{wide, "inner dim"}, {deep, "num_layers"}, {sprint, "guidance_embeds"}}) {
    try {
      sana::check_controlnet_fits(bad, t, "controlnet/");
      ADD_FAILURE() << key;
    } catch (const sana::Error& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("controlnet/"), std::string::npos) << e.what();
    }
  }
  // A transformer config is not a ControlNet config.
  EXPECT_THROW(sana::load_sana_controlnet_config(fixture("controlnet_tiny/transformer/config.json")), sana::Error);
}

// The config we write for a Sprint ControlNet reads back with the transformer's blocks and embeddings.
TEST(ControlNet, SprintConfigCarriesQkNormAndGuidance) {
  auto t = sana::load_sana_transformer_config(fixture("transformer_sprint_tiny/config.json"));
  const auto c = sana::parse_sana_controlnet_config(sana::controlnet_config_for(t, 1), "generated");
  EXPECT_EQ(c.num_layers, 1);
  EXPECT_TRUE(c.guidance_embeds);
  EXPECT_EQ(c.qk_norm, t.qk_norm);
  EXPECT_NO_THROW(sana::check_controlnet_fits(c, t, "generated"));
}

namespace {

sana::GenerateOptions sprint_options(int steps) {
  sana::GenerateOptions o;
  o.prompts = {"a red circle above a blue square"};
  o.height = o.width = 32;
  o.steps = steps;
  o.seed = 3;
  o.resolution_binning = false;
  if (steps == 2) o.intermediate_timesteps = 1.3;
  o.control_image = sana::load_png(fixture("pipeline_sana_controlnet_tiny/control0.png"));
  return o;
}

}  // namespace

// A ControlNet made from the Sprint student (its first blocks, zero projections) leaves every image unchanged, at
// 1, 2 and 4 steps: the starting point of ControlNet training.
TEST(SprintControlNet, FreshCopyLeavesTheImageUnchanged) {
  auto pipe = sana::SanaSprintPipeline::from_pretrained(fixture("pipeline_sprint_tiny"), at::kCPU, at::kFloat);
  for (int steps : {1, 2, 4}) {
    auto o = sprint_options(steps);
    const at::Tensor control_image = o.control_image;
    o.control_image = at::Tensor();
    const at::Tensor plain = pipe.generate(o).images;
    pipe.components.controlnet = sana::controlnet_from_transformer(*pipe.components.transformer, 1);
    o.control_image = control_image;
    EXPECT_TRUE(at::equal(pipe.generate(o).images, plain)) << steps << " steps";
    pipe.components.controlnet.reset();
  }
}

// The Sprint ControlNet runs inside the TrigFlow view: at each evaluation it sees the flow-space latent x_s, the
// flow time s and the guidance the backbone sees. Checked on the first step with a ControlNet whose projections are
// not zero, against the change of variables written out.
TEST(SprintControlNet, EvaluatedInsideTheTrigFlowView) {
  auto pipe = sana::SanaSprintPipeline::from_pretrained(fixture("pipeline_sprint_tiny"), at::kCPU, at::kFloat);
  auto cn = sana::controlnet_from_transformer(*pipe.components.transformer, 2);
  {
    at::NoGradGuard no_grad;
    at::manual_seed(4);
    for (auto& p : cn->named_parameters())
      if (p.key().find("input_block") == 0 || p.key().find("controlnet_blocks") == 0)
        p.value().copy_(at::randn(p.value().sizes()) * 0.2);
  }
  pipe.components.controlnet = cn;
  auto o = sprint_options(1);
  o.record_steps = true;
  o.controlnet_conditioning_scale = 0.8;
  const auto r = pipe.generate(o);
  c10::InferenceMode guard;
  const at::Tensor x_hat = r.steps[0].model_input, t = r.steps[0].timestep;
  const at::Tensor s = at::sin(t) / (at::sin(t) + at::cos(t));
  const at::Tensor sv = s.view({-1, 1, 1, 1}), norm = at::sqrt(sv * sv + (1 - sv) * (1 - sv));
  sana::SanaTransformerInputs in;
  in.hidden_states = x_hat * norm;
  in.timestep = s;
  in.encoder_hidden_states = r.prompt_embeds;
  in.encoder_attention_mask = r.prompt_attention_mask;
  in.guidance = at::full({1}, 4.5 * pipe.components.transformer->config().guidance_embeds_scale);
  in.controlnet_block_samples = cn->forward(in, r.control_latents, 0.8);
  const at::Tensor v = pipe.components.transformer->forward(in);
  const at::Tensor F = ((1 - 2 * sv) * in.hidden_states + (1 - 2 * sv + 2 * sv * sv) * v) / norm;
  EXPECT_CLOSE(r.steps[0].model_output, F, 1e-5);
  // ... and the control changes the image.
  o.control_image = at::Tensor();
  EXPECT_GT(sana::test::max_abs_diff(pipe.generate(o).images, r.images), 1e-3);
}
