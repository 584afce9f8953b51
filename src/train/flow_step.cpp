// The shared flow-matching training step (flow_step.h).
#include "train/flow_step.h"

#include <cmath>
#include <filesystem>

#include "sana/error.h"
#include "sana/pipeline/sana.h"
#include "train/export.h"

namespace sana::detail {

void check_flow_law(double logit_mean, double logit_std, double caption_dropout) {
  if (!std::isfinite(logit_mean)) throw Error("--logit-mean must be a finite number");
  if (!(std::isfinite(logit_std) && logit_std > 0)) throw Error("--logit-std must be a positive number");
  if (!(caption_dropout >= 0 && caption_dropout <= 1)) throw Error("--caption-dropout must be in [0, 1]");
}

FlowStepDraws draw_flow_step(const TrainingRun& run, const LatentCache& cache, const Batch& b, uint64_t seed,
                             int64_t step, int64_t Bg, const FlowLaw& law) {
  const auto cpu = at::TensorOptions().dtype(at::kFloat);
  const auto opts = run.tensor_options();
  const Slice& slice = run.slice();
  at::Generator gen = step_generator(seed, step);
  FlowStepDraws d;
  d.s = slice(at::sigmoid(law.logit_mean + law.logit_std * at::randn({Bg}, gen, cpu))).to(run.device());
  d.eps = slice(at::randn({Bg, b.latents.size(1), b.latents.size(2), b.latents.size(3)}, gen, cpu)).to(opts);
  const at::Tensor drop = slice(at::rand({Bg}, gen, cpu) < law.caption_dropout).to(run.device());
  d.text.encoder_hidden_states = at::where(drop.view({-1, 1, 1}), cache.null_embeds.unsqueeze(0).to(opts), b.embeds);
  d.text.encoder_attention_mask = at::where(drop.view({-1, 1}), cache.null_mask.unsqueeze(0).to(run.device()), b.mask);
  return d;
}

void finish_flow_step(TrainingRun& run, const at::Tensor& loss, Optimizer& optim, const NamedTensors& params,
                      const TrainOptions& o, EMA* ema, int64_t step, double started) {
  optim.zero_grad();
  loss.backward();
  const auto [gnorm, ok] =
      apply_gradients(optim, params, o.lr, o.warmup_steps, step, o.grad_clip, run.data_parallel(), ema);
  double loss_v = loss.item<double>();
  if (run.data_parallel()) loss_v = run.data_parallel()->all_reduce_sum(loss_v) / run.world_size();
  run.end_step(step,
               {{"loss", loss_v}, {"grad_norm", gnorm}, {"lr", optim.lr()}, {"skipped", ok ? 0.0 : 1.0},
                {"seconds", now() - started}},
               {{"loss", loss_v}, {"gnorm", gnorm}});
}

std::shared_ptr<SanaTransformer2DModel> frozen_transformer(const std::string& folder, const at::TensorOptions& opts) {
  namespace fs = std::filesystem;
  if (!fs::exists(fs::path(folder) / "transformer" / "config.json"))
    throw Error("--base: " + folder + " has no transformer/config.json (a pipeline folder)");
  auto t = SanaTransformer2DModel::from_pretrained((fs::path(folder) / "transformer").string(), opts);
  for (auto& p : t->parameters()) p.set_requires_grad(false);
  return t;
}

void sample_flow_grid(const std::string& path, const std::string& base,
                      const std::shared_ptr<SanaTransformer2DModel>& transformer,
                      const std::shared_ptr<SanaControlNetModel>& controlnet, const std::shared_ptr<AutoencoderDC>& vae,
                      const LatentCache& cache, const at::Device& device, uint64_t seed) {
  namespace fs = std::filesystem;
  PipelineComponents c;
  c.transformer = transformer, c.controlnet = controlnet, c.vae = vae, c.device = device;
  const SanaPipeline pipe(c, load_flow_scheduler_config((fs::path(base) / "scheduler" / "scheduler_config.json").string()));
  GenerateOptions o = grid_options(cache, c.vae_scale_factor(), seed, /*with_control=*/controlnet != nullptr);
  o.steps = 20;
  save_grid(path, pipe.generate(o).images, 8);
}

}  // namespace sana::detail
