// The stages of the real SANA-Sprint 0.6B pipeline with random weights built in memory from the configs (no weight
// files needed): text encoding of one prompt with the complex human instruction (Gemma-2-2B), one transformer step
// (TrigFlow-wrapped SanaTransformer2DModel) and the DC-AE decode, at 512^2 and 1024^2; median of several runs,
// GFLOP/s against this machine's sgemm rate, and the process's peak RSS.
//
//   build/bench_pipeline                                  # everything, 512 and 1024, fp32 on CPU
//   build/bench_pipeline --stages vae --sizes 512 --runs 3
#include <c10/core/InferenceMode.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <set>

#include "bench_util.h"
#include "sana/diffusion/trigflow.h"
#include "sana/models/dcae.h"
#include "sana/models/gemma2.h"
#include "sana/models/sana_transformer.h"
#include "sana/nn/module_io.h"
#include "sana/runtime.h"
#include "sana/text/prompt.h"

using namespace sana;

namespace {

// Prints one stage; the sgemm rate is measured right after it, so the ratio compares like with like on a machine
// whose speed drifts.
void report(const char* what, const std::vector<double>& t, double gflop, const at::Device& device) {
  const double sec = bench::median(t);
  const double sgemm = device.is_cpu() && gflop > 0 ? bench::sgemm_gflops() : 0.0;
  std::printf("%-34s median %9.1f ms (%zu runs)", what, sec * 1e3, t.size());
  if (gflop > 0) std::printf("  %8.1f GFLOP  %6.1f GFLOP/s", gflop, gflop / sec);
  if (gflop > 0 && sgemm > 0) std::printf("  sgemm %.1f  ratio %.2f", sgemm, gflop / sec / sgemm);
  std::printf("  peak RSS %.0f MiB\n", bench::peak_rss_mib());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"SANA-Sprint 0.6B pipeline stage benchmark (random weights)"};
  std::string configs = std::string(SANA_SOURCE_DIR) + "/tests/data/configs/Sana_Sprint_0.6B_1024px_diffusers";
  std::vector<int> sizes = {512, 1024};
  std::vector<std::string> stages = {"text", "transformer", "vae"};
  int runs = 3, threads = 0, chi_tokens = 245;
  std::string device_name = "cpu", dtype_name = "fp32";
  bool tiled = false;
  app.add_option("--configs", configs, "diffusers pipeline folder with the component config.json files");
  app.add_option("--sizes", sizes, "image sizes (pixels)")->delimiter(',');
  app.add_option("--stages", stages, "text, transformer, vae")->delimiter(',');
  app.add_option("--runs", runs, "timed runs per measurement (after a warm-up)")->check(CLI::PositiveNumber);
  app.add_option("-t,--threads", threads, "CPU threads (0 = all cores)");
  app.add_option("--device", device_name, "cpu | cuda[:N]");
  app.add_option("--dtype", dtype_name, "fp32 | bf16 | fp16");
  app.add_option("--chi-tokens", chi_tokens, "tokens of the complex human instruction with <bos> (estimate)");
  app.add_flag("--vae-tiling", tiled, "time the tiled decode (512-px tiles) instead of the whole decode");
  CLI11_PARSE(app, argc, argv);

  try {
    configure_runtime(threads);
    const at::Device device = parse_device(device_name);
    const at::ScalarType dtype = parse_dtype(dtype_name);
    const auto opts = at::TensorOptions().device(device).dtype(dtype);
    const std::set<std::string> want(stages.begin(), stages.end());
    std::printf("machine: %s\n", bench::machine_summary().c_str());
    std::printf("configs: %s, %s on %s\n", configs.c_str(), dtype_name.c_str(), device.str().c_str());
    c10::InferenceMode inference;

    at::Tensor embeds, mask;
    const auto tcfg = load_sana_transformer_config(configs + "/transformer/config.json");
    // Every model stays alive to the end, as in the pipeline, so the peak RSS is the pipeline's.
    std::shared_ptr<Gemma2Model> text_encoder;
    std::shared_ptr<SanaTransformer2DModel> transformer;
    std::shared_ptr<AutoencoderDC> vae_model;
    if (want.count("text")) {
      const auto cfg = load_gemma2_config(configs + "/text_encoder/config.json");
      double t0 = bench::now_seconds();
      text_encoder = std::make_shared<Gemma2Model>(cfg, at::TensorOptions().dtype(at::kFloat));
      Gemma2Model& te = *text_encoder;
      nn::init_random(te, 1);
      te.to(device, dtype);
      std::printf("text encoder: %lld parameters built in %.1f s\n", static_cast<long long>(nn::count_parameters(te)),
                  bench::now_seconds() - t0);
      // The real prompt format: CHI + prompt, padded to len(CHI tokens) + 298. Token ids are random: Gemma's
      // vocabulary is not available here, so the CHI length is an estimate (--chi-tokens; the ~1,050-character
      // instruction at ~4.3 characters per Gemma token), plus a 12-token prompt.
      const int64_t L = chi_tokens + 298, real = chi_tokens + 12;
      at::Tensor ids = at::randint(4, cfg.vocab_size, {1, L}, at::kLong);
      at::Tensor am = at::zeros({1, L}, at::kLong);
      am.narrow(1, 0, real).fill_(1);
      ids.narrow(1, real, L - real).fill_(0);
      at::Tensor hidden;
      const auto t = bench::time_runs(runs, device, [&] { hidden = te.forward(ids.to(device), am.to(device)); });
      report(("text encoder (1 prompt, " + std::to_string(L) + " tokens)").c_str(), t, gemma2_flops(cfg, 1, L) / 1e9,
             device);
      const at::Tensor index = at::cat({at::zeros({1}, at::kLong), at::arange(L - 299, L, at::kLong)}).to(device);
      embeds = hidden.index_select(1, index);
      mask = am.to(device).index_select(1, index);
    } else {
      embeds = at::randn({1, 300, tcfg.caption_channels}).to(opts);
      mask = at::ones({1, 300}, at::TensorOptions().dtype(at::kLong).device(device));
    }

    if (want.count("transformer")) {
      double t0 = bench::now_seconds();
      auto tr = transformer = std::make_shared<SanaTransformer2DModel>(tcfg, at::TensorOptions().dtype(at::kFloat));
      nn::init_random(*tr, 2);
      tr->to(device, dtype);
      std::printf("transformer: %lld parameters built in %.1f s\n",
                  static_cast<long long>(nn::count_parameters(*tr)), bench::now_seconds() - t0);
      const SanaTrigFlow model(tr);
      SanaTransformerInputs cond;
      cond.encoder_hidden_states = embeds;
      cond.encoder_attention_mask = mask;
      cond.guidance = at::full({1}, 0.45f, at::TensorOptions().device(device));
      for (int size : sizes) {
        const int64_t lat = size / 32;
        const at::Tensor x = at::randn({1, tcfg.in_channels, lat, lat}).to(device);
        const at::Tensor t = at::full({1}, 1.5708f, at::TensorOptions().device(device));
        const auto times = bench::time_runs(runs, device, [&] { model.forward(x, t, cond); });
        report(("transformer step " + std::to_string(size) + "^2").c_str(), times,
               sana_transformer_flops(tcfg, 1, lat, lat, 300) / 1e9, device);
      }
    }

    if (want.count("vae")) {
      const auto vcfg = load_autoencoder_dc_config(configs + "/vae/config.json");
      double t0 = bench::now_seconds();
      vae_model = std::make_shared<AutoencoderDC>(vcfg, at::TensorOptions().dtype(at::kFloat));
      AutoencoderDC& vae = *vae_model;
      nn::init_random(*vae.decoder, 3);
      vae.to(device, dtype);
      std::printf("vae: decoder %lld parameters built in %.1f s\n",
                  static_cast<long long>(nn::count_parameters(*vae.decoder)), bench::now_seconds() - t0);
      for (int size : sizes) {
        const int64_t lat = size / vcfg.spatial_factor();
        const at::Tensor z = at::randn({1, vcfg.latent_channels, lat, lat}).to(opts);
        const auto times = bench::time_runs(runs, device, [&] { tiled ? vae.decode_tiled(z) : vae.decode(z); });
        report(("vae decode " + std::to_string(size) + "^2" + (tiled ? " (tiled)" : "")).c_str(), times,
               tiled ? 0.0 : dcae_decoder_flops(vcfg, lat, lat) / 1e9, device);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_pipeline: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
