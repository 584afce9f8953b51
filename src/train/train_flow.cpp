// `sana-sprint train`: a SANA teacher by flow matching on a latent cache (ALGORITHM.md §1.2, §2).
//   x_s = (1 - s) x0 + s eps,  target v = eps - x0,  s = sigmoid(m + sd n)  (logit-normal),
// the transformer sees the dense time s in [0, 1]; with probability p a caption is replaced by the empty prompt's
// embedding and mask, which is what classifier-free guidance evaluates at sampling time.
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "sana/diffusion/flow_sampler.h"
#include "sana/error.h"
#include "sana/io/config.h"
#include "sana/models/dcae.h"
#include "sana/models/sana_transformer.h"
#include "sana/nn/module_io.h"
#include "sana/runtime.h"
#include "sana/train/flow_loss.h"
#include "train/trainer_internal.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace sana {
namespace {

// DiT/PixArt-style start: random weights (nn::init_random), the adaLN modulation and the output projection zeroed,
// so every block starts as the identity and the first prediction is 0.
void init_flow_model(SanaTransformer2DModel& m, uint64_t seed) {
  nn::init_random(m, seed);
  at::NoGradGuard no_grad;
  const double d = m.config().inner_dim();
  at::Generator gen = step_generator(seed, -1, 0x1417);
  for (const auto& block : *m.transformer_blocks)
    block->scale_shift_table.copy_(at::randn(block->scale_shift_table.sizes(), gen) / std::sqrt(d));
  m.scale_shift_table.copy_(at::randn(m.scale_shift_table.sizes(), gen) / std::sqrt(d));
  m.time_embed->linear->weight.zero_();
  m.time_embed->linear->bias.zero_();
  m.proj_out->weight.zero_();
  m.proj_out->bias.zero_();
}

}  // namespace

void train_flow(const FlowTrainOptions& f, const TrainOptions& o) {
  using namespace detail;
  const DistEnv env = dist_env_from_environment();
  const bool main_rank = env.rank == 0;
  const at::Device device = parse_device(o.device);
  const at::ScalarType dtype = parse_dtype(o.dtype);
  const auto opts = at::TensorOptions().dtype(dtype).device(device);

  const LatentCache cache = LatentCache::open(f.cache);
  json cfg_json = json::parse(read_text_file(f.config), nullptr, false);
  if (!cfg_json.is_object()) throw Error("--config: " + f.config + " is not a JSON object");
  cfg_json["_class_name"] = "SanaTransformer2DModel";
  cfg_json["timestep_scale"] = 0.001;  // diffusers' SanaPipeline: timestep = t (in [0, 1000]) * timestep_scale = s
  const SanaTransformerConfig cfg = parse_sana_transformer_config(cfg_json.dump(), f.config);
  if (cfg.guidance_embeds) throw Error("--config: a teacher has no guidance embedding (guidance_embeds must be false)");
  if (cfg.in_channels != cache.latents.size(1))
    throw Error("--config: in_channels " + std::to_string(cfg.in_channels) + " but the cache's latents have " +
                std::to_string(cache.latents.size(1)) + " channels");
  if (cfg.caption_channels != cache.prompt_embeds.size(2))
    throw Error("--config: caption_channels " + std::to_string(cfg.caption_channels) +
                " but the cache's prompt embeddings have " + std::to_string(cache.prompt_embeds.size(2)));

  auto model = std::make_shared<SanaTransformer2DModel>(cfg, opts);
  init_flow_model(*model, o.seed);
  const NamedTensors params = trainable(*model);
  const auto optim_ptr = make_optimizer(o.optimizer, params, o.lr, o.weight_decay);
  Optimizer& optim = *optim_ptr;
  std::unique_ptr<EMA> ema = o.ema_decay > 0 ? std::make_unique<EMA>(params, o.ema_decay) : nullptr;
  Slice slice;
  const std::unique_ptr<DataParallel> dp = data_parallel(env, o, device, slice);
  const std::string ckpt = checkpoint_path(o.out);
  const fs::path state_dir = fs::path(o.out) / "training";
  int64_t start = 0;
  if (o.resume) {
    start = restore_model_state(ckpt, params, optim, ema.get());
    if (main_rank) note("train: resumed from " + ckpt + " at step " + std::to_string(start));
  } else if (dp) {
    dp->broadcast_parameters(tensors_of(params));
  }
  const auto save_state = [&](int64_t step) {
    if (main_rank) save_checkpoint(ckpt, step, model_state(params, optim, ema.get()));
  };

  // Sample grids: 8 fixed captions, 20 Euler steps with CFG 4.5 from fixed noise, decoded by the base's VAE.
  std::shared_ptr<AutoencoderDC> vae;
  const auto sample = [&](int64_t step) {
    if (!main_rank) return;
    at::NoGradGuard no_grad;
    if (!vae) vae = AutoencoderDC::from_pretrained((fs::path(f.base) / "vae").string(), opts);
    const int64_t k = std::min<int64_t>(8, cache.size());
    const at::Tensor idx = at::arange(k, at::kLong);
    const at::Tensor cond = cache.prompt_embeds.index_select(0, idx).to(opts);
    const at::Tensor cmask = cache.prompt_attention_mask.index_select(0, idx).to(device);
    const at::Tensor embeds = at::cat({cache.null_embeds.unsqueeze(0).expand({k, -1, -1}).to(opts), cond});
    const at::Tensor mask = at::cat({cache.null_mask.unsqueeze(0).expand({k, -1}).to(device), cmask});
    const FlowVelocityFn batched = [&](const at::Tensor& x, const at::Tensor& s) {
      SanaTransformerInputs in;
      in.hidden_states = x, in.encoder_hidden_states = embeds, in.encoder_attention_mask = mask, in.timestep = s;
      return model->forward(in);
    };
    const FlowVelocityFn conditional = [&](const at::Tensor& x, const at::Tensor& s) {
      SanaTransformerInputs in;
      in.hidden_states = x, in.encoder_hidden_states = cond, in.encoder_attention_mask = cmask, in.timestep = s;
      return model->forward(in);
    };
    at::Generator gen = step_generator(o.seed, -2, 0x5a3e);
    const at::Tensor noise = at::randn({k, cache.latents.size(1), cache.latents.size(2), cache.latents.size(3)}, gen).to(opts);
    FlowSampleOptions so;
    so.steps = 20;
    const at::Tensor x0 = sample_flow(classifier_free_guidance(batched, conditional, 4.5), noise, so);
    const at::Tensor img = vae->decode(x0 / cache.scaling_factor).clamp(-1, 1).div(2).add(0.5);
    save_grid((state_dir / "samples" / ("step-" + std::to_string(step) + ".png")).string(), img, 4);
  };

  if (main_rank)
    note("train: teacher with " + std::to_string(nn::count_parameters(*model)) + " parameters on " +
         std::to_string(cache.size()) + " cached samples, global batch " + std::to_string(o.batch_size) + " over " +
         std::to_string(env.world_size) + " process(es)");
  std::unique_ptr<JsonlLog> log = main_rank ? std::make_unique<JsonlLog>((state_dir / "log.jsonl").string(), start) : nullptr;
  Progress progress("train", o.steps, start);
  const auto cpu = at::TensorOptions().dtype(at::kFloat);
  for (int64_t step = start; step < o.steps; ++step) {
    const double step_t0 = now();
    const Batch b = cache_batch(cache, o.seed, step, o.batch_size, slice, device, dtype);
    // Draws for the whole global batch; this process keeps its rows.
    at::Generator gen = step_generator(o.seed, step);
    const int64_t Bg = o.batch_size;
    const at::Tensor s = slice(at::sigmoid(f.logit_mean + f.logit_std * at::randn({Bg}, gen, cpu))).to(device);
    const at::Tensor eps = slice(at::randn({Bg, b.latents.size(1), b.latents.size(2), b.latents.size(3)}, gen, cpu)).to(opts);
    const at::Tensor drop = slice(at::rand({Bg}, gen, cpu) < f.caption_dropout).to(device);
    const at::Tensor embeds = at::where(drop.view({-1, 1, 1}), cache.null_embeds.unsqueeze(0).to(opts), b.embeds);
    const at::Tensor mask = at::where(drop.view({-1, 1}), cache.null_mask.unsqueeze(0).to(device), b.mask);

    const FlowVelocityFn velocity = [&](const at::Tensor& x_s, const at::Tensor& t) {
      SanaTransformerInputs in;
      in.hidden_states = x_s, in.encoder_hidden_states = embeds, in.encoder_attention_mask = mask, in.timestep = t;
      return model->forward(in);
    };
    const at::Tensor loss = flow_matching_loss_at(velocity, b.latents, s, eps);
    optim.zero_grad();
    loss.backward();
    const auto [gnorm, ok] = apply_gradients(optim, params, o.lr, o.warmup_steps, step, o.grad_clip, dp.get(), ema.get());
    double loss_v = loss.item<double>();
    if (dp) loss_v = dp->all_reduce_sum(loss_v) / env.world_size;
    if (log) log->write(step, {{"loss", loss_v}, {"grad_norm", gnorm}, {"lr", optim.lr()}, {"skipped", ok ? 0.0 : 1.0},
                                {"seconds", now() - step_t0}});
    if (main_rank && ((step + 1) % o.log_every == 0 || step + 1 == o.steps))
      progress.update(step + 1, {{"loss", loss_v}, {"gnorm", gnorm}});
    if ((step + 1) % o.checkpoint_every == 0 || step + 1 == o.steps) save_state(step + 1);
    if (o.sample_every > 0 && (step + 1) % o.sample_every == 0) sample(step + 1);
  }
  if (!main_rank) return;

  // Export a diffusers SanaPipeline folder (the EMA weights when there is an EMA).
  if (ema) ema->copy_to_params();
  if (o.sample_every >= 0) sample(o.steps);
  const json sched = {{"_class_name", "FlowMatchEulerDiscreteScheduler"}, {"num_train_timesteps", 1000}, {"shift", 1.0}};
  export_pipeline(o.out, "SanaPipeline", "FlowMatchEulerDiscreteScheduler", sched.dump(2) + "\n", *model,
                  cfg_json.dump(2) + "\n", f.base, cache, 20, 4.5);
  note("train: wrote the teacher pipeline " + o.out);
}

}  // namespace sana
