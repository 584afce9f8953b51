// The fused CPU kernels (include/sana/nn/cpu_kernels.h) against the ATen ops they replace, on the 0.6B transformer's
// and DC-AE decoder's shapes at one image size. Each op is one call of the project's own layer function: under
// InferenceMode it takes the fused kernel, without it the ATen form, so both sides are what the models run. The two
// alternate round by round and each side keeps its fastest round (the machine is shared and noisy).
//
//   build/bench_kernels                 # bf16, 1024^2
//   build/bench_kernels --dtype fp32 --size 512
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <functional>

#include "bench_util.h"
#include "sana/io/config.h"
#include "sana/nn/layers.h"
#include "sana/runtime.h"

using namespace sana;

namespace {

struct Case {
  std::string name;
  std::function<void()> run;  // the same call for both sides; InferenceMode picks the path
};

// Seconds of the fastest of `rounds` runs of `run`, with InferenceMode on (fused) or off (ATen).
double time_once(const std::function<void()>& run, bool fused) {
  c10::InferenceMode guard(fused);
  const double t0 = bench::now_seconds();
  run();
  return bench::now_seconds() - t0;
}

void report(const Case& c, int rounds) {
  double aten = 1e30, fused = 1e30;
  time_once(c.run, false);
  time_once(c.run, true);
  for (int r = 0; r < rounds; ++r) {
    aten = std::min(aten, time_once(c.run, false));
    fused = std::min(fused, time_once(c.run, true));
  }
  std::printf("  %-58s ATen %8.2f ms   fused %8.2f ms   %5.2fx\n", c.name.c_str(), aten * 1e3, fused * 1e3,
              aten / fused);
  std::fflush(stdout);
}

std::string shape(at::IntArrayRef s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "x" : "") + std::to_string(s[i]);
  return out;
}

std::vector<Case> cases(const SanaTransformerConfig& t, const AutoencoderDCConfig& v, int size,
                        const at::TensorOptions& o) {
  const int64_t side = size / v.spatial_factor() / t.patch_size, N = side * side;
  const int64_t D = t.inner_dim(), H = t.ff_hidden();
  const at::Tensor tokens = at::randn({1, N, D}, o), hidden = at::randn({1, N, 2 * H}, o);
  // The decoder's widest full-resolution map and the input of its last pixel shuffle.
  const int64_t C0 = v.decoder_block_out_channels[0];
  const at::Tensor map = at::randn({1, C0, size, size}, o), residual = at::randn({1, C0, size, size}, o);
  const at::Tensor packed = at::randn({1, 4 * C0, size / 2, size / 2}, o);
  auto norm = std::make_shared<nn::RMSNorm>(C0, 1e-5, true, true, o);
  norm->weight = at::full({C0}, 1.1, o);  // plain tensors: the ATen side builds no autograd graph
  norm->bias = at::full({C0}, 0.1, o);
  return {
      {"transformer layer_norm " + shape(tokens.sizes()), [=] { nn::layer_norm(tokens, 1e-6); }},
      {"transformer silu (ff inverted) " + shape(hidden.sizes()),
       [=] {
         at::Tensor h = hidden.clone();
         if (nn::cpu::supported(h)) nn::cpu::silu_(h);
         else h = at::silu(h);
       }},
      {"transformer glu gate " + shape(hidden.sizes()),
       [=] {
         if (nn::cpu::supported(hidden)) {
           nn::cpu::glu_silu(hidden);
         } else {
           const auto halves = hidden.chunk(2, -1);
           halves[0] * at::silu(halves[1]);
         }
       }},
      {"decoder channel RMSNorm + residual " + shape(map.sizes()),
       [=] {
         if (norm->fused_channels(map)) nn::cpu::rms_norm_channels(map, norm->weight, norm->bias, 1e-5, residual);
         else norm->forward_dim(map, 1).add_(residual);
       }},
      {"decoder silu " + shape(map.sizes()),
       [=] {
         at::Tensor h = map.clone();
         if (nn::cpu::supported(h)) nn::cpu::silu_(h);
         else at::silu_(h);
       }},
      {"decoder pixel_shuffle " + shape(packed.sizes()),
       [=] { nn::cpu::supported(packed) ? nn::cpu::pixel_shuffle2(packed) : at::pixel_shuffle(packed, 2); }},
  };
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The fused CPU kernels against the ATen ops they replace, on the 0.6B model's shapes"};
  std::string configs = std::string(SANA_SOURCE_DIR) + "/tests/data/configs/Sana_Sprint_0.6B_1024px_diffusers";
  int size = 1024, rounds = 5, threads = 0;
  std::string dtype_name = "bf16";
  app.add_option("--configs", configs, "diffusers pipeline folder with transformer/ and vae/ config.json");
  app.add_option("--size", size, "image size (pixels)")->check(CLI::PositiveNumber);
  app.add_option("--rounds", rounds, "alternating rounds (each side keeps its fastest)")->check(CLI::PositiveNumber);
  app.add_option("-t,--threads", threads, "CPU threads (0 = all cores)");
  app.add_option("--dtype", dtype_name, "fp32 | bf16");
  CLI11_PARSE(app, argc, argv);
  try {
    configure_runtime(threads);
    const auto opts = at::TensorOptions().dtype(parse_dtype(dtype_name));
    std::printf("machine: %s, %s, %d^2\n", bench::machine_summary().c_str(), dtype_name.c_str(), size);
    const auto tcfg = load_sana_transformer_config(configs + "/transformer/config.json");
    const auto vcfg = load_autoencoder_dc_config(configs + "/vae/config.json");
    for (const Case& c : cases(tcfg, vcfg, size, opts)) report(c, rounds);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_kernels: %s\n", e.what());
    return 1;
  }
  return 0;
}
