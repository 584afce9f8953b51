// SanaTransformer2DModel against the diffusers reference fixtures (fp32, max abs error <= 1e-4), strict loading,
// dtype casting and the real 0.6B / 1.6B configurations.
#include <fstream>
#include <functional>
#include <set>

#include "sana/error.h"
#include "sana/models/sana_transformer.h"
#include "sana/nn/module_io.h"
#include "test_util.h"

using sana::test::fixture;

namespace {

constexpr double kTol = 1e-4;

// Case prefixes ("case0", "case1", ...) of an io.safetensors file: every name "<case>.output".
std::vector<std::string> cases_of(const sana::SafetensorsFile& io) {
  std::vector<std::string> out;
  for (const auto& [name, _] : io.tensors()) {
    const auto dot = name.rfind(".output");
    if (dot != std::string::npos && dot + 7 == name.size()) out.push_back(name.substr(0, dot));
  }
  return out;
}

sana::SanaTransformerInputs inputs_of(const sana::SafetensorsFile& io, const std::string& c) {
  sana::SanaTransformerInputs in;
  in.hidden_states = io.get(c + ".hidden_states");
  in.encoder_hidden_states = io.get(c + ".encoder_hidden_states");
  in.encoder_attention_mask = io.get(c + ".encoder_attention_mask");
  in.timestep = io.get(c + ".timestep");
  if (io.contains(c + ".guidance")) in.guidance = io.get(c + ".guidance");
  return in;
}

void check_fixture(const std::string& dir, at::ScalarType dtype, double tol) {
  auto model = sana::SanaTransformer2DModel::from_pretrained(fixture(dir), at::TensorOptions().dtype(dtype));
  auto io = sana::SafetensorsFile::open(fixture(dir + "/io.safetensors"));
  const auto cases = cases_of(*io);
  ASSERT_FALSE(cases.empty());
  for (const auto& c : cases) {
    SCOPED_TRACE(dir + " " + c);
    EXPECT_CLOSE(model->forward(inputs_of(*io, c)), io->get(c + ".output"), tol);
  }
}

using sana::test::error_of;

}  // namespace

TEST(SanaTransformer, SprintFixtureFp32) { check_fixture("transformer_sprint_tiny", at::kFloat, kTol); }

TEST(SanaTransformer, SanaFixtureFp32) { check_fixture("transformer_sana_tiny", at::kFloat, kTol); }

// Loading casts to the requested dtype: in float64 the result moves closer to the exact values, still within the
// fixture tolerance (the fixtures' README measured fp32-vs-fp64 differences of ~3e-6).
TEST(SanaTransformer, LoadsCastToFloat64) { check_fixture("transformer_sprint_tiny", at::kDouble, kTol); }

// bf16 weights and activations (linear attention still accumulates in fp32): a coarse agreement check.
TEST(SanaTransformer, RunsInBfloat16) {
  auto model = sana::SanaTransformer2DModel::from_pretrained(fixture("transformer_sprint_tiny"),
                                                             at::TensorOptions().dtype(at::kBFloat16));
  auto io = sana::SafetensorsFile::open(fixture("transformer_sprint_tiny/io.safetensors"));
  const at::Tensor out = model->forward(inputs_of(*io, "case0"));
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
  const at::Tensor ref = io->get("case0.output");
  const double err = sana::test::max_abs_diff(out, ref);
  EXPECT_LE(err, 0.1 * ref.abs().max().item<double>()) << err;
}

TEST(SanaTransformer, ControlNetResidualsAfterBlockK) {
  auto model = sana::SanaTransformer2DModel::from_pretrained(fixture("controlnet_tiny/transformer"), at::kFloat);
  auto io = sana::SafetensorsFile::open(fixture("controlnet_tiny/io.safetensors"));
  for (const auto& c : cases_of(*io)) {
    SCOPED_TRACE(c);
    sana::SanaTransformerInputs in = inputs_of(*io, c);
    EXPECT_CLOSE(model->forward(in), io->get(c + ".output_without_controlnet"), kTol);
    for (int i = 0; io->contains(c + ".controlnet_block_samples." + std::to_string(i)); ++i)
      in.controlnet_block_samples.push_back(io->get(c + ".controlnet_block_samples." + std::to_string(i)));
    ASSERT_FALSE(in.controlnet_block_samples.empty());
    EXPECT_CLOSE(model->forward(in), io->get(c + ".output"), kTol);
  }
}

TEST(SanaTransformer, StrictLoadingListsMissingUnexpectedAndMisshapen) {
  sana::test::TempDir dir;
  std::filesystem::copy_file(fixture("transformer_sprint_tiny/config.json"), dir.file("config.json"));
  const auto ckpt = sana::Checkpoint::open(fixture("transformer_sprint_tiny/diffusion_pytorch_model.safetensors"));
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  int64_t bias_size = 0;  // proj_out.bias as the fixture has it (its length comes from the config)
  for (const auto& name : ckpt.names()) {
    if (name == "transformer_blocks.1.attn2.norm_k.weight") continue;                      // missing
    at::Tensor t = ckpt.get(name);
    if (name == "proj_out.bias") bias_size = t.size(0), t = at::zeros({t.size(0) + 1});     // wrong shape
    tensors.emplace_back(name, t);
  }
  tensors.emplace_back("transformer_blocks.0.attn1.bogus.weight", at::zeros({2}));          // unexpected
  sana::save_safetensors(dir.file("diffusion_pytorch_model.safetensors"), tensors);

  const std::string msg = error_of([&] { sana::SanaTransformer2DModel::from_pretrained(dir.path().string(), at::kFloat); });
  EXPECT_NE(msg.find("diffusion_pytorch_model.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing 1 tensors: transformer_blocks.1.attn2.norm_k.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unexpected 1 tensors: transformer_blocks.0.attn1.bogus.weight"), std::string::npos) << msg;
  ASSERT_GT(bias_size, 0);
  const std::string misshapen = "proj_out.bias (checkpoint [" + std::to_string(bias_size + 1) + "], model [" +
                                std::to_string(bias_size) + "])";
  EXPECT_NE(msg.find(misshapen), std::string::npos) << msg;
}

// A Sprint checkpoint does not load into a plain SANA config (and vice versa): the names differ.
TEST(SanaTransformer, VariantMismatchIsAnError) {
  sana::test::TempDir dir;
  std::filesystem::copy_file(fixture("transformer_sana_tiny/config.json"), dir.file("config.json"));
  std::filesystem::copy_file(fixture("transformer_sprint_tiny/diffusion_pytorch_model.safetensors"),
                             dir.file("diffusion_pytorch_model.safetensors"));
  const std::string msg = error_of([&] { sana::SanaTransformer2DModel::from_pretrained(dir.path().string(), at::kFloat); });
  EXPECT_NE(msg.find("time_embed.emb.timestep_embedder.linear_1.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("time_embed.guidance_embedder"), std::string::npos) << msg;
}

TEST(SanaTransformer, BadInputsAreClearErrors) {
  auto model = sana::SanaTransformer2DModel::from_pretrained(fixture("transformer_sprint_tiny"), at::kFloat);
  auto io = sana::SafetensorsFile::open(fixture("transformer_sprint_tiny/io.safetensors"));
  auto in = inputs_of(*io, "case0");
  auto bad = in;
  const auto hs = in.hidden_states.sizes();
  bad.hidden_states = at::zeros({hs[0], hs[1] + 1, hs[2], hs[3]});
  const std::string channels = std::to_string(model->config().in_channels);
  EXPECT_NE(error_of([&] { model->forward(bad); }).find("hidden_states must be [B, " + channels + ", H, W]"),
            std::string::npos);
  bad = in;
  bad.guidance = at::Tensor();
  EXPECT_NE(error_of([&] { model->forward(bad); }).find("needs a guidance tensor"), std::string::npos);
  bad = in;
  const auto mask = in.encoder_attention_mask.sizes();
  bad.encoder_attention_mask = at::ones({mask[0], mask[1] + 1}, at::kLong);
  EXPECT_NE(error_of([&] { model->forward(bad); })
                .find("encoder_attention_mask must be [" + std::to_string(mask[0]) + ", " + std::to_string(mask[1]) + "]"),
            std::string::npos);
}

TEST(SanaTransformer, Real06BConfigParameterCountAndNames) {
  const auto cfg = sana::load_sana_transformer_config(
      fixture("configs/Sana_Sprint_0.6B_1024px_diffusers/transformer/config.json"));
  sana::SanaTransformer2DModel model(cfg, at::kFloat);
  EXPECT_EQ(sana::nn::count_parameters(model), 593501216);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [name, t] : sana::nn::state_dict(model)) shapes[name] = t.sizes().vec();
  EXPECT_EQ(shapes.at("transformer_blocks.27.attn1.norm_q.weight"), (std::vector<int64_t>{1152}));
  EXPECT_EQ(shapes.at("transformer_blocks.0.ff.conv_depth.weight"), (std::vector<int64_t>{5760, 1, 3, 3}));
  EXPECT_EQ(shapes.at("transformer_blocks.0.attn2.to_out.0.weight"), (std::vector<int64_t>{1152, 1152}));
  EXPECT_EQ(shapes.at("time_embed.guidance_embedder.linear_1.weight"), (std::vector<int64_t>{1152, 256}));
  EXPECT_EQ(shapes.at("time_embed.linear.weight"), (std::vector<int64_t>{6912, 1152}));
  EXPECT_EQ(shapes.at("patch_embed.proj.weight"), (std::vector<int64_t>{1152, 32, 1, 1}));

  // With random weights the full-size model runs (a 4x4 latent, 8 text tokens) and stays finite.
  sana::nn::init_random(model, 0);
  sana::SanaTransformerInputs in;
  in.hidden_states = at::randn({1, 32, 4, 4});
  in.encoder_hidden_states = at::randn({1, 8, 2304});
  in.encoder_attention_mask = at::ones({1, 8}, at::kLong);
  in.timestep = at::tensor({0.5f});
  in.guidance = at::tensor({0.45f});
  const at::Tensor out = model.forward(in);
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{1, 32, 4, 4}));
  EXPECT_TRUE(at::isfinite(out).all().item<bool>());
}

TEST(SanaTransformer, Real16BConfigParameterCount) {
  const auto cfg = sana::load_sana_transformer_config(
      fixture("configs/Sana_Sprint_1.6B_1024px_diffusers/transformer/config.json"));
  sana::SanaTransformer2DModel model(cfg, at::kFloat);  // uninitialised storage: never touched, so cheap
  EXPECT_EQ(sana::nn::count_parameters(model), 1610237472);
  EXPECT_EQ(model.transformer_blocks->size(), 20u);
  EXPECT_EQ((*model.transformer_blocks)[19].attn2->to_k->weight.sizes(), (std::vector<int64_t>{2240, 2240}));
}
