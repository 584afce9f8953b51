// bf16 against fp32, stage by stage, on the real SANA-Sprint 0.6B configs with random weights: each stage is built
// twice from the same seed (fp32, then bf16: the bf16 weights are the fp32 ones rounded), given the same input, and
// the outputs are compared: max and mean absolute error, relative RMS error, and for the decoder the image PSNR.
// One model is alive at a time, so the fp32 text encoder (10.5 GB) fits.
//
//   build/bench_bf16_fidelity                      # text encoder, transformer at 512^2, decoder at 512^2
//   build/bench_bf16_fidelity --stages vae --size 1024
#include <c10/core/InferenceMode.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <set>

#include "bench_util.h"
#include "sana/diffusion/trigflow.h"
#include "sana/models/dcae.h"
#include "sana/models/gemma2.h"
#include "sana/models/sana_transformer.h"
#include "sana/nn/module_io.h"
#include "sana/runtime.h"

using namespace sana;

namespace {

void compare(const std::string& what, const at::Tensor& fp32, const at::Tensor& bf16) {
  const at::Tensor a = fp32.to(at::kFloat), d = bf16.to(at::kFloat) - a;
  std::printf("%-36s max |err| %.4g  mean |err| %.4g  relative RMS %.4f  (fp32 RMS %.4g)\n", what.c_str(),
              d.abs().max().item<double>(), d.abs().mean().item<double>(),
              (d.norm() / a.norm()).item<double>(), a.pow(2).mean().sqrt().item<double>());
  std::fflush(stdout);
}

// Runs `stage` with a model of `Config` built from `seed` in fp32 and then in bf16; returns both outputs.
template <class Model, class Config, class F>
std::pair<at::Tensor, at::Tensor> both(const Config& cfg, uint64_t seed, F&& stage) {
  at::Tensor out[2];
  const at::ScalarType dtypes[2] = {at::kFloat, at::kBFloat16};
  for (int i = 0; i < 2; ++i) {
    auto model = std::make_shared<Model>(cfg, at::TensorOptions().dtype(dtypes[i]));
    nn::init_random(*model, seed);
    const double t0 = bench::now_seconds();
    out[i] = stage(model, dtypes[i]).to(at::kFloat);
    std::printf("  %s: %.1f s\n", i ? "bf16" : "fp32", bench::now_seconds() - t0);
  }
  return {out[0], out[1]};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bf16 against fp32 per pipeline stage (SANA-Sprint 0.6B configs, random weights)"};
  std::string configs = std::string(SANA_SOURCE_DIR) + "/tests/data/configs/Sana_Sprint_0.6B_1024px_diffusers";
  std::vector<std::string> stages = {"text", "transformer", "vae"};
  int size = 512, tokens = 258, threads = 0;
  app.add_option("--configs", configs, "diffusers pipeline folder with the component config.json files");
  app.add_option("--stages", stages, "text, transformer, vae")->delimiter(',');
  app.add_option("--size", size, "image size for the transformer and the decoder (pixels)");
  app.add_option("--tokens", tokens, "text encoder tokens (instruction + a short prompt: about 258)");
  app.add_option("-t,--threads", threads, "CPU threads (0 = all cores)");
  CLI11_PARSE(app, argc, argv);
  try {
    configure_runtime(threads);
    c10::InferenceMode inference;
    const std::set<std::string> want(stages.begin(), stages.end());
    std::printf("machine: %s\n", bench::machine_summary().c_str());
    const auto tcfg = load_sana_transformer_config(configs + "/transformer/config.json");
    at::manual_seed(0);
    at::Tensor embeds = at::randn({1, 300, tcfg.caption_channels});
    at::Tensor mask = at::zeros({1, 300}, at::kLong);
    mask.narrow(1, 0, 15).fill_(1);

    if (want.count("text")) {
      const auto cfg = load_gemma2_config(configs + "/text_encoder/config.json");
      const at::Tensor ids = at::randint(4, cfg.vocab_size, {1, tokens}, at::kLong);
      const auto [a, b] = both<Gemma2Model>(cfg, 1, [&](const std::shared_ptr<Gemma2Model>& m, at::ScalarType) {
        return m->forward(ids, at::ones_like(ids));
      });
      compare("text encoder (last hidden state)", a, b);
      // The transformer step below reads the fp32 encoder's last 15 positions as its prompt.
      embeds = at::zeros({1, 300, a.size(2)});
      embeds.narrow(1, 0, 15).copy_(a.narrow(1, tokens - 15, 15));
      compare("text encoder (the prompt's positions)", a.narrow(1, tokens - 15, 15), b.narrow(1, tokens - 15, 15));
    }
    if (want.count("transformer")) {
      const int64_t lat = size / 32;
      const at::Tensor x = at::randn({1, tcfg.in_channels, lat, lat});
      const at::Tensor t = at::full({1}, 1.3f);
      const auto [a, b] = both<SanaTransformer2DModel>(tcfg, 2, [&](const std::shared_ptr<SanaTransformer2DModel>& m,
                                                                    at::ScalarType dt) {
        SanaTransformerInputs cond;
        cond.encoder_hidden_states = embeds.narrow(1, 0, 15).to(dt);
        cond.encoder_attention_mask = mask.narrow(1, 0, 15);
        cond.guidance = at::full({1}, 0.45f).to(dt);
        return SanaTrigFlow(m).forward(x, t, cond);
      });
      compare("transformer step " + std::to_string(size) + "^2 (F)", a, b);
    }
    if (want.count("vae")) {
      const auto vcfg = load_autoencoder_dc_config(configs + "/vae/config.json");
      const int64_t lat = size / vcfg.spatial_factor();
      const at::Tensor z = at::randn({1, vcfg.latent_channels, lat, lat});
      const auto [a, b] = both<AutoencoderDC>(vcfg, 3, [&](const std::shared_ptr<AutoencoderDC>& vae, at::ScalarType dt) {
        return vae->decode(z.to(dt));
      });
      compare("vae decode " + std::to_string(size) + "^2 (raw)", a, b);
      // Images as the pipeline makes them: (x / 2 + 0.5) clamped to [0, 1].
      const at::Tensor ia = (a / 2 + 0.5).clamp(0, 1), ib = (b / 2 + 0.5).clamp(0, 1);
      const double mse = (ia - ib).pow(2).mean().item<double>();
      std::printf("%-36s PSNR %.1f dB (%.1f%% of pixels clipped in fp32)\n", "vae decode image", 10 * std::log10(1.0 / mse),
                  100.0 * ((a.abs() > 1).sum().item<double>() / a.numel()));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_bf16_fidelity: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
