// `sana-sprint train-vae`: a DC-AE trained by reconstruction on an image-caption folder (the shapes world's tiny VAE).
// Loss: L1 + MSE between the image and decode(encode(image)) in [-1, 1]. DC-AE has no KL term; the latent scale is
// fixed afterwards by scaling_factor = 1 / std(latents), which makes the diffusion model's data unit-variance.
#include <ATen/core/grad_mode.h>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "sana/error.h"
#include "sana/io/atomic_file.h"
#include "sana/io/config.h"
#include "sana/io/image.h"
#include "sana/models/dcae.h"
#include "sana/nn/module_io.h"
#include "train/export.h"
#include "train/reconstruction_step.h"
#include "train/training_run.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace sana {
namespace {

using namespace detail;

// Every image of the folder in memory as uint8 [n, 3, H, W] (20k 64x64 images: 245 MB), all of the first one's size.
at::Tensor load_all_images(const ImageCaptionFolder& folder, int factor) {
  const int64_t n = static_cast<int64_t>(folder.images.size());
  const at::Tensor first = load_png(folder.images[0]);
  const int64_t H = first.size(1), W = first.size(2);
  if (H % factor || W % factor)
    throw Error("train-vae: images of " + std::to_string(W) + "x" + std::to_string(H) +
                " are not multiples of the VAE factor " + std::to_string(factor));
  at::Tensor images = at::empty({n, 3, H, W}, at::kByte);
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor img = load_png(folder.images[i]);
    if (img.sizes() != first.sizes())
      throw Error("train-vae: " + folder.images[i] + " is not a " + std::to_string(W) + "x" + std::to_string(H) +
                  " RGB image like the first");
    images[i].copy_((img * 255).round().to(at::kByte));
  }
  return images;
}

// {scaling_factor = 1 / std of the latents, reconstruction PSNR} over the first (up to) 1024 images.
std::pair<double, double> latent_statistics(const AutoencoderDC& model,
                                            const std::function<at::Tensor(const std::vector<int64_t>&)>& batch_of,
                                            int64_t n) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> lats;
  double se = 0;
  int64_t count = 0;
  const int64_t m = std::min<int64_t>(n, 1024);
  for (int64_t i = 0; i < m; i += 64) {
    std::vector<int64_t> idx;
    for (int64_t j = i; j < std::min<int64_t>(m, i + 64); ++j) idx.push_back(j);
    const at::Tensor x = batch_of(idx);
    const at::Tensor z = model.encode(x);
    lats.push_back(z.to(at::kFloat).cpu());
    se += (model.decode(z).clamp(-1, 1) - x).pow(2).sum().item<double>();
    count += x.numel();
  }
  return {1.0 / at::cat(lats).std().item<double>(), 10 * std::log10(4.0 / (se / count))};
}

void export_vae(const AutoencoderDC& model, const std::string& config, const std::string& out, double sf) {
  json j = json::parse(read_text_file(config), nullptr, false);
  j["_class_name"] = "AutoencoderDC";
  j["scaling_factor"] = sf;
  write_file_atomic((fs::path(out) / "config.json").string(), j.dump(2) + "\n");
  nn::save_state_dict(model, (fs::path(out) / "diffusion_pytorch_model.safetensors").string(), {{"format", "pt"}});
}

}  // namespace

void train_vae(const std::string& data, const std::string& config, const TrainOptions& o) {
  if (o.steps < 1)  // from a random initialisation, 0 steps would export noise as a model
    throw Error("--steps must be at least 1 for a model trained from scratch, got " + std::to_string(o.steps));
  const ImageCaptionFolder folder = ImageCaptionFolder::open(data);
  const AutoencoderDCConfig cfg = load_autoencoder_dc_config(config);
  TrainingRun run("train-vae", o, {{"config", fs::absolute(config).string()}, {"data", fs::absolute(data).string()}},
                  {{"--data", data}});
  const auto opts = run.tensor_options();
  run.note("train-vae: loading " + std::to_string(folder.images.size()) + " images from " + data);
  const at::Tensor images = load_all_images(folder, cfg.spatial_factor());
  const int64_t n = images.size(0);
  const auto batch_of = [&](const std::vector<int64_t>& idx) {
    return images.index_select(0, at::tensor(idx, at::kLong)).to(opts).div(127.5).sub(1.0);
  };

  AutoencoderDC model(cfg, opts);
  nn::init_random(model, o.seed);
  const NamedTensors params = trainable(model);
  const TrainingRun::Optimization opt = run.optimize(params);

  // Reconstruction grids of the first 8 images: originals above, reconstructions below.
  const at::Tensor preview = batch_of({0, 1 % n, 2 % n, 3 % n, 4 % n, 5 % n, 6 % n, 7 % n});
  run.on_sample([&](const std::string& path) {
    at::NoGradGuard no_grad;
    const at::Tensor rec = model.decode(model.encode(preview)).clamp(-1, 1);
    save_grid(path, at::cat({preview, rec}).div(2).add(0.5), 8);
  });
  run.note("train-vae: " + std::to_string(nn::count_parameters(model)) + " parameters, factor " +
           std::to_string(cfg.spatial_factor()) + ", latent " + std::to_string(cfg.latent_channels) + "x" +
           std::to_string(images.size(2) / cfg.spatial_factor()) + "x" +
           std::to_string(images.size(3) / cfg.spatial_factor()));
  const Slice& slice = run.slice();
  for (int64_t step = run.begin(params); step < o.steps; ++step) {
    const double step_t0 = now();
    const std::vector<int64_t> idx = batch_indices(o.seed, step, slice, n);
    const at::Tensor x = batch_of(idx);
    reconstruction_step(run, *opt.optim, params, opt.ema.get(), o, step, model.decode(model.encode(x)), x, step_t0);
  }

  // Export: EMA weights when enabled; scaling_factor from the latents of up to 1024 images.
  if (opt.ema) opt.ema->copy_to_params();
  if (!run.finish()) return;
  const auto [sf, psnr] = latent_statistics(model, batch_of, n);
  export_vae(model, config, o.out, sf);
  note("train-vae: wrote " + o.out + " (scaling_factor " + std::to_string(sf) + ", reconstruction PSNR " +
       std::to_string(psnr) + " dB on the first " + std::to_string(std::min<int64_t>(n, 1024)) + " images)");
}

}  // namespace sana
