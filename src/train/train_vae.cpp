// `sana-sprint train-vae`: a DC-AE trained by reconstruction on an image-caption folder (the shapes world's tiny VAE).
// Loss: L1 + MSE between the image and decode(encode(image)) in [-1, 1]. DC-AE has no KL term; the latent scale is
// fixed afterwards by scaling_factor = 1 / std(latents), which makes the diffusion model's data unit-variance.
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "sana/error.h"
#include "sana/io/config.h"
#include "sana/io/image.h"
#include "sana/models/dcae.h"
#include "sana/nn/module_io.h"
#include "sana/runtime.h"
#include "train/trainer_internal.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace sana {

void train_vae(const std::string& data, const std::string& config, const TrainOptions& o) {
  using namespace detail;
  const ImageCaptionFolder folder = ImageCaptionFolder::open(data);
  const at::Device device = parse_device(o.device);
  const auto opts = at::TensorOptions().dtype(parse_dtype(o.dtype)).device(device);
  const AutoencoderDCConfig cfg = load_autoencoder_dc_config(config);

  // All images in memory as uint8 (20k 64x64 images: 245 MB).
  const int64_t n = static_cast<int64_t>(folder.images.size());
  note("train-vae: loading " + std::to_string(n) + " images from " + data);
  at::Tensor first = load_png(folder.images[0]);
  const int64_t H = first.size(1), W = first.size(2);
  if (H % cfg.spatial_factor() || W % cfg.spatial_factor())
    throw Error("train-vae: images of " + std::to_string(W) + "x" + std::to_string(H) +
                " are not multiples of the VAE factor " + std::to_string(cfg.spatial_factor()));
  at::Tensor images = at::empty({n, 3, H, W}, at::kByte);
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor img = load_png(folder.images[i]);
    if (img.size(0) != 3 || img.size(1) != H || img.size(2) != W)
      throw Error("train-vae: " + folder.images[i] + " is not a " + std::to_string(W) + "x" + std::to_string(H) +
                  " RGB image like the first");
    images[i].copy_((img * 255).round().to(at::kByte));
  }
  auto batch_of = [&](const std::vector<int64_t>& idx) {
    return images.index_select(0, at::tensor(idx, at::kLong)).to(opts.dtype()).to(device).div(127.5).sub(1.0);
  };

  AutoencoderDC model(cfg, opts);
  nn::init_random(model, o.seed);
  const NamedTensors params = trainable(model);
  const auto optim_ptr = make_optimizer(o.optimizer, params, o.lr, o.weight_decay);
  Optimizer& optim = *optim_ptr;
  std::unique_ptr<EMA> ema = o.ema_decay > 0 ? std::make_unique<EMA>(params, o.ema_decay) : nullptr;

  const fs::path out(o.out), state_dir = out / "training";
  const std::string ckpt = checkpoint_path(o.out);
  int64_t start = 0;
  if (o.resume) {
    start = restore_model_state(ckpt, params, optim, ema.get());
    note("train-vae: resumed from " + ckpt + " at step " + std::to_string(start));
  }
  const auto save_state = [&](int64_t step) {
    save_checkpoint(ckpt, step, model_state(params, optim, ema.get()));
  };

  // Fixed images for the reconstruction grids: the first 8.
  const at::Tensor preview = batch_of({0, 1, 2, 3, 4, 5, 6, 7 < n ? 7 : 0});
  const auto sample = [&](int64_t step) {
    at::NoGradGuard no_grad;
    const at::Tensor rec = model.decode(model.encode(preview)).clamp(-1, 1);
    save_grid((state_dir / "samples" / ("step-" + std::to_string(step) + ".png")).string(),
              at::cat({preview, rec}).div(2).add(0.5), 8);
  };

  note("train-vae: " + std::to_string(nn::count_parameters(model)) + " parameters, factor " +
       std::to_string(cfg.spatial_factor()) + ", latent " + std::to_string(cfg.latent_channels) + "x" +
       std::to_string(H / cfg.spatial_factor()) + "x" + std::to_string(W / cfg.spatial_factor()));
  JsonlLog log((state_dir / "log.jsonl").string(), start);
  Progress progress("train-vae", o.steps, start);
  for (int64_t step = start; step < o.steps; ++step) {
    const double step_t0 = now();
    std::vector<int64_t> idx;
    for (int64_t j = 0; j < o.batch_size; ++j) idx.push_back(sample_index(o.seed, step, o.batch_size, j, n));
    const at::Tensor x = batch_of(idx);
    const at::Tensor y = model.decode(model.encode(x));
    const at::Tensor mse = (y - x).pow(2).mean(), l1 = (y - x).abs().mean();
    const at::Tensor loss = mse + l1;
    optim.zero_grad();
    loss.backward();
    const auto [gnorm, ok] = apply_gradients(optim, params, o.lr, o.warmup_steps, step, o.grad_clip, nullptr, ema.get());
    const double mse_v = mse.item<double>();
    const double psnr = 10 * std::log10(4.0 / std::max(mse_v, 1e-12));  // peak-to-peak 2 in [-1, 1]
    log.write(step, {{"loss", loss.item<double>()}, {"mse", mse_v}, {"l1", l1.item<double>()}, {"psnr", psnr},
                     {"grad_norm", gnorm}, {"lr", optim.lr()}, {"skipped", ok ? 0.0 : 1.0},
                                {"seconds", now() - step_t0}});
    if ((step + 1) % o.log_every == 0 || step + 1 == o.steps)
      progress.update(step + 1, {{"loss", loss.item<double>()}, {"psnr", psnr}, {"gnorm", gnorm}});
    if ((step + 1) % o.checkpoint_every == 0 || step + 1 == o.steps) save_state(step + 1);
    if (o.sample_every > 0 && (step + 1) % o.sample_every == 0) sample(step + 1);
  }

  // Export: EMA weights when enabled; scaling_factor from the latents of up to 1024 images.
  if (ema) ema->copy_to_params();
  if (o.sample_every >= 0) sample(o.steps);
  double sf = 1.0, psnr = 0;
  {
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> lats;
    double se = 0;
    int64_t count = 0;
    for (int64_t i = 0; i < std::min<int64_t>(n, 1024); i += 64) {
      std::vector<int64_t> idx;
      for (int64_t j = i; j < std::min<int64_t>({n, i + 64, 1024}); ++j) idx.push_back(j);
      const at::Tensor x = batch_of(idx);
      const at::Tensor z = model.encode(x);
      lats.push_back(z.to(at::kFloat).cpu());
      se += (model.decode(z).clamp(-1, 1) - x).pow(2).sum().item<double>();
      count += x.numel();
    }
    sf = 1.0 / at::cat(lats).std().item<double>();
    psnr = 10 * std::log10(4.0 / (se / count));
  }
  json j = json::parse(read_text_file(config), nullptr, false);
  j["_class_name"] = "AutoencoderDC";
  j["scaling_factor"] = sf;
  write_text((out / "config.json").string(), j.dump(2) + "\n");
  nn::save_state_dict(model, (out / "diffusion_pytorch_model.safetensors").string(), {{"format", "pt"}});
  note("train-vae: wrote " + o.out + " (scaling_factor " + std::to_string(sf) + ", reconstruction PSNR " +
       std::to_string(psnr) + " dB on the first " + std::to_string(std::min<int64_t>(n, 1024)) + " images)");
}

}  // namespace sana
