// SanaControlNetModel against the diffusers fixture: every block residual and the transformer's output with them
// (<= 1e-4), cases taken from the fixture file; and the model-level rules around it (fit checks, config text).
#include <filesystem>
#include <set>

#include "sana/error.h"
#include "sana/io/config.h"
#include "sana/models/sana_controlnet.h"
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
