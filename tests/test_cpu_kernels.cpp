// The fused CPU kernels (include/sana/nn/cpu_kernels.h) against the mathematics: each op evaluated in fp64 from the
// same inputs, rounded to bf16 wherever the reference's op sequence stores an intermediate. A bf16 result must be
// that value on all but a sliver of elements (the ones whose exact value lies within fp32 error of a bf16 rounding
// boundary) and within one bf16 step everywhere; fp32 results within fp32 error. Sizes are odd on purpose: no
// multiple of a vector's width or of the kernels' blocks.
#include <c10/core/InferenceMode.h>

#include <limits>

#include "sana/nn/cpu_kernels.h"
#include "sana/nn/layers.h"
#include "test_util.h"

namespace cpu = sana::nn::cpu;

namespace {

at::Tensor randn(at::IntArrayRef shape, at::ScalarType dtype, double mean = 0.0, double std = 1.0, int seed = 0) {
  at::manual_seed(seed);
  return (at::randn(shape, at::kDouble) * std + mean).to(dtype);
}

// bf16 values as integers ordered like the values (sign-magnitude to two's complement), so that the difference of
// two keys is the number of bf16 steps between the values.
at::Tensor ordered_bits(const at::Tensor& bf16) {
  const at::Tensor bits = bf16.contiguous().view(at::kShort).to(at::kInt);
  const at::Tensor magnitude = at::bitwise_and(bits, 0x7FFF);
  return at::where(bits < 0, -magnitude, magnitude);
}

// Asserts that a bf16 result equals the exact value `expected` (fp64) rounded to bf16 on at least `min_exact` of the
// elements and differs by at most one bf16 step anywhere.
void expect_bf16_rounding_of(const at::Tensor& actual, const at::Tensor& expected, double min_exact = 0.995) {
  ASSERT_EQ(actual.scalar_type(), at::kBFloat16);
  ASSERT_EQ(actual.sizes(), expected.sizes());
  const at::Tensor steps = (ordered_bits(actual) - ordered_bits(expected.to(at::kBFloat16))).abs();
  const double exact = steps.eq(0).to(at::kDouble).mean().item<double>();
  EXPECT_LE(steps.max().item<int>(), 1);
  EXPECT_GE(exact, min_exact) << "elements exactly the rounded reference";
}

at::Tensor wide(const at::Tensor& x) { return x.to(at::kDouble); }
at::Tensor bf16_round(const at::Tensor& x) { return x.to(at::kBFloat16).to(at::kDouble); }
at::Tensor silu64(const at::Tensor& x) { return x / (1 + at::exp(-x)); }

}  // namespace

TEST(CpuKernels, SupportedOnlyForContiguousFp32OrBf16UnderInferenceMode) {
  const at::Tensor x = at::randn({4, 6});
  EXPECT_FALSE(cpu::supported(x)) << "outside InferenceMode (autograd and the JVP need the ATen ops)";
  c10::InferenceMode guard;
  const at::Tensor y = at::randn({4, 6});
  EXPECT_TRUE(cpu::supported(y));
  EXPECT_TRUE(cpu::supported(y.to(at::kBFloat16)));
  EXPECT_FALSE(cpu::supported(y.t()));
  EXPECT_FALSE(cpu::supported(y.to(at::kHalf)));
  EXPECT_FALSE(cpu::supported(y.to(at::kDouble)));
  EXPECT_FALSE(cpu::supported(at::Tensor()));
}

TEST(CpuKernels, SiluIsTheExactValueRoundedOnce) {
  c10::InferenceMode guard;
  at::Tensor x = randn({3, 1000 + 7}, at::kBFloat16, 0.0, 6.0);
  const at::Tensor expected = silu64(wide(x));
  cpu::silu_(x);
  expect_bf16_rounding_of(x, expected, 0.999);

  at::Tensor f = randn({1000 + 7}, at::kFloat, 0.0, 6.0, 1);
  const at::Tensor f_expected = silu64(wide(f));
  cpu::silu_(f);
  EXPECT_CLOSE(f, f_expected, 1e-5);
}

TEST(CpuKernels, SiluAtTheEndsOfTheRangeAndNaN) {
  c10::InferenceMode guard;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  at::Tensor x = at::tensor({100.0f, 3.0e38f, -100.0f, -3.0e38f, 0.0f, nan}).to(at::kBFloat16);
  cpu::silu_(x);
  const at::Tensor y = x.to(at::kFloat);
  EXPECT_EQ(y[0].item<float>(), at::tensor(100.0f).to(at::kBFloat16).item<float>());
  EXPECT_EQ(y[1].item<float>(), at::tensor(3.0e38f).to(at::kBFloat16).item<float>());
  EXPECT_LT(std::abs(y[2].item<float>()), 1e-30f);
  EXPECT_LT(std::abs(y[3].item<float>()), 1e-30f);
  EXPECT_EQ(y[4].item<float>(), 0.0f);
  EXPECT_TRUE(std::isnan(y[5].item<float>()));
}

TEST(CpuKernels, GluSiluRoundsTheGateAsTheReference) {
  c10::InferenceMode guard;
  const int64_t h = 37;
  const at::Tensor x = randn({3, 5, 2 * h}, at::kBFloat16, 0.0, 3.0);
  const at::Tensor a = wide(x.narrow(-1, 0, h)), g = wide(x.narrow(-1, h, h));
  const at::Tensor expected = a * bf16_round(silu64(g));  // the reference stores silu(g) in bf16, then multiplies
  const at::Tensor y = cpu::glu_silu(x);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{3, 5, h}));
  expect_bf16_rounding_of(y, expected);

  const at::Tensor f = randn({7, 2 * h}, at::kFloat, 0.0, 3.0, 1);
  EXPECT_CLOSE(cpu::glu_silu(f), wide(f.narrow(-1, 0, h)) * silu64(wide(f.narrow(-1, h, h))), 1e-5);
  EXPECT_THROW(cpu::glu_silu(at::zeros({2, 5})), c10::Error) << "odd last dim";
}

TEST(CpuKernels, LayerNormOverTheLastDim) {
  c10::InferenceMode guard;
  for (const int64_t d : {1, 17, 1152 + 3}) {
    SCOPED_TRACE(d);
    // An offset mean: a one-pass variance (E[x^2] - E[x]^2) would lose the digits this checks.
    const at::Tensor x = randn({9, d}, at::kBFloat16, 30.0, 2.0);
    const at::Tensor xd = wide(x), mean = xd.mean(-1, true);
    const at::Tensor var = (xd - mean).pow(2).mean(-1, true);
    expect_bf16_rounding_of(cpu::layer_norm(x, 1e-6), (xd - mean) / at::sqrt(var + 1e-6));

    const at::Tensor f = randn({9, d}, at::kFloat, 30.0, 2.0, 1);
    const at::Tensor fd = wide(f), fmean = fd.mean(-1, true);
    EXPECT_CLOSE(cpu::layer_norm(f, 1e-6), (fd - fmean) / at::sqrt((fd - fmean).pow(2).mean(-1, true) + 1e-6), 2e-4);
  }
}

TEST(CpuKernels, ChannelRmsNormWithEachOptionalPart) {
  c10::InferenceMode guard;
  const int64_t B = 2, C = 13, H = 29, W = 41;  // 1189 pixels: one full block of 1024 and a partial one
  const double eps = 1e-5;
  for (const at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
    const bool bf = dtype == at::kBFloat16;
    const at::Tensor x = randn({B, C, H, W}, dtype, 0.5, 2.0, 1), w = randn({C}, dtype, 1.0, 0.3, 2),
                     b = randn({C}, dtype, 0.0, 0.3, 3), res = randn({B, C, H, W}, dtype, 0.0, 1.0, 4);
    auto round = [&](const at::Tensor& t) { return bf ? bf16_round(t) : t; };
    const at::Tensor xd = wide(x), inv = at::rsqrt(xd.pow(2).mean(1, true) + eps);
    for (int parts = 0; parts < 8; ++parts) {
      const bool with_w = parts & 1, with_b = parts & 2, with_res = parts & 4;
      SCOPED_TRACE(std::string(bf ? "bf16" : "fp32") + " weight " + std::to_string(with_w) + " bias " +
                   std::to_string(with_b) + " residual " + std::to_string(with_res));
      at::Tensor expected = round(xd * inv);
      if (with_w) expected = round(expected * wide(w).view({1, C, 1, 1}));
      if (with_b) expected = round(expected + wide(b).view({1, C, 1, 1}));
      if (with_res) expected = expected + wide(res);
      const at::Tensor y = cpu::rms_norm_channels(x, with_w ? w : at::Tensor(), with_b ? b : at::Tensor(), eps,
                                                  with_res ? res : at::Tensor());
      if (bf) expect_bf16_rounding_of(y, expected, 0.99);
      else EXPECT_CLOSE(y, expected, 1e-5);
    }
  }
  const at::Tensor x = at::randn({1, 4, 3, 3});
  EXPECT_THROW(cpu::rms_norm_channels(x, at::ones({4}, at::kBFloat16), {}, eps, {}), c10::Error) << "weight dtype";
  EXPECT_THROW(cpu::rms_norm_channels(x, at::ones({5}), {}, eps, {}), c10::Error) << "weight length";
  EXPECT_THROW(cpu::rms_norm_channels(x, {}, {}, eps, at::zeros({1, 4, 3, 2})), c10::Error) << "residual shape";
}

TEST(CpuKernels, ChannelRmsNormMatchesTheModuleOutsideInferenceMode) {
  sana::nn::RMSNorm norm(13, 1e-5, /*elementwise_affine=*/true, /*bias=*/true, at::TensorOptions());
  at::manual_seed(5);
  norm.weight = at::randn({13}).add_(1.0);
  norm.bias = at::randn({13}) * 0.1;
  const at::Tensor x = at::randn({2, 13, 5, 9});
  const at::Tensor reference = norm.forward_dim(x, 1);  // ATen ops: InferenceMode is off
  c10::InferenceMode guard;
  ASSERT_TRUE(norm.fused_channels(x));
  EXPECT_CLOSE(norm.forward_dim(x, 1), reference, 1e-5);  // the fused kernel
}

TEST(CpuKernels, PixelShuffleIsAtenPixelShuffleExactly) {
  c10::InferenceMode guard;
  for (const at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
    const at::Tensor x = randn({2, 12, 5, 7}, dtype);
    EXPECT_TRUE(at::equal(cpu::pixel_shuffle2(x), at::pixel_shuffle(x, 2)));
  }
  EXPECT_THROW(cpu::pixel_shuffle2(at::zeros({1, 6, 2, 2})), c10::Error) << "channels not a multiple of 4";
}

TEST(CpuKernels, LayersFallBackToAtenWhereTheKernelsDoNotApply) {
  c10::InferenceMode guard;
  const at::Tensor x = randn({6, 19}, at::kFloat, 0.0, 1.0, 7).t();  // not contiguous
  ASSERT_FALSE(cpu::supported(x));
  EXPECT_TRUE(at::equal(sana::nn::layer_norm(x, 1e-6), at::layer_norm(x, {x.size(-1)}, {}, {}, 1e-6)));
}

// Registered a second time in tests/CMakeLists.txt with SANA_CPU_KERNELS=0 in the environment (skipped otherwise).
TEST(CpuKernels, SwitchedOffByTheEnvironment) {
  const char* v = std::getenv("SANA_CPU_KERNELS");
  if (!v || std::string(v) != "0") GTEST_SKIP() << "runs with SANA_CPU_KERNELS=0";
  c10::InferenceMode guard;
  const at::Tensor x = randn({6, 19}, at::kBFloat16);
  EXPECT_FALSE(cpu::supported(x));
  EXPECT_TRUE(at::equal(sana::nn::layer_norm(x, 1e-6), at::layer_norm(x, {x.size(-1)}, {}, {}, 1e-6)));
}
