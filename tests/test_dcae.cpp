// AutoencoderDC against the diffusers fixture (encode and decode, fp32), and the tiled decode against the whole one.
#include <c10/core/InferenceMode.h>

#include <nlohmann/json.hpp>

#include "sana/models/dcae.h"
#include "sana/nn/module_io.h"
#include "sana/runtime.h"
#include "test_util.h"

using sana::test::fixture;

TEST(AutoencoderDC, DecodeMatchesDiffusers) {
  auto vae = sana::AutoencoderDC::from_pretrained(fixture("dcae_tiny"), at::kFloat);
  auto io = sana::SafetensorsFile::open(fixture("dcae_tiny/io.safetensors"));
  EXPECT_CLOSE(vae->decode(io->get("latent")), io->get("decoded_image"), 1e-4);
}

// Inference takes leaner paths (the up-block's convolution folded onto the low-resolution input, norms without fp32
// copies, in-place residuals): the same fixture, and bf16 within a bound.
TEST(AutoencoderDC, InferenceDecodeMatchesDiffusers) {
  auto io = sana::SafetensorsFile::open(fixture("dcae_tiny/io.safetensors"));
  c10::InferenceMode inference;
  auto vae = sana::AutoencoderDC::from_pretrained(fixture("dcae_tiny"), at::kFloat);
  EXPECT_CLOSE(vae->decode(io->get("latent")), io->get("decoded_image"), 1e-4);
  auto bf16 = sana::AutoencoderDC::from_pretrained(fixture("dcae_tiny"), at::kBFloat16);
  const at::Tensor expected = io->get("decoded_image");
  const at::Tensor err = bf16->decode(io->get("latent")).to(at::kFloat) - expected;
  EXPECT_LE((err.norm() / expected.norm()).item<double>(), 0.05);  // 0.031 measured, as without the lean paths
}

TEST(AutoencoderDC, EncodeMatchesDiffusers) {
  auto vae = sana::AutoencoderDC::from_pretrained(fixture("dcae_tiny"), at::kFloat);
  auto io = sana::SafetensorsFile::open(fixture("dcae_tiny/io.safetensors"));
  EXPECT_CLOSE(vae->encode(io->get("image")), io->get("encoded_latent"), 1e-4);
}

// LiteMLA's two kernels, the quadratic one (few pixels) and the linear one, compute the same normalised attention
// out_n = sum_m v_m (k_m . q_n) / (sum_m k_m . q_n + eps); the fixtures only reach the linear one.
TEST(AutoencoderDC, QuadraticAndLinearKernelsAgree) {
  at::manual_seed(1);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const int64_t B = 2, N = 12, G = 3, d = 4;
  const at::Tensor q = at::relu(at::randn({B, N, G * d}, f64)), k = at::relu(at::randn({B, N, G * d}, f64));
  const at::Tensor v = at::randn({B, N, G * d}, f64);
  const at::Tensor lin = sana::lite_mla_kernel(q, k, v, G, /*quadratic=*/false);
  const at::Tensor quad = sana::lite_mla_kernel(q, k, v, G, /*quadratic=*/true);
  EXPECT_CLOSE(quad, lin, 1e-10);
  // ... and both equal the definition, evaluated directly.
  const at::Tensor qh = q.view({B, N, G, d}), kh = k.view({B, N, G, d}), vh = v.view({B, N, G, d});
  const at::Tensor scores = at::einsum("bmgd,bngd->bgnm", {kh, qh});  // k_m . q_n
  const at::Tensor direct = at::einsum("bgnm,bmgd->bngd", {scores / (scores.sum(-1, true) + 1e-15), vh});
  EXPECT_CLOSE(lin, direct.reshape({B, N, G * d}), 1e-10);
}

// DC-AE-Lite (ResBlock-only decoder stages, stage 0 with no layers: norm_out over stage 1, then an upsampling
// conv_out) against diffusers, decode and encode; sizes come from the fixture's config.
TEST(AutoencoderDC, LiteDecoderMatchesDiffusers) {
  auto vae = sana::AutoencoderDC::from_pretrained(fixture("dcae_lite_tiny"), at::kFloat);
  auto io = sana::SafetensorsFile::open(fixture("dcae_lite_tiny/io.safetensors"));
  EXPECT_CLOSE(vae->decode(io->get("latent")), io->get("decoded_image"), 1e-4);
  EXPECT_CLOSE(vae->encode(io->get("image")), io->get("encoded_latent"), 1e-4);
  c10::InferenceMode inference;  // the lean inference paths too
  EXPECT_CLOSE(vae->decode(io->get("latent")), io->get("decoded_image"), 1e-4);
}

// The tiled decode is diffusers' (tiles at each stride, blended in place with the tile above and on the left, cropped
// to the stride): the fixture's latent decoded with its recorded enable_tiling settings.
TEST(AutoencoderDC, TiledDecodeMatchesDiffusers) {
  auto vae = sana::AutoencoderDC::from_pretrained(fixture("dcae_lite_tiny"), at::kFloat);
  auto io = sana::SafetensorsFile::open(fixture("dcae_lite_tiny/io.safetensors"));
  const auto kw = nlohmann::json::parse(io->metadata().at("enable_tiling"));
  sana::TiledDecodeOptions o;
  o.tile_sample_min_height = kw["tile_sample_min_height"], o.tile_sample_min_width = kw["tile_sample_min_width"];
  o.tile_sample_stride_height = kw["tile_sample_stride_height"];
  o.tile_sample_stride_width = kw["tile_sample_stride_width"];
  const at::Tensor z = io->get("tiled_latent");
  const int64_t f = vae->config().spatial_factor();
  ASSERT_TRUE(z.size(2) * f > o.tile_sample_min_height || z.size(3) * f > o.tile_sample_min_width)
      << "the fixture's latent must span several tiles";
  EXPECT_CLOSE(vae->decode_tiled(z, o), io->get("tiled_decoded_image"), 1e-4);
  c10::InferenceMode inference;
  EXPECT_CLOSE(vae->decode_tiled(z, o), io->get("tiled_decoded_image"), 1e-4);
  // Tiling settings off the VAE grid, or a stride past the tile, are refused by name.
  sana::TiledDecodeOptions bad = o;
  bad.tile_sample_min_width = static_cast<int>(f + 1);
  EXPECT_NE(sana::test::error_of([&] { vae->decode_tiled(z, bad); }).find("tile_sample_min_width"), std::string::npos);
  bad = o;
  bad.tile_sample_stride_height = o.tile_sample_min_height + static_cast<int>(f);
  EXPECT_NE(sana::test::error_of([&] { vae->decode_tiled(z, bad); }).find("must not exceed the tile"), std::string::npos);
  // One tile covering everything is exactly the whole decode.
  sana::TiledDecodeOptions whole;
  whole.tile_sample_min_height = whole.tile_sample_stride_height = static_cast<int>(z.size(2) * f);
  whole.tile_sample_min_width = whole.tile_sample_stride_width = static_cast<int>(z.size(3) * f);
  EXPECT_TRUE(at::equal(vae->decode_tiled(z, whole), vae->decode(z)));
}

TEST(AutoencoderDC, RealDecoderParameterCount) {
  const auto cfg = sana::load_autoencoder_dc_config(fixture("configs/Sana_Sprint_0.6B_1024px_diffusers/vae/config.json"));
  sana::AutoencoderDC vae(cfg, at::kFloat);
  EXPECT_EQ(sana::nn::count_parameters(*vae.decoder), 159223171);  // the real decoder's size
  EXPECT_EQ(cfg.spatial_factor(), 32);
}

// The executables' CPU allocator (large blocks on 2 MiB-aligned huge-page mappings, runtime.h): the same results as
// LibTorch's own allocator for blocks on both sides of the 32 MiB threshold, through oneDNN's bf16 convolution (which
// allocates raw scratch blocks) and plain ops, and the blocks are given back.
TEST(CpuAllocator, LargeBlocksGiveTheSameResults) {
  at::manual_seed(0);
  const at::Tensor x = at::randn({1, 16, 1024, 1024});  // 64 MiB in fp32
  const at::Tensor w = at::randn({16, 16, 3, 3}) * 0.1;
  auto compute = [&] {
    const at::Tensor y = at::conv2d(x.to(at::kBFloat16), w.to(at::kBFloat16), {}, 1, 1).to(at::kFloat);
    return (y * 2 + x).sum(1);
  };
  const at::Tensor before = compute();
  sana::install_cpu_allocator();
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(at::equal(compute(), before));
  const at::Tensor small = at::arange(1000, at::kFloat);
  EXPECT_EQ(small.sum().item<double>(), 499500.0);
}
