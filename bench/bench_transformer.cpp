// One SanaTransformer2DModel forward at a real configuration with random weights: median wall time over several
// runs, achieved GFLOP/s next to this machine's sgemm GFLOP/s (measured in the same run), and peak RSS.
//
//   build/bench_transformer                      # 0.6B, 512^2 and 1024^2 images (16^2 and 32^2 latents), fp32
//   build/bench_transformer --config DIR/transformer/config.json --sizes 1024 --runs 5 --device cuda --dtype bf16
//   build/bench_transformer --controlnet-layers 7          # + a 7-block ControlNet: its cost per step, timed
//                                                          #   alternately with the plain forward, and its FLOP share
//   build/bench_transformer --config recipes/shapes/transformer_config.json --sizes 64 --vae-factor 8 --tokens 32 \
//       --controlnet-layers 3                                # the shapes model and its shipped ControlNet's size
#include <ATen/core/grad_mode.h>
#include <c10/core/InferenceMode.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>

#include "bench_util.h"
#include "sana/error.h"
#include "sana/io/config.h"
#include "sana/models/sana_controlnet.h"
#include "sana/models/sana_transformer.h"
#include "sana/nn/module_io.h"
#include "sana/runtime.h"

using namespace sana;

namespace {

// The step with a ControlNet against the plain step, timed alternately (the machine is shared: pairs of runs see the
// same load), minimum of each; the ControlNet's FLOPs as a share of the transformer's.
void time_controlnet(const SanaTransformer2DModel& model, const SanaControlNetModel& cn, SanaTransformerInputs in,
                     int runs, const at::Device& device, double transformer_gflop) {
  const at::Tensor cond = at::randn_like(in.hidden_states);
  std::vector<double> plain, with;
  for (int r = 0; r < runs; ++r) {
    plain.push_back(bench::time_runs(1, device, [&] { model.forward(in); })[0]);
    with.push_back(bench::time_runs(1, device, [&] {
      SanaTransformerInputs c = in;
      c.controlnet_block_samples = cn.forward(in, cond, 1.0);
      model.forward(c);
    })[0]);
  }
  const double a = *std::min_element(plain.begin(), plain.end()), b = *std::min_element(with.begin(), with.end());
  const auto& c = cn.config();
  const int64_t N = in.hidden_states.size(2) * in.hidden_states.size(3), L = in.encoder_hidden_states.size(1);
  const double D = c.inner_dim();
  // The ControlNet's blocks and embeddings (as a transformer of its depth, minus the output projection), the extra
  // patch embedding of the control latent, input_block and one projection per block.
  const double cn_gflop = (sana_transformer_flops(c, in.hidden_states.size(0), in.hidden_states.size(2),
                                                  in.hidden_states.size(3), L) / in.hidden_states.size(0) +
                           2.0 * N * c.in_channels * D + 2.0 * N * D * D * (c.num_layers + 1) -
                           2.0 * N * D * c.out_channels) * in.hidden_states.size(0) / 1e9;
  std::printf("      + ControlNet (%d blocks): step %8.1f ms vs %.1f ms plain (minimum of %d alternating pairs): "
              "overhead %+.0f%%, FLOP share %.0f%%\n",
              c.num_layers, b * 1e3, a * 1e3, runs, 100 * (b - a) / a, 100 * cn_gflop / transformer_gflop);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"SanaTransformer2DModel forward benchmark (random weights)"};
  std::string config = std::string(SANA_SOURCE_DIR) + "/tests/data/configs/Sana_Sprint_0.6B_1024px_diffusers/transformer/config.json";
  std::vector<int> sizes = {512, 1024};
  int runs = 5, threads = 0, tokens = 300, batch = 1, controlnet_layers = 0, vae_factor = 32;
  std::string device_name = "cpu", dtype_name = "fp32";
  app.add_option("--config", config, "transformer config.json");
  app.add_option("--sizes", sizes, "image sizes in pixels (latent = size / 32)")->delimiter(',');
  app.add_option("--runs", runs, "timed runs per size (after one warm-up)")->check(CLI::PositiveNumber);
  app.add_option("-b,--batch", batch, "batch size")->check(CLI::PositiveNumber);
  app.add_option("--tokens", tokens, "text tokens")->check(CLI::PositiveNumber);
  app.add_option("-t,--threads", threads, "CPU threads (0 = all cores)");
  app.add_option("--device", device_name, "cpu | cuda[:N]");
  app.add_option("--dtype", dtype_name, "fp32 | bf16 | fp16");
  app.add_option("--controlnet-layers", controlnet_layers, "also time a ControlNet of this many blocks (0: none)");
  app.add_option("--vae-factor", vae_factor, "latent = size / this (32: the real DC-AE; 8: the shapes VAE)");
  CLI11_PARSE(app, argc, argv);

  try {
    configure_runtime(threads);
    const at::Device device = parse_device(device_name);
    const at::ScalarType dtype = parse_dtype(dtype_name);
    const auto cfg = load_sana_transformer_config(config);
    std::printf("machine: %s\n", bench::machine_summary().c_str());
    std::printf("config: %s (D=%d, layers=%d), %s on %s, batch %d, %d text tokens\n", config.c_str(),
                cfg.inner_dim(), cfg.num_layers, dtype_name.c_str(), device.str().c_str(), batch, tokens);

    const double t_build = bench::now_seconds();
    SanaTransformer2DModel model(cfg, at::TensorOptions().dtype(at::kFloat));
    nn::init_random(model, 0);
    model.to(device, dtype);
    const double weights_mib = nn::count_parameters(model) * c10::elementSize(dtype) / 1048576.0;
    std::printf("built %lld parameters (%.0f MiB) in %.1f s; RSS peak so far %.0f MiB\n",
                static_cast<long long>(nn::count_parameters(model)), weights_mib, bench::now_seconds() - t_build,
                bench::peak_rss_mib());

    std::shared_ptr<SanaControlNetModel> controlnet;
    if (controlnet_layers > 0) {
      controlnet = std::make_shared<SanaControlNetModel>(
          parse_sana_controlnet_config(controlnet_config_for(cfg, controlnet_layers), "controlnet"),
          at::TensorOptions().dtype(at::kFloat));
      nn::init_random(*controlnet, 1);
      controlnet->to(device, dtype);
      std::printf("ControlNet: %d blocks, %lld parameters\n", controlnet_layers,
                  static_cast<long long>(nn::count_parameters(*controlnet)));
    }

    c10::InferenceMode inference;
    for (int size : sizes) {
      const int64_t lat = size / vae_factor;
      const auto opts = at::TensorOptions().device(device).dtype(dtype);
      SanaTransformerInputs in;
      in.hidden_states = at::randn({batch, cfg.in_channels, lat, lat}).to(opts);
      in.encoder_hidden_states = at::randn({batch, tokens, cfg.caption_channels}).to(opts);
      in.encoder_attention_mask = at::ones({batch, tokens}, at::TensorOptions().device(device).dtype(at::kLong));
      in.timestep = at::full({batch}, 0.7f, at::TensorOptions().device(device));
      if (cfg.guidance_embeds) in.guidance = at::full({batch}, 0.45f, at::TensorOptions().device(device));

      const auto times = bench::time_runs(runs, device, [&] { model.forward(in); });
      const double sec = bench::median(times);
      const double gflop = sana_transformer_flops(cfg, batch, lat, lat, tokens) / 1e9;
      const double sgemm = device.is_cpu() ? bench::sgemm_gflops() : 0.0;
      std::printf("%4dx%-4d latent %2lldx%-2lld  median %8.1f ms (min %.1f, max %.1f, %d runs)  %7.1f GFLOP  "
                  "%6.1f GFLOP/s",
                  size, size, static_cast<long long>(lat), static_cast<long long>(lat), sec * 1e3,
                  *std::min_element(times.begin(), times.end()) * 1e3,
                  *std::max_element(times.begin(), times.end()) * 1e3, runs, gflop, gflop / sec);
      if (sgemm > 0) std::printf("  sgemm %6.1f GFLOP/s  ratio %.2f", sgemm, gflop / sec / sgemm);
      std::printf("  peak RSS %.0f MiB\n", bench::peak_rss_mib());
      if (controlnet) time_controlnet(model, *controlnet, in, runs, device, gflop);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_transformer: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
