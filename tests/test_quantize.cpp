// int8 weights (include/sana/nn/int8.h, quantize.h) against the mathematics of rounding: each weight within half a
// quantization step, each output within the bound that the weight (and, for W8A8, the activation) rounding allows;
// the int8 layout round-trips through a checkpoint; a reference pipeline with int8 weights stays near its images.
#include <c10/core/InferenceMode.h>

#include <nlohmann/json.hpp>

#include <filesystem>

#include "sana/frontend/generation_params.h"
#include "sana/io/safetensors.h"
#include "sana/nn/layers.h"
#include "sana/nn/module_io.h"
#include "sana/nn/quantize.h"
#include "sana/pipeline/pipeline.h"
#include "sana/pipeline/quantize_folder.h"
#include "test_util.h"

using sana::nn::Int8Compute;
using sana::test::fixture;

namespace {

std::shared_ptr<sana::nn::Linear> random_linear(int64_t in, int64_t out, uint64_t seed) {
  auto l = std::make_shared<sana::nn::Linear>(in, out, true, at::TensorOptions(at::kFloat));
  sana::nn::init_random(*l, seed);
  return l;
}

// |x (w - w_hat)^T| <= sum_k |x_k| scale_row / 2, in fp64, per output.
at::Tensor weight_rounding_bound(const at::Tensor& x, const at::Tensor& scale) {
  return at::matmul(x.abs().to(at::kDouble), (scale.to(at::kDouble).view({1, -1}) / 2).expand({x.size(-1), -1}));
}

}  // namespace

TEST(Int8, RowsAreWithinHalfAStepAndUseTheFullRange) {
  at::manual_seed(0);
  at::Tensor w = at::randn({37, 53}) * at::rand({37, 1}) * 3;
  w[5].zero_();
  const auto [q, scale] = sana::nn::quantize_int8_rows(w);
  ASSERT_EQ(q.scalar_type(), at::kChar);
  EXPECT_EQ(scale.sizes(), (std::vector<int64_t>{37, 1}));
  const at::Tensor error = (q.to(at::kDouble) * scale.to(at::kDouble) - w.to(at::kDouble)).abs();
  EXPECT_TRUE((error <= scale.to(at::kDouble) / 2 * (1 + 1e-6)).all().item<bool>());
  const at::Tensor peak = q.abs().amax(1);
  for (int64_t r = 0; r < 37; ++r) EXPECT_EQ(peak[r].item<int>(), r == 5 ? 0 : 127) << "row " << r;
  EXPECT_EQ(scale[5].item<float>(), 1.0f);
  // A 1x1 convolution's weight [out, in, 1, 1] gets a scale [out, 1, 1, 1].
  EXPECT_EQ(sana::nn::quantize_int8_rows(w.view({37, 53, 1, 1})).second.sizes(), (std::vector<int64_t>{37, 1, 1, 1}));
}

TEST(Int8, WeightOnlyLinearIsTheProductWithTheRoundedWeight) {
  c10::InferenceMode guard;
  auto l = random_linear(96, 80, 1);
  const at::Tensor w = l->weight.clone(), b = l->bias.clone();
  at::manual_seed(2);
  const at::Tensor x = at::randn({3, 7, 96});
  const at::Tensor exact = at::linear(x.to(at::kDouble), w.to(at::kDouble), b.to(at::kDouble));
  l->quantize_int8(Int8Compute::weights);
  ASSERT_EQ(l->weight.scalar_type(), at::kChar);
  const at::Tensor y = l->forward(x);
  EXPECT_CLOSE(y, at::linear(x, l->weight.to(at::kFloat) * l->weight_scale, b), 1e-5);
  EXPECT_TRUE(((y.to(at::kDouble) - exact).abs() <= weight_rounding_bound(x, l->weight_scale) + 1e-5).all().item<bool>());
  EXPECT_GT((y.to(at::kDouble) - exact).abs().max().item<double>(), 0);  // it is rounded
  // bf16 inputs give bf16 outputs from the same weights.
  const at::Tensor yb = l->forward(x.to(at::kBFloat16));
  EXPECT_EQ(yb.scalar_type(), at::kBFloat16);
  EXPECT_LE((yb.to(at::kFloat) - y).abs().max().item<float>(), 0.05f * y.abs().max().item<float>());
}

// W8A8 on the CPU: the activations are rounded too, per tensor, to 8 bits over their range (oneDNN may use 7 of
// them): |error| <= sum_k |x_k| s_w / 2 + sum_k |w_hat_k| s_x / 2 with s_x <= (max x - min x) / 127.
TEST(Int8, DynamicLinearIsWithinTheActivationAndWeightRoundingBound) {
  if (!sana::nn::cpu_int8_dynamic_available()) GTEST_SKIP() << "this LibTorch has no oneDNN quantized engine";
  c10::InferenceMode guard;
  auto l = random_linear(128, 72, 3);
  const at::Tensor w = l->weight.clone(), b = l->bias.clone();
  at::manual_seed(4);
  const at::Tensor x = at::randn({2, 100, 128});  // 200 rows: enough for the int8 product
  const at::Tensor exact = at::linear(x.to(at::kDouble), w.to(at::kDouble), b.to(at::kDouble));
  l->quantize_int8(Int8Compute::dynamic);
  const at::Tensor y = l->forward(x);
  const double s_x = (x.max() - x.min()).item<double>() / 127;
  const at::Tensor w_hat = l->weight.to(at::kDouble) * l->weight_scale.to(at::kDouble);
  const at::Tensor bound = weight_rounding_bound(x, l->weight_scale) + w_hat.abs().sum(1).view({1, 1, -1}) * s_x / 2;
  const at::Tensor error = (y.to(at::kDouble) - exact).abs();
  EXPECT_TRUE((error <= bound + 1e-4).all().item<bool>()) << "worst error/bound "
                                                          << (error / bound).max().item<double>();
  // Not the weight-only product: the activations were rounded.
  EXPECT_GT((y - at::linear(x, w_hat.to(at::kFloat), b)).abs().max().item<float>(), 1e-4f);
  // Few rows take the weight-only path.
  const at::Tensor few = x.narrow(1, 0, 3);
  EXPECT_CLOSE(l->forward(few), at::linear(few, w_hat.to(at::kFloat), b), 1e-5);
}

TEST(Int8, TheLayoutRoundTripsThroughACheckpoint) {
  c10::InferenceMode guard;
  auto l = random_linear(64, 48, 5);
  l->quantize_int8(Int8Compute::weights);
  const auto state = sana::nn::state_dict(*l);
  std::map<std::string, at::Tensor> by_name(state.begin(), state.end());
  ASSERT_EQ(by_name.count("weight"), 1u);
  EXPECT_EQ(by_name["weight"].scalar_type(), at::kChar);
  EXPECT_EQ(by_name["weight_scale"].sizes(), (std::vector<int64_t>{48, 1}));
  EXPECT_EQ(by_name["weight_scale"].scalar_type(), at::kFloat);
  EXPECT_EQ(by_name["bias"].scalar_type(), at::kFloat);

  sana::test::TempDir dir;
  sana::nn::save_state_dict(*l, dir.file("q.safetensors"));
  auto loaded = std::make_shared<sana::nn::Linear>(64, 48, true, at::TensorOptions(at::kFloat));
  loaded->prepare_int8(Int8Compute::weights);
  sana::nn::load_state_dict(*loaded, sana::Checkpoint::open(dir.file("q.safetensors")), "linear");
  EXPECT_TRUE(at::equal(loaded->weight, l->weight));
  EXPECT_TRUE(at::equal(loaded->weight_scale, l->weight_scale));
  const at::Tensor x = at::randn({5, 64});
  EXPECT_TRUE(at::equal(loaded->forward(x), l->forward(x)));
  EXPECT_THROW(l->quantize_int8(Int8Compute::weights), c10::Error);  // int8 already
}

// Which layers: Linears and 1x1 convolutions with enough weights; depthwise and 3x3 convolutions, norms and small
// layers keep their dtype.
TEST(Int8, QuantizeChoosesTheLargeMatrixLayers) {
  c10::InferenceMode guard;
  sana::nn::GLUMBConv mlp(64, 64, 160, /*norm=*/true, at::TensorOptions(at::kFloat));
  sana::nn::init_random(mlp, 6);
  const auto report = sana::nn::quantize_int8(mlp, {Int8Compute::weights, /*min_weights=*/64 * 160});
  EXPECT_EQ(report.layers, 2);  // conv_inverted (64 -> 320) and conv_point (160 -> 64)
  EXPECT_EQ(mlp.conv_inverted->weight.scalar_type(), at::kChar);
  EXPECT_EQ(mlp.conv_point->weight.scalar_type(), at::kChar);
  EXPECT_EQ(mlp.conv_depth->weight.scalar_type(), at::kFloat);
  EXPECT_EQ(mlp.norm->weight.scalar_type(), at::kFloat);
  EXPECT_EQ(report.bytes_before, (64 * 320 + 160 * 64) * 4);
  EXPECT_EQ(report.bytes_after, (64 * 320 + 160 * 64) + (320 + 64) * 4);
  auto small = random_linear(16, 16, 7);
  EXPECT_EQ(sana::nn::quantize_int8(*small).layers, 0);  // below the default size
  EXPECT_EQ(sana::nn::parse_quantize("w8a8"), Int8Compute::dynamic);
  EXPECT_THROW(sana::nn::parse_quantize("int4"), sana::Error);
  EXPECT_EQ(sana::nn::parse_quantize("q4"), Int8Compute::q4);
}

// The Sprint reference pipeline with every matrix of its text encoder and transformer int8: the images stay near the
// reference (int8 rounding of random weights moves them by a few levels, not more).
TEST(Int8, SprintReferencePipelineWithInt8WeightsStaysNearItsImages) {
  const std::string folder = "pipeline_sprint_tiny";
  const auto ref = sana::SafetensorsFile::open(fixture(folder + "/expected.safetensors"));
  for (const Int8Compute compute : {Int8Compute::weights, Int8Compute::dynamic}) {
    auto pipe = sana::load_pipeline(fixture(folder), at::kCPU, at::kFloat);
    int64_t layers = 0;
    for (torch::nn::Module* m : {static_cast<torch::nn::Module*>(pipe->components.text_encoder.get()),
                                 static_cast<torch::nn::Module*>(pipe->components.transformer.get())})
      layers += sana::nn::quantize_int8(*m, {compute, 0}).layers;
    EXPECT_GT(layers, 10);
    int checked = 0;
    for (const auto& [name, text] : ref->metadata()) {
      if (name == "format") continue;
      const auto m = nlohmann::json::parse(text);
      SCOPED_TRACE(name);
      const sana::GenerateOptions o = sana::test::case_options(m);
      const at::Tensor expected = ref->get(name + ".image");
      const at::Tensor diff = (pipe->generate(o).images - expected).abs();
      EXPECT_LE(diff.mean().item<float>(), 0.02f) << "mean |difference| in [0, 1] units";
      EXPECT_GT(diff.max().item<float>(), 0.0f);  // int8 really ran
      ++checked;
    }
    EXPECT_GE(checked, 1);
  }
}

// `sana-sprint quantize`'s folder: int8 weights with their scales under diffusers' names, everything else copied; it
// loads as it is and generates exactly what the in-memory quantization of the original generates.
TEST(Int8, AQuantizedFolderLoadsAsTheInMemoryQuantization) {
  const std::string folder = fixture("pipeline_sprint_tiny");
  sana::test::TempDir dir;
  const std::string out = dir.file("int8");
  sana::QuantizeFolderOptions options;
  options.min_weights = 0;
  options.dtype = at::kFloat;
  const auto report = sana::quantize_pipeline_folder(folder, out, options);
  EXPECT_GT(report.layers, 10);
  EXPECT_LT(report.bytes_after, report.bytes_before / 3);  // fp32 -> int8 + scales

  const auto ckpt = sana::Checkpoint::open_in_directory(out + "/transformer", "diffusion_pytorch_model");
  int int8_weights = 0;
  for (const auto& name : ckpt.names()) {
    if (ckpt.info(name).dtype != at::kChar) continue;
    ++int8_weights;
    ASSERT_TRUE(ckpt.contains(name + "_scale")) << name;
    EXPECT_EQ(ckpt.info(name + "_scale").shape.at(0), ckpt.info(name).shape.at(0));
  }
  EXPECT_GT(int8_weights, 5);
  EXPECT_TRUE(ckpt.metadata().count("quantization"));
  for (const char* copied : {"model_index.json", "tokenizer", "vae/config.json", "scheduler/scheduler_config.json",
                             "text_encoder/config.json"})
    EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(out) / copied)) << copied;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
    EXPECT_EQ(entry.path().filename(), "int8") << "left behind: " << entry.path();

  const auto int8_layers = [](const torch::nn::Module& model, Int8Compute compute) {
    int n = 0;
    for (const auto& m : model.modules(false))
      if (auto* layer = dynamic_cast<sana::nn::WeightedLayer*>(m.get()); layer && layer->int8 == compute) ++n;
    return n;
  };
  const auto quantized = sana::load_pipeline(out, at::kCPU, at::kFloat);
  EXPECT_EQ(int8_layers(*quantized->components.transformer, Int8Compute::weights), int8_weights);
  auto in_memory = sana::load_pipeline(folder, at::kCPU, at::kFloat);
  in_memory->components.quantize_int8({Int8Compute::weights, 0});
  const auto ref = sana::SafetensorsFile::open(folder + "/expected.safetensors");
  for (const auto& [name, text] : ref->metadata()) {
    if (name == "format") continue;
    const auto m = nlohmann::json::parse(text);
    const sana::GenerateOptions o = sana::test::case_options(m);
    EXPECT_TRUE(at::equal(quantized->generate(o).images, in_memory->generate(o).images)) << name;
    break;  // one case is enough: the weights are what differs
  }

  // An existing folder is kept unless replacing was asked for; w8a8 on an int8 folder changes only the products.
  EXPECT_THROW(sana::quantize_pipeline_folder(folder, out, options), sana::Error);
  options.replace = true;
  EXPECT_NO_THROW(sana::quantize_pipeline_folder(folder, out, options));
  sana::PipelineLoadOptions w8a8;
  w8a8.quantize = "w8a8";
  const auto dynamic = sana::load_pipeline(out, at::kCPU, at::kFloat, w8a8);
  EXPECT_EQ(int8_layers(*dynamic->components.transformer, Int8Compute::dynamic), int8_weights);
}

// 4-bit groups (Int8Compute::q4): each weight within half a step of its group's scale (max|w| / 7), the group's
// largest weight at +-7, two values per byte with the even input in the low nibble (value + 8).
TEST(Q4, GroupsAreWithinHalfAStepAndPackTwoPerByte) {
  at::manual_seed(3);
  const int64_t group = sana::nn::kQ4Group;
  at::Tensor w = at::randn({5, 3 * group}) * at::rand({5, 3 * group}) * 2;
  w[2].zero_();
  const auto [packed, scale] = sana::nn::quantize_q4(w);
  ASSERT_EQ(packed.scalar_type(), at::kByte);
  EXPECT_EQ(packed.sizes(), (std::vector<int64_t>{5, 3 * group / 2}));
  EXPECT_EQ(scale.sizes(), (std::vector<int64_t>{5, 3}));
  const at::Tensor expected_scale = w.view({5, 3, group}).abs().amax(-1) / 7;
  EXPECT_CLOSE(scale.select(0, 0), expected_scale.select(0, 0), 1e-7);
  EXPECT_EQ(scale[2][1].item<float>(), 1.0f);  // a group of zeros
  const at::Tensor back = sana::nn::dequantize_q4(packed, scale, at::kDouble);
  const at::Tensor step = scale.to(at::kDouble).repeat_interleave(group, 1);
  EXPECT_TRUE(((back - w.to(at::kDouble)).abs() <= step / 2 * (1 + 1e-6)).all().item<bool>());
  // The nibbles of a row whose group maximum is 7 (scale 1): 7, -7, 3, 0 -> 15, 1, 11, 8.
  at::Tensor row = at::zeros({1, group});
  row[0][0] = 7, row[0][1] = -7, row[0][2] = 3;
  const at::Tensor p = sana::nn::quantize_q4(row).first;
  EXPECT_EQ(p[0][0].item<int>(), 15 | (1 << 4));
  EXPECT_EQ(p[0][1].item<int>(), 11 | (8 << 4));
  EXPECT_THROW(sana::nn::quantize_q4(at::randn({4, group + 2})), c10::Error);
}

TEST(Q4, LinearAndPointwiseConvAreTheProductWithTheDequantizedWeight) {
  c10::InferenceMode guard;
  auto l = random_linear(128, 40, 11);
  at::manual_seed(12);
  const at::Tensor x = at::randn({2, 5, 128});
  l->quantize_int8(Int8Compute::q4);
  EXPECT_EQ(l->weight_shape(), (std::vector<int64_t>{40, 128}));
  const at::Tensor w_hat = sana::nn::dequantize_q4(l->weight, l->weight_scale, at::kDouble);
  EXPECT_CLOSE(l->forward(x), at::linear(x.to(at::kDouble), w_hat, l->bias.to(at::kDouble)), 1e-4);

  sana::nn::Conv2d conv(128, 24, 1, 1, 0, 1, true, at::TensorOptions(at::kFloat));
  sana::nn::init_random(conv, 13);
  conv.quantize_int8(Int8Compute::q4);
  EXPECT_EQ(conv.weight_shape(), (std::vector<int64_t>{24, 128, 1, 1}));
  const at::Tensor image = at::randn({1, 128, 3, 4});
  const at::Tensor w4 = conv.dequantized(at::kFloat);
  EXPECT_CLOSE(conv.forward(image), at::conv2d(image, w4, conv.bias), 1e-4);
  EXPECT_CLOSE(conv.forward_pointwise_tokens(image.permute({0, 2, 3, 1})),
               at::conv2d(image, w4, conv.bias).permute({0, 2, 3, 1}), 1e-4);
}

// The shipped student with 4-bit matrices: the layers whose input width is a multiple of the group are converted
// (about 1/7 of their fp32 bytes), and the image stays near the fp32 one.
TEST(Q4, ShapesStudentWithQ4WeightsStaysNearItsImage) {
  const std::string model = std::string(SANA_MODELS_DIR) + "/sana-sprint-shapes";
  sana::GenerationParams p;
  p.model = model, p.prompt = "two red circles above a blue square", p.seed = 1;
  sana::apply_model_defaults(p, {"prompt", "seed"});
  const auto fp32 = sana::load_pipeline(model, at::kCPU, at::kFloat);
  const at::Tensor reference = fp32->generate(sana::to_generate_options(p)).images;
  auto q4 = sana::load_pipeline(model, at::kCPU, at::kFloat);
  const auto report = q4->components.quantize_int8({Int8Compute::q4, 0});
  EXPECT_GT(report.layers, 10);
  EXPECT_LT(report.bytes_after, report.bytes_before / 6);
  const at::Tensor diff = (q4->generate(sana::to_generate_options(p)).images - reference).abs();
  EXPECT_GT(diff.max().item<float>(), 0.0f);  // 4-bit really ran
  EXPECT_LE(diff.mean().item<float>(), 0.05f) << "mean |difference| in [0, 1] units";
}

// A q4 folder (quantize --type q4) holds uint8 nibble pairs with their group scales and loads as the in-memory q4
// quantization of the same weights: the same images bit for bit; --quantize int8 on top leaves its 4-bit layers
// 4-bit.
TEST(Q4, AQuantizedFolderLoadsAsTheInMemoryQuantization) {
  const std::string model = std::string(SANA_MODELS_DIR) + "/sana-sprint-shapes";
  sana::test::TempDir dir;
  const std::string out = dir.file("q4");
  sana::QuantizeFolderOptions options;
  options.type = Int8Compute::q4;
  options.min_weights = 0;
  options.dtype = at::kFloat;
  const auto report = sana::quantize_pipeline_folder(model, out, options);
  EXPECT_GT(report.layers, 10);
  const auto ckpt = sana::Checkpoint::open_in_directory(out + "/transformer", "diffusion_pytorch_model");
  int packed = 0;
  for (const auto& name : ckpt.names()) {
    if (ckpt.info(name).dtype != at::kByte) continue;
    ++packed;
    ASSERT_TRUE(ckpt.contains(name + "_scale")) << name;
    const auto& w = ckpt.info(name).shape;
    const auto& s = ckpt.info(name + "_scale").shape;
    EXPECT_EQ(s.at(0), w.at(0));
    EXPECT_EQ(s.at(1) * sana::nn::kQ4Group, w.at(1) * 2) << name;  // one scale per group of inputs
  }
  EXPECT_GT(packed, 5);
  EXPECT_NE(ckpt.metadata().at("quantization").find("\"q4\""), std::string::npos);

  sana::GenerationParams p;
  p.model = model, p.prompt = "two red circles above a blue square", p.seed = 1;
  sana::apply_model_defaults(p, {"prompt", "seed"});
  auto loaded = sana::load_pipeline(out, at::kCPU, at::kFloat);
  auto in_memory = sana::load_pipeline(model, at::kCPU, at::kFloat);
  in_memory->components.quantize_int8({Int8Compute::q4, 0});
  const at::Tensor want = in_memory->generate(sana::to_generate_options(p)).images;
  EXPECT_TRUE(at::equal(loaded->generate(sana::to_generate_options(p)).images, want));
  // int8 on top makes the layers that stayed floating int8; the 4-bit ones stay 4-bit (they were switched to int8
  // products, reading nibble pairs as int8 rows).
  const auto q4_layers = [&] {
    int n = 0;
    for (const auto& m : loaded->components.transformer->modules(false))
      if (auto* layer = dynamic_cast<sana::nn::WeightedLayer*>(m.get()); layer && layer->int8 == Int8Compute::q4) ++n;
    return n;
  };
  const int before = q4_layers();
  EXPECT_GT(before, 5);
  loaded->components.quantize_int8({Int8Compute::weights, 0});
  EXPECT_EQ(q4_layers(), before);
}
