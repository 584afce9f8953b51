// The stages of the real SANA-Sprint 0.6B pipeline with random weights built in memory from the configs (no weight
// files needed): the text encoder (the whole padded sequence as the reference runs it, the instruction prefix once,
// and a 10-word prompt after the cached prefix), one transformer step (TrigFlow-wrapped SanaTransformer2DModel, the
// prompt's tokens only) and the DC-AE decode, at 512^2 and 1024^2; median of several runs, GFLOP/s against this
// machine's matrix-product rate in the same dtype measured right after each stage, the process's peak RSS, and the
// end-to-end sum for 1 step.
//
//   build/bench_pipeline                                  # everything, 512 and 1024, fp32 on CPU
//   build/bench_pipeline --dtype bf16 --runs 2
//   build/bench_pipeline --stages vae --sizes 512 --runs 3
//   build/bench_pipeline --dtype bf16 --sizes 1024 --release-text-encoder   # the peak RSS of `generate`
//   build/bench_pipeline --dtype bf16 --sizes 1024 --compare-vae tests/data/configs/dc-ae-lite-f32c32-sana-1.1-diffusers
//                                                         # DC-AE-Lite against the model's DC-AE, runs alternated
//   build/bench_pipeline --dtype bf16 --sizes 1024 --compare-vae tests/data/configs/taesana
//                                                         # the tiny preview decoder (AutoencoderTiny) likewise
//   build/bench_pipeline --dtype bf16 --stages vae --sizes 4096 --vae-tiling --runs 1 --no-warmup   # peak RSS, 1 decode
#include <ATen/Context.h>
#include <c10/core/InferenceMode.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <algorithm>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "bench_util.h"
#include "sana/diffusion/trigflow.h"
#include "sana/error.h"
#include "sana/io/config.h"
#include "sana/models/autoencoder_tiny.h"
#include "sana/models/dcae.h"
#include "sana/models/gemma2.h"
#include "sana/models/sana_transformer.h"
#include "sana/nn/module_io.h"
#include "sana/nn/quantize.h"
#include "sana/pipeline/prompt_encoding.h"
#include "sana/runtime.h"

using namespace sana;

namespace {

// Prints one stage and returns its median; the matrix-product rate of the same dtype is measured right after it,
// so the ratio compares like with like on a machine whose speed drifts.
double report(const std::string& what, const std::vector<double>& t, double gflop, const at::Device& device,
              at::ScalarType dtype) {
  const double sec = bench::median(t);
  const double rate = device.is_cpu() && gflop > 0 ? bench::sgemm_gflops(2048, 5, dtype) : 0.0;
  std::printf("%-40s median %9.1f ms (%zu runs)", what.c_str(), sec * 1e3, t.size());
  if (gflop > 0) std::printf("  %8.1f GFLOP  %6.1f GFLOP/s", gflop, gflop / sec);
  if (gflop > 0 && rate > 0) std::printf("  mm %.1f  ratio %.2f", rate, gflop / sec / rate);
  std::printf("  peak RSS %.0f MiB\n", bench::peak_rss_mib());
  std::fflush(stdout);
  return sec;
}

// Decodes with `a` and `b` in alternation (after one warm-up each), so that both see the same machine drift; returns
// the seconds of each run of each.
std::pair<std::vector<double>, std::vector<double>> time_alternating(int runs, const at::Device& device,
                                                                     const std::function<void()>& a,
                                                                     const std::function<void()>& b) {
  std::vector<double> ta, tb;
  a();
  b();
  synchronize(device);
  for (int r = 0; r < runs; ++r)
    for (auto [f, t] : {std::pair{&a, &ta}, std::pair{&b, &tb}}) {
      const double t0 = bench::now_seconds();
      (*f)();
      synchronize(device);
      t->push_back(bench::now_seconds() - t0);
    }
  return {ta, tb};
}

double minimum(const std::vector<double>& t) { return *std::min_element(t.begin(), t.end()); }

// A model of `Config` with random weights, built directly in the benchmark's dtype and device (no fp32 copy).
template <class Model, class Config>
std::shared_ptr<Model> build(const char* what, const Config& cfg, uint64_t seed, const at::TensorOptions& opts) {
  const double t0 = bench::now_seconds();
  auto model = std::make_shared<Model>(cfg, opts);
  nn::init_random(*model, seed);
  std::printf("%s: %lld parameters built in %.1f s\n", what, static_cast<long long>(nn::count_parameters(*model)),
              bench::now_seconds() - t0);
  return model;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"SANA-Sprint 0.6B pipeline stage benchmark (random weights)"};
  std::string configs = std::string(SANA_SOURCE_DIR) + "/tests/data/configs/Sana_Sprint_0.6B_1024px_diffusers";
  std::vector<int> sizes = {512, 1024};
  std::vector<std::string> stages = {"text", "transformer", "vae"};
  int runs = 3, threads = 0, chi_tokens = 245, prompt_tokens = 13;
  std::string device_name = "cpu", dtype_name = "fp32", compare_vae, quantize;
  bool tiled = false, cudnn_benchmark = true, release_text_encoder = false, no_warmup = false;
  app.add_option("--configs", configs, "diffusers pipeline folder with the component config.json files");
  app.add_option("--sizes", sizes, "image sizes (pixels)")->delimiter(',');
  app.add_option("--stages", stages, "text, transformer, vae")->delimiter(',');
  app.add_option("--runs", runs, "timed runs per measurement (after a warm-up)")->check(CLI::PositiveNumber);
  app.add_option("-t,--threads", threads, "CPU threads (0 = all cores)");
  app.add_option("--device", device_name, "cpu | cuda[:N]");
  app.add_option("--dtype", dtype_name, "fp32 | bf16 | fp16");
  app.add_option("--chi-tokens", chi_tokens, "tokens of the complex human instruction with <bos> (estimate)");
  app.add_option("--prompt-tokens", prompt_tokens, "tokens of the prompt itself (a 10-word prompt: about 13)");
  app.add_option("--cudnn-benchmark", cudnn_benchmark, "on: cuDNN times its convolution algorithms per shape (the "
                 "runtime's default); off: its heuristics, as PyTorch's default");
  app.add_flag("--release-text-encoder", release_text_encoder,
               "release the text encoder after its stage, as `sana-sprint generate` does (the one-call peak RSS)");
  app.add_option("--compare-vae", compare_vae,
                 "a second decoder's config folder, an AutoencoderDC (e.g. DC-AE-Lite) or an AutoencoderTiny (the "
                 "tiny preview decoder), whose decode is timed in alternation with the model's, with the ratios of "
                 "the decodes and of the end-to-end times");
  app.add_option("--quantize", quantize, "int8 | w8a8 | q4: the text encoder's and transformer's matrices quantized, as "
                 "`generate --quantize` makes them");
  app.add_flag("--vae-tiling", tiled, "time the tiled decode (512-px tiles) instead of the whole decode");
  app.add_flag("--no-warmup", no_warmup, "decodes: no untimed warm-up run first (with --runs 1: a single decode, for "
               "the peak RSS of a large tiled decode)");
  CLI11_PARSE(app, argc, argv);

  try {
    configure_runtime(threads);
    at::globalContext().setBenchmarkCuDNN(cudnn_benchmark);
    const at::Device device = parse_device(device_name);
    const at::ScalarType dtype = parse_dtype(dtype_name);
    const auto opts = at::TensorOptions().device(device).dtype(dtype);
    const std::set<std::string> want(stages.begin(), stages.end());
    std::printf("machine: %s\n", bench::machine_summary().c_str());
    std::printf("configs: %s, %s on %s\n", configs.c_str(), dtype_name.c_str(), device.str().c_str());
    c10::InferenceMode inference;

    // The real prompt format: CHI + prompt, padded to len(CHI tokens) + 298, of which <bos> and the last 299
    // positions are kept. Token ids are random: Gemma's vocabulary is not available here, so the CHI length is an
    // estimate (--chi-tokens; the ~1,050-character instruction at ~4.3 characters per Gemma token).
    const int64_t L = chi_tokens + 298, real = chi_tokens + prompt_tokens;
    at::Tensor am = at::zeros({1, L}, at::kLong);
    am.narrow(1, 0, real).fill_(1);
    const at::Tensor keep = at::cat({at::zeros({1}, at::kLong), at::arange(L - 299, L, at::kLong)});
    const at::Tensor mask = am.index_select(1, keep).to(device);
    const auto tcfg = load_sana_transformer_config(configs + "/transformer/config.json");
    at::Tensor embeds = at::randn({1, 300, tcfg.caption_channels}).to(opts);
    std::map<std::string, double> seconds;  // stage -> median, for the end-to-end line

    // The models are built before any stage runs, as load_pipeline loads them, and stay alive to the end as in the
    // server, so the peak RSS is the pipeline's; --release-text-encoder drops the text encoder after its stage as
    // `sana-sprint generate` does.
    const auto gcfg = load_gemma2_config(configs + "/text_encoder/config.json");
    const auto vcfg = load_autoencoder_dc_config(configs + "/vae/config.json");
    std::shared_ptr<Gemma2Model> text_encoder;
    std::shared_ptr<SanaTransformer2DModel> transformer;
    std::shared_ptr<AutoencoderDC> vae;
    // The compared decoder: another AutoencoderDC (DC-AE-Lite) or a tiny preview decoder (AutoencoderTiny).
    std::shared_ptr<torch::nn::Module> other_vae;
    std::function<at::Tensor(const at::Tensor&)> other_decode;
    std::function<double(int64_t)> other_flops;
    if (!compare_vae.empty()) {
      const std::string config = compare_vae + "/config.json";
      const auto j = nlohmann::json::parse(read_text_file(config), nullptr, /*allow_exceptions=*/false);
      const bool tiny = j.is_object() && j.value("_class_name", "") == "AutoencoderTiny";
      int channels = 0, factor = 0;
      if (tiny) {
        const auto tcfg_tiny = load_autoencoder_tiny_config(config);
        channels = tcfg_tiny.latent_channels, factor = tcfg_tiny.spatial_factor();
        auto model = std::make_shared<AutoencoderTiny>(tcfg_tiny, opts);
        other_decode = [m = model.get()](const at::Tensor& z) { return m->decode(z); };
        other_flops = [tcfg_tiny](int64_t lat) { return autoencoder_tiny_flops(tcfg_tiny, lat, lat); };
        other_vae = model;
      } else {
        const auto ocfg = load_autoencoder_dc_config(config);
        channels = ocfg.latent_channels, factor = ocfg.spatial_factor();
        auto model = std::make_shared<AutoencoderDC>(ocfg, opts);
        other_decode = [m = model.get()](const at::Tensor& z) { return m->decode(z); };
        other_flops = [ocfg](int64_t lat) { return dcae_decoder_flops(ocfg, lat, lat); };
        other_vae = model;
      }
      if (channels != vcfg.latent_channels || factor != vcfg.spatial_factor())
        throw Error("--compare-vae " + compare_vae + ": another latent space than " + configs + "/vae");
    }
    if (want.count("text")) text_encoder = build<Gemma2Model>("text encoder", gcfg, 1, opts);
    if (want.count("transformer")) transformer = build<SanaTransformer2DModel>("transformer", tcfg, 2, opts);
    if (want.count("vae")) {
      vae = std::make_shared<AutoencoderDC>(vcfg, opts);
      nn::init_random(*vae->decoder, 3);
      std::printf("vae: decoder %lld parameters\n", static_cast<long long>(nn::count_parameters(*vae->decoder)));
      if (other_vae) {
        nn::init_random(*other_vae, 4);
        std::printf("compared decoder (%s): %lld parameters (with any encoder)\n", compare_vae.c_str(),
                    static_cast<long long>(nn::count_parameters(*other_vae)));
      }
    }
    if (!quantize.empty()) {
      const nn::Int8Compute compute = nn::parse_quantize(quantize);
      for (torch::nn::Module* m : {static_cast<torch::nn::Module*>(text_encoder.get()),
                                   static_cast<torch::nn::Module*>(transformer.get())}) {
        if (!m) continue;
        const auto r = nn::quantize_int8(*m, {compute});
        std::printf("%s: %lld layers quantized, %.0f -> %.0f MiB\n", quantize.c_str(), static_cast<long long>(r.layers),
                    r.bytes_before / 1048576.0, r.bytes_after / 1048576.0);
      }
      release_free_memory();
      std::printf("quantized: RSS now %.0f MiB\n", bench::current_rss_mib());
    }
    std::printf("all models built: peak RSS %.0f MiB\n", bench::peak_rss_mib());

    if (want.count("text")) {
      const Gemma2Model& te = *text_encoder;
      at::Tensor ids = at::randint(4, gcfg.vocab_size, {1, L}, at::kLong);
      ids.narrow(1, real, L - real).fill_(0);
      at::Tensor hidden;
      report("text encoder, whole padded sequence (" + std::to_string(L) + ")",
             bench::time_runs(runs, device, [&] { hidden = te.forward(ids.to(device), am.to(device)); }),
             gemma2_flops(gcfg, 1, L) / 1e9, device, dtype);
      const at::Tensor prefix = ids.narrow(1, 0, chi_tokens).reshape({-1});
      const std::vector<int64_t> prefix_ids(prefix.data_ptr<int64_t>(), prefix.data_ptr<int64_t>() + chi_tokens);
      Gemma2PrefixState state;
      report("text encoder, instruction prefix (once)",
             bench::time_runs(runs, device, [&] { state = te.encode_prefix(prefix_ids); }),
             gemma2_flops(gcfg, 1, chi_tokens) / 1e9, device, dtype);
      const at::Tensor own = ids.narrow(1, chi_tokens, prompt_tokens).to(device);
      const at::Tensor own_mask = at::ones({1, prompt_tokens}, at::TensorOptions().dtype(at::kLong).device(device));
      at::Tensor rest;
      seconds["text"] = report("text encoder, prompt after the cached prefix",
                               bench::time_runs(runs, device, [&] { rest = te.forward_after(state, chi_tokens, own, own_mask); }),
                               0.0, device, dtype);
      embeds = hidden.index_select(1, keep.to(device));
      if (release_text_encoder) {
        hidden = rest = at::Tensor();
        state = Gemma2PrefixState();
        text_encoder.reset();
        release_free_memory();
        std::printf("text encoder released: RSS now %.0f MiB\n", bench::current_rss_mib());
      }
    }

    if (want.count("transformer")) {
      const SanaTrigFlow model(transformer);
      SanaTransformerInputs cond;
      // The pipeline hands the transformer the prompt's positions only (the rest is padding it would mask).
      std::tie(cond.encoder_hidden_states, cond.encoder_attention_mask) = without_padding(embeds, mask);
      const int64_t tokens = cond.encoder_hidden_states.size(1);
      cond.guidance = at::full({1}, 0.45f, at::TensorOptions().device(device));
      for (int size : sizes) {
        const int64_t lat = size / 32;
        const at::Tensor x = at::randn({1, tcfg.in_channels, lat, lat}).to(device);
        const at::Tensor t = at::full({1}, 1.5708f, at::TensorOptions().device(device));
        seconds["transformer" + std::to_string(size)] =
            report("transformer step " + std::to_string(size) + "^2 (" + std::to_string(tokens) + " text tokens)",
                   bench::time_runs(runs, device, [&] { model.forward(x, t, cond); }),
                   sana_transformer_flops(tcfg, 1, lat, lat, tokens) / 1e9, device, dtype);
      }
    }

    if (want.count("vae")) {
      for (int size : sizes) {
        const int64_t lat = size / vcfg.spatial_factor();
        const at::Tensor z = at::randn({1, vcfg.latent_channels, lat, lat}).to(opts);
        const std::string s = std::to_string(size), how = tiled ? " (tiled)" : "";
        const std::function<void()> decode = [&v = *vae, z, t = tiled] { t ? v.decode_tiled(z) : v.decode(z); };
        if (!other_vae) {
          seconds["vae" + s] = report("vae decode " + s + "^2" + how, bench::time_runs(runs, device, decode, !no_warmup),
                                      tiled ? 0.0 : dcae_decoder_flops(vcfg, lat, lat) / 1e9, device, dtype);
          continue;
        }
        // The compared decoder runs whole (tiling is the model's VAE's option).
        const auto [ta, tb] = time_alternating(runs, device, decode, [&, z] { other_decode(z); });
        report("vae decode " + s + "^2" + how, ta, tiled ? 0.0 : dcae_decoder_flops(vcfg, lat, lat) / 1e9, device, dtype);
        report("compared vae decode " + s + "^2", tb, other_flops(lat) / 1e9, device, dtype);
        seconds["vae" + s] = minimum(ta);
        seconds["othervae" + s] = minimum(tb);
        std::printf("compared vae / vae decode %s^2 (fastest runs, alternated): %.3f s / %.3f s = %.2f\n", s.c_str(),
                    minimum(tb), minimum(ta), minimum(tb) / minimum(ta));
      }
    }

    // End to end = the warm prompt + k steps + the decode (the pipeline adds only noise and scheduler arithmetic).
    if (seconds.count("text"))
      for (int size : sizes) {
        const std::string s = std::to_string(size);
        if (!seconds.count("transformer" + s) || !seconds.count("vae" + s)) continue;
        for (int steps : {1, 2, 4}) {
          const double rest = seconds["text"] + steps * seconds["transformer" + s];
          std::printf("end to end %s^2, %d step%s (warm prefix): %.2f s = text %.3f + %d x step %.3f + decode %.3f\n",
                      s.c_str(), steps, steps > 1 ? "s" : "", rest + seconds["vae" + s], seconds["text"], steps,
                      seconds["transformer" + s], seconds["vae" + s]);
          if (seconds.count("othervae" + s))
            std::printf("  with the compared vae: %.2f s (%.2f of the above)\n", rest + seconds["othervae" + s],
                        (rest + seconds["othervae" + s]) / (rest + seconds["vae" + s]));
        }
      }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_pipeline: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
