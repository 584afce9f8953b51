// `sana-sprint train-tiny-decoder`: a tiny preview decoder (AutoencoderTiny's decoder, docs/DECODERS.md) distilled
// from a pipeline's DC-AE decoder on a latent cache. The target of a latent is what the full decoder makes of it, so
// the tiny one learns the decoder, not the data; latents get some Gaussian noise so that a sampler's latents, which
// are not exactly the encoder's, still decode sensibly. Loss: L1 + MSE in [-1, 1].
#include <ATen/core/grad_mode.h>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "sana/error.h"
#include "sana/io/atomic_file.h"
#include "sana/io/config.h"
#include "sana/models/autoencoder_tiny.h"
#include "sana/models/dcae.h"
#include "sana/nn/module_io.h"
#include "sana/train/data.h"
#include "sana/train/trainer.h"
#include "train/export.h"
#include "train/reconstruction_step.h"
#include "train/training_run.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace sana {
namespace {

using namespace detail;

void export_tiny_decoder(const AutoencoderTiny& model, const std::string& config, const std::string& out) {
  json j = json::parse(read_text_file(config), nullptr, false);
  j["_class_name"] = "AutoencoderTiny";
  const AutoencoderTinyConfig& c = model.config();
  j["latent_channels"] = c.latent_channels;
  j["decoder_block_out_channels"] = c.decoder_block_out_channels;
  j["num_decoder_blocks"] = c.num_decoder_blocks;
  j["scaling_factor"] = c.scaling_factor;
  fs::create_directories(out);
  write_file_atomic((fs::path(out) / "config.json").string(), j.dump(2) + "\n");
  nn::save_state_dict(model, (fs::path(out) / "diffusion_pytorch_model.safetensors").string(), {{"format", "pt"}});
}

// The full decoder's image of transformer-space latents z, clamped to [-1, 1] as every pipeline clamps it.
at::Tensor full_decode(const AutoencoderDC& vae, const at::Tensor& z) {
  at::NoGradGuard no_grad;
  return vae.decode(z / vae.config().scaling_factor).clamp(-1, 1);
}

}  // namespace

void train_tiny_decoder(const TinyDecoderOptions& t, const TrainOptions& o) {
  if (o.steps < 1) throw Error("--steps must be at least 1 for a model trained from scratch, got " + std::to_string(o.steps));
  if (!(t.latent_noise >= 0 && t.latent_noise <= 10))
    throw Error("--latent-noise must be between 0 and 10, got " + std::to_string(t.latent_noise));
  const LatentCache cache = LatentCache::open(t.cache);
  AutoencoderTinyConfig cfg = load_autoencoder_tiny_config(t.config);
  const std::string vae_dir = (fs::path(t.base) / "vae").string();
  TrainingRun run("train-tiny-decoder", o,
                  {{"config", fs::absolute(t.config).string()}, {"cache", fs::absolute(t.cache).string()},
                   {"base", fs::absolute(t.base).string()}, {"latent_noise", t.latent_noise}},
                  {{"--cache", t.cache}, {"--base", t.base}});
  const auto opts = run.tensor_options();
  const auto vae = AutoencoderDC::from_pretrained(vae_dir, opts);
  if (cfg.latent_channels != vae->config().latent_channels || cfg.spatial_factor() != vae->config().spatial_factor())
    throw Error("--config " + t.config + ": a decoder of " + std::to_string(cfg.latent_channels) + " channels and factor " +
                std::to_string(cfg.spatial_factor()) + " cannot stand in for " + vae_dir + " (" +
                std::to_string(vae->config().latent_channels) + " channels, factor " +
                std::to_string(vae->config().spatial_factor()) + ")");
  if (cache.latents.size(1) != cfg.latent_channels)
    throw Error("--cache " + t.cache + ": latents of " + std::to_string(cache.latents.size(1)) +
                " channels, the decoder reads " + std::to_string(cfg.latent_channels));
  cfg.scaling_factor = 1.0;  // it reads the transformer's latents, as TAESD does
  const int64_t n = cache.size();

  AutoencoderTiny model(cfg, opts);
  nn::init_random(model, o.seed);
  const NamedTensors params = trainable(model);
  const TrainingRun::Optimization opt = run.optimize(params);

  // Preview grid: the full decoder's images of the first 8 latents above, the tiny decoder's below.
  const at::Tensor preview = cache.latents.slice(0, 0, std::min<int64_t>(8, n)).to(opts);
  const at::Tensor preview_full = full_decode(*vae, preview);
  run.on_sample([&](const std::string& path) {
    at::NoGradGuard no_grad;
    save_grid(path, at::cat({preview_full, model.decode(preview).clamp(-1, 1)}).div(2).add(0.5), preview.size(0));
  });
  run.note("train-tiny-decoder: " + std::to_string(nn::count_parameters(model)) + " parameters (the full decoder: " +
           std::to_string(nn::count_parameters(*vae->decoder)) + "), " + std::to_string(n) + " latents of " +
           c10::str(cache.latents.sizes().slice(1)));
  const Slice& slice = run.slice();
  for (int64_t step = run.begin(params); step < o.steps; ++step) {
    const double step_t0 = now();
    const std::vector<int64_t> idx = batch_indices(o.seed, step, slice, n);
    at::Tensor z = cache.latents.index_select(0, at::tensor(idx, at::kLong));
    if (t.latent_noise > 0) {  // noise of a std drawn per latent from U(0, latent_noise), the same on every process
      at::Generator gen = step_generator(o.seed, step, 1);
      const at::Tensor all_sigma = at::rand({o.batch_size, 1, 1, 1}, gen) * t.latent_noise;
      const at::Tensor all_eps = at::randn({o.batch_size, z.size(1), z.size(2), z.size(3)}, gen);
      const auto mine = [&](const at::Tensor& a) { return a.slice(0, slice.begin(), slice.begin() + slice.size()); };
      z = z + mine(all_sigma) * mine(all_eps);
    }
    z = z.to(opts);
    reconstruction_step(run, *opt.optim, params, opt.ema.get(), o, step, model.decode(z), full_decode(*vae, z), step_t0);
  }

  if (opt.ema) opt.ema->copy_to_params();
  if (!run.finish()) return;
  export_tiny_decoder(model, t.config, o.out);
  // Agreement with the full decoder on up to 512 latents without noise: the number docs/DECODERS.md reports.
  at::NoGradGuard no_grad;
  double se = 0;
  int64_t count = 0;
  for (int64_t i = 0; i < std::min<int64_t>(n, 512); i += 64) {
    const at::Tensor z = cache.latents.slice(0, i, std::min<int64_t>(n, i + 64)).to(opts);
    se += (model.decode(z).clamp(-1, 1) - full_decode(*vae, z)).pow(2).sum().item<double>();
    count += z.size(0) * 3 * z.size(2) * z.size(3) * cfg.spatial_factor() * cfg.spatial_factor();
  }
  note("train-tiny-decoder: wrote " + o.out + " (PSNR against the full decoder " +
       std::to_string(10 * std::log10(4.0 / (se / count))) + " dB on the first " +
       std::to_string(std::min<int64_t>(n, 512)) + " latents)");
}

}  // namespace sana
