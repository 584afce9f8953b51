// One SanaTransformer2DModel forward at a real configuration with random weights: median wall time over several
// runs, achieved GFLOP/s next to this machine's sgemm GFLOP/s (measured in the same run), and peak RSS.
//
//   build/bench_transformer                      # 0.6B, 512^2 and 1024^2 images (16^2 and 32^2 latents), fp32
//   build/bench_transformer --config DIR/transformer/config.json --sizes 1024 --runs 5 --device cuda --dtype bf16
#include <ATen/core/grad_mode.h>
#include <c10/core/InferenceMode.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "bench_util.h"
#include "sana/error.h"
#include "sana/models/sana_transformer.h"
#include "sana/nn/module_io.h"
#include "sana/runtime.h"

using namespace sana;

int main(int argc, char** argv) {
  CLI::App app{"SanaTransformer2DModel forward benchmark (random weights)"};
  std::string config = std::string(SANA_SOURCE_DIR) + "/tests/data/configs/Sana_Sprint_0.6B_1024px_diffusers/transformer/config.json";
  std::vector<int> sizes = {512, 1024};
  int runs = 5, threads = 0, tokens = 300, batch = 1;
  std::string device_name = "cpu", dtype_name = "fp32";
  app.add_option("--config", config, "transformer config.json");
  app.add_option("--sizes", sizes, "image sizes in pixels (latent = size / 32)")->delimiter(',');
  app.add_option("--runs", runs, "timed runs per size (after one warm-up)")->check(CLI::PositiveNumber);
  app.add_option("-b,--batch", batch, "batch size")->check(CLI::PositiveNumber);
  app.add_option("--tokens", tokens, "text tokens")->check(CLI::PositiveNumber);
  app.add_option("-t,--threads", threads, "CPU threads (0 = all cores)");
  app.add_option("--device", device_name, "cpu | cuda[:N]");
  app.add_option("--dtype", dtype_name, "fp32 | bf16 | fp16");
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

    c10::InferenceMode inference;
    for (int size : sizes) {
      const int64_t lat = size / 32;
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
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_transformer: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
