// The tiny preview decoder (AutoencoderTiny's decoder): diffusers' parameter names, the published TAESANA layout,
// the forward pass against its closed form, config and folder errors, and the shipped shapes decoders against the
// full DC-AE decoder.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <cmath>
#include <fstream>
#include <map>

#include "sana/error.h"
#include "sana/models/autoencoder_tiny.h"
#include "sana/nn/module_io.h"
#include "sana/pipeline/pipeline.h"
#include "test_util.h"

namespace {

using sana::test::error_of;
using sana::test::TempDir;

std::map<std::string, std::vector<int64_t>> shapes_of(const sana::AutoencoderTinyConfig& cfg) {
  sana::AutoencoderTiny model(cfg, at::TensorOptions(at::kFloat));
  std::map<std::string, std::vector<int64_t>> out;
  for (const auto& [name, t] : sana::nn::state_dict(model)) out[name] = t.sizes().vec();
  return out;
}

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// diffusers' AutoencoderTiny() decoder, by the indices of its nn.Sequential: conv_in 0, ReLU 1, blocks 2-4, Upsample 5,
// conv 6 (no bias), blocks 7-9, Upsample 10, conv 11, blocks 12-14, Upsample 15, conv 16, block 17, conv_out 18.
TEST(AutoencoderTiny, DefaultConfigHasDiffusersNames) {
  const auto names = shapes_of({});
  std::map<std::string, std::vector<int64_t>> expected = {
      {"decoder.layers.0.weight", {64, 4, 3, 3}}, {"decoder.layers.0.bias", {64}},
      {"decoder.layers.6.weight", {64, 64, 3, 3}}, {"decoder.layers.11.weight", {64, 64, 3, 3}},
      {"decoder.layers.16.weight", {64, 64, 3, 3}}, {"decoder.layers.18.weight", {3, 64, 3, 3}},
      {"decoder.layers.18.bias", {3}}};
  for (int block : {2, 3, 4, 7, 8, 9, 12, 13, 14, 17})
    for (int conv : {0, 2, 4}) {
      const std::string p = "decoder.layers." + std::to_string(block) + ".conv." + std::to_string(conv);
      expected[p + ".weight"] = {64, 64, 3, 3};
      expected[p + ".bias"] = {64};
    }
  EXPECT_EQ(names, expected);
}

// madebyollin's F32Decoder for TAESANA (taesd.py): its Sequential starts with a parameter-free Clamp, so its index k is
// our k - 1. Five upsamplings (its entries 6, 11, 16, 21, 26); channels 256 -> 128 -> 64; 3, 3, 3, 3, 3, 1 blocks.
TEST(AutoencoderTiny, TaesanaLayoutIsItsDecoderShiftedByOne) {
  sana::AutoencoderTinyConfig cfg;
  cfg.latent_channels = 32;
  cfg.decoder_block_out_channels = {256, 128, 64, 64, 64, 64};
  cfg.num_decoder_blocks = {3, 3, 3, 3, 3, 1};
  EXPECT_EQ(cfg.spatial_factor(), 32);
  const auto names = shapes_of(cfg);
  // taesd's indices: 1 conv(32, 256), 7 conv(256, 128, no bias), 12 conv(128, 64), 17, 22, 27 conv(64, 64), 29 conv(64, 3);
  // blocks at 3-5 (256), 8-10 (128), 13-15, 18-20, 23-25, 28 (64).
  EXPECT_EQ(names.at("decoder.layers.0.weight"), (std::vector<int64_t>{256, 32, 3, 3}));
  EXPECT_EQ(names.at("decoder.layers.6.weight"), (std::vector<int64_t>{128, 256, 3, 3}));
  EXPECT_EQ(names.count("decoder.layers.6.bias"), 0u);
  EXPECT_EQ(names.at("decoder.layers.11.weight"), (std::vector<int64_t>{64, 128, 3, 3}));
  for (int k : {16, 21, 26}) EXPECT_EQ(names.at("decoder.layers." + std::to_string(k) + ".weight"),
                                       (std::vector<int64_t>{64, 64, 3, 3}));
  EXPECT_EQ(names.at("decoder.layers.28.weight"), (std::vector<int64_t>{3, 64, 3, 3}));
  EXPECT_EQ(names.at("decoder.layers.2.conv.0.weight"), (std::vector<int64_t>{256, 256, 3, 3}));
  EXPECT_EQ(names.at("decoder.layers.7.conv.4.weight"), (std::vector<int64_t>{128, 128, 3, 3}));
  EXPECT_EQ(names.at("decoder.layers.27.conv.2.weight"), (std::vector<int64_t>{64, 64, 3, 3}));
  EXPECT_EQ(names.size(), 2u + 5 + 2 + 16 * 6);  // conv in (w, b), 5 stage convs, conv out (w, b), 16 blocks of 3
}

// With every convolution the identity on the channels it keeps (centre tap 1, no bias), a block maps x >= 0 to
// ReLU(x + x) = 2x, so the decoder is 2^(blocks) * nearest-upsampled tanh(z / 3) * 3 on the first 3 channels, * 2 - 1.
TEST(AutoencoderTiny, IdentityWeightsGiveTheClosedForm) {
  sana::AutoencoderTinyConfig cfg;
  cfg.latent_channels = 4;
  cfg.decoder_block_out_channels = {8, 6, 5};
  cfg.num_decoder_blocks = {2, 0, 1};
  sana::AutoencoderTiny model(cfg, at::TensorOptions(at::kDouble));
  for (auto& [name, t] : sana::nn::state_dict(model)) {
    at::NoGradGuard no_grad;
    t.zero_();
    if (t.dim() == 4)
      for (int64_t c = 0; c < std::min(t.size(0), t.size(1)); ++c) t[c][c][1][1] = 1;
  }
  const at::Tensor z = at::rand({2, 4, 3, 5}, at::kDouble) * 6;  // up to 6: the soft clamp matters
  const at::Tensor got = model.decode(z);
  const at::Tensor c = at::tanh(z.slice(1, 0, 3) / 3) * 3;
  const at::Tensor expected = at::upsample_nearest2d(c, {12, 20}) * 8 * 2 - 1;
  ASSERT_EQ(got.sizes(), expected.sizes());
  EXPECT_LT((got - expected).abs().max().item<double>(), 1e-12);
}

TEST(AutoencoderTiny, ConfigAndFolderErrorsNameTheKeyOrFolder) {
  TempDir dir;
  const auto err = [&](const std::string& text) {
    write(dir.file("config.json"), text);
    return error_of([&] { sana::load_autoencoder_tiny_config(dir.file("config.json")); });
  };
  EXPECT_NE(err(R"({"_class_name": "AutoencoderDC"})").find("expected AutoencoderTiny"), std::string::npos);
  EXPECT_NE(err(R"({"num_decoder_blocks": [1, 1]})").find("num_decoder_blocks"), std::string::npos);
  EXPECT_NE(err(R"({"upsample_fn": "bilinear"})").find("upsample_fn"), std::string::npos);
  EXPECT_NE(err(R"({"act_fn": "silu"})").find("act_fn"), std::string::npos);
  EXPECT_NE(err(R"({"use_midblock_gn": true})").find("use_midblock_gn"), std::string::npos);
  EXPECT_NE(err(R"({"decoder_block_out_channels": "64"})").find("decoder_block_out_channels"), std::string::npos);
  EXPECT_NE(err(R"({"decoder_block_out_channels": [64, 0, 64, 64]})").find("decoder_block_out_channels"),
            std::string::npos);
  EXPECT_NE(err(R"({"upsampling_scaling_factor": 8})").find("factor above 64"), std::string::npos);
  // A folder without weights, and weights of another shape, are one line naming the folder or tensor.
  write(dir.file("config.json"), R"({"latent_channels": 4, "decoder_block_out_channels": [8, 8],
                                     "num_decoder_blocks": [1, 1]})");
  EXPECT_NE(error_of([&] { sana::AutoencoderTiny::from_pretrained(dir.path().string(), {}); }).find(dir.path().string()),
            std::string::npos);
  sana::AutoencoderTinyConfig other;
  other.latent_channels = 4, other.decoder_block_out_channels = {8, 16}, other.num_decoder_blocks = {1, 1};
  sana::nn::save_state_dict(sana::AutoencoderTiny(other, at::TensorOptions(at::kFloat)),
                            dir.file("diffusion_pytorch_model.safetensors"));
  EXPECT_NE(error_of([&] { sana::AutoencoderTiny::from_pretrained(dir.path().string(), {}); }).find("decoder.layers"),
            std::string::npos);
  EXPECT_NE(error_of([&] { sana::AutoencoderTiny::from_pretrained(dir.file("none"), {}); }).find("not a directory"),
            std::string::npos);
}

// diffusers' AutoencoderTiny folders hold the encoder too; only the decoder is read.
TEST(AutoencoderTiny, FolderWithEncoderTensorsLoadsItsDecoder) {
  TempDir dir;
  write(dir.file("config.json"), R"({"_class_name": "AutoencoderTiny", "latent_channels": 4,
                                     "decoder_block_out_channels": [8, 8], "num_decoder_blocks": [1, 1]})");
  sana::AutoencoderTiny model(sana::load_autoencoder_tiny_config(dir.file("config.json")), at::TensorOptions(at::kFloat));
  sana::nn::init_random(model, 3);
  auto tensors = sana::nn::state_dict(model);
  tensors.emplace_back("encoder.layers.0.weight", at::ones({8, 3, 3, 3}));
  sana::save_safetensors(dir.file("diffusion_pytorch_model.safetensors"), tensors);
  const auto loaded = sana::AutoencoderTiny::from_pretrained(dir.path().string(), at::TensorOptions(at::kFloat));
  const at::Tensor z = at::randn({1, 4, 2, 3});
  EXPECT_TRUE(at::equal(loaded->decode(z), model.decode(z)));
}

}  // namespace

namespace {

double psnr(const at::Tensor& a, const at::Tensor& b) {  // images in [0, 1]
  return 10 * std::log10(1.0 / (a - b).pow(2).mean().item<double>());
}

// The shipped shapes models' vae_tiny/ against their DC-AE decoder on the student's own 1-step latents (which no
// training latent was): the same picture within a PSNR bound (docs/DECODERS.md has the measured values), and a call
// asking for the tiny decoder of a pipeline without one is a one-line error naming the decoder.
TEST(AutoencoderTiny, ShippedDecoderDrawsWhatTheFullDecoderDraws) {
  auto pipe = sana::load_pipeline(std::string(SANA_MODELS_DIR) + "/sana-sprint-shapes", at::kCPU, at::kFloat);
  ASSERT_TRUE(pipe->components.tiny_vae);
  sana::GenerateOptions o;
  o.prompts = {"two red circles above a blue square", "a small yellow star", "a green triangle left of a cyan circle",
               "a purple square"};
  o.height = o.width = 64;
  o.steps = 1;
  o.seed = 3;
  o.prompt.use_complex_human_instruction = false;
  o.prompt.max_sequence_length = 32;
  const auto full = pipe->generate(o);
  o.tiny_decode = true;
  const auto tiny = pipe->generate(o);
  EXPECT_TRUE(at::equal(full.final_latents, tiny.final_latents));
  ASSERT_EQ(tiny.images.sizes(), full.images.sizes());
  EXPECT_GT(psnr(tiny.images, full.images), 24.0);

  pipe->components.tiny_vae.reset();
  EXPECT_NE(error_of([&] { pipe->generate(o); }).find("decoder: tiny"), std::string::npos);
}

// A tiny decoder of another latent space is refused when it is attached, naming its folder.
TEST(AutoencoderTiny, DecoderOfAnotherLatentSpaceIsRefused) {
  TempDir dir;
  write(dir.file("config.json"), R"({"latent_channels": 32, "decoder_block_out_channels": [8, 8, 8, 8],
                                     "num_decoder_blocks": [1, 1, 1, 1]})");
  sana::AutoencoderTiny model(sana::load_autoencoder_tiny_config(dir.file("config.json")), at::TensorOptions(at::kFloat));
  sana::nn::save_state_dict(model, dir.file("diffusion_pytorch_model.safetensors"));
  auto pipe = sana::load_pipeline(std::string(SANA_MODELS_DIR) + "/sana-sprint-shapes", at::kCPU, at::kFloat);
  const std::string err = error_of([&] { pipe->components.attach_tiny_vae(dir.path().string(), at::kFloat); });
  EXPECT_NE(err.find(dir.path().string()), std::string::npos) << err;
  EXPECT_NE(err.find("32 latent channels"), std::string::npos) << err;
}

}  // namespace
