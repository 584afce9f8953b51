// `sana-sprint train`: a SANA teacher by flow matching on a latent cache (docs/ARCHITECTURE.md, "Flow matching").
//   x_s = (1 - s) x0 + s eps,  target v = eps - x0,  s = sigmoid(m + sd n)  (logit-normal),
// the transformer sees the dense time s in [0, 1]; with probability p a caption is replaced by the empty prompt's
// embedding and mask, which is what classifier-free guidance evaluates at sampling time.
#include <ATen/core/grad_mode.h>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "sana/error.h"
#include "sana/io/config.h"
#include "sana/models/dcae.h"
#include "sana/models/sana_transformer.h"
#include "sana/nn/module_io.h"
#include "sana/pipeline/sana.h"
#include "sana/train/flow_loss.h"
#include "train/export.h"
#include "train/flow_step.h"
#include "train/training_run.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace sana {
namespace {

using namespace detail;

// The exported scheduler: diffusers' flow Euler without time shift (what the teacher is sampled with).
const json& teacher_scheduler_config() {
  static const json config = {
      {"_class_name", "FlowMatchEulerDiscreteScheduler"}, {"num_train_timesteps", 1000}, {"shift", 1.0}};
  return config;
}

// The teacher's transformer config: the user's, with timestep_scale 0.001 so that diffusers' SanaPipeline, which
// passes t = 1000 s, hands the model s. Checked against the cache's latent and text widths.
json teacher_config(const FlowTrainOptions& f, const LatentCache& cache) {
  json j = json::parse(read_text_file(f.config), nullptr, false);
  if (!j.is_object()) throw Error("--config: " + f.config + " is not a JSON object");
  j["_class_name"] = "SanaTransformer2DModel";
  j["timestep_scale"] = 0.001;
  const SanaTransformerConfig cfg = parse_sana_transformer_config(j.dump(), f.config);
  if (cfg.guidance_embeds) throw Error("--config: a teacher has no guidance embedding (guidance_embeds must be false)");
  if (cfg.in_channels != cache.latents.size(1))
    throw Error("--config: in_channels " + std::to_string(cfg.in_channels) + " but the cache's latents have " +
                std::to_string(cache.latents.size(1)) + " channels");
  if (cfg.caption_channels != cache.prompt_embeds.size(2))
    throw Error("--config: caption_channels " + std::to_string(cfg.caption_channels) +
                " but the cache's prompt embeddings have " + std::to_string(cache.prompt_embeds.size(2)));
  return j;
}

// DiT/PixArt-style start: random weights (nn::init_random), the adaLN modulation and the output projection zeroed,
// so every block starts as the identity and the first prediction is 0.
void init_flow_model(SanaTransformer2DModel& m, uint64_t seed) {
  nn::init_random(m, seed);
  at::NoGradGuard no_grad;
  const double d = m.config().inner_dim();
  at::Generator gen = step_generator(seed, -1, streams::kTeacherInit);
  for (const auto& block : *m.transformer_blocks)
    block->scale_shift_table.copy_(at::randn(block->scale_shift_table.sizes(), gen) / std::sqrt(d));
  m.scale_shift_table.copy_(at::randn(m.scale_shift_table.sizes(), gen) / std::sqrt(d));
  m.time_embed->linear->weight.zero_();
  m.time_embed->linear->bias.zero_();
  m.proj_out->weight.zero_();
  m.proj_out->bias.zero_();
}

// Sample grid: the first 8 cached captions through the teacher pipeline (20 Euler steps, CFG 4.5, fixed noise).
void sample_teacher_grid(const std::string& path, const std::shared_ptr<SanaTransformer2DModel>& model,
                         const std::shared_ptr<AutoencoderDC>& vae, const LatentCache& cache, const at::Device& device,
                         uint64_t seed) {
  PipelineComponents c;
  c.transformer = model, c.vae = vae, c.device = device;
  const SanaPipeline pipe(c, parse_flow_scheduler_config(teacher_scheduler_config().dump(), "teacher scheduler"));
  GenerateOptions o = grid_options(cache, c.vae_scale_factor(), seed, /*with_control=*/false);
  o.steps = 20;
  save_grid(path, pipe.generate(o).images, 4);
}

}  // namespace

void train_flow(const FlowTrainOptions& f, const TrainOptions& o) {
  check_flow_law(f.logit_mean, f.logit_std, f.caption_dropout);
  if (o.steps < 1)  // from a random initialisation, 0 steps would export noise as a model
    throw Error("--steps must be at least 1 for a model trained from scratch, got " + std::to_string(o.steps));
  const LatentCache cache = LatentCache::open(f.cache);
  const json cfg_json = teacher_config(f, cache);
  TrainingRun run("train", o,
                  {{"config", cfg_json}, {"logit_mean", f.logit_mean}, {"logit_std", f.logit_std},
                   {"caption_dropout", f.caption_dropout}},
                  {{"--cache", f.cache}, {"--base", f.base}});
  const auto opts = run.tensor_options();
  const at::Device device = run.device();
  auto model = std::make_shared<SanaTransformer2DModel>(parse_sana_transformer_config(cfg_json.dump(), f.config), opts);
  init_flow_model(*model, o.seed);
  const NamedTensors params = trainable(*model);
  const TrainingRun::Optimization opt = run.optimize(params);
  std::shared_ptr<AutoencoderDC> vae;  // loaded for the first grid
  run.on_sample([&](const std::string& path) {
    if (!vae) vae = AutoencoderDC::from_pretrained((fs::path(f.base) / "vae").string(), opts);
    sample_teacher_grid(path, model, vae, cache, device, o.seed);
  });
  const auto write_teacher = [&](const std::string& dir) {
    export_pipeline(dir, "SanaPipeline", teacher_scheduler_config().dump(2) + "\n", *model, cfg_json.dump(2) + "\n",
                    f.base, cache, 20, 4.5);
  };
  run.on_snapshot(write_teacher);
  run.note("train: teacher with " + std::to_string(nn::count_parameters(*model)) + " parameters on " +
           std::to_string(cache.size()) + " cached samples, global batch " + std::to_string(o.batch_size) + " over " +
           std::to_string(run.world_size()) + " process(es)");

  const FlowLaw law{f.logit_mean, f.logit_std, f.caption_dropout};
  for (int64_t step = run.begin(params); step < o.steps; ++step) {
    const double started = now();
    const Batch b = cache_batch(cache, o.seed, step, run.slice(), device, opts.dtype().toScalarType());
    const FlowStepDraws d = draw_flow_step(run, cache, b, o.seed, step, o.batch_size, law);
    const FlowVelocityFn velocity = [&](const at::Tensor& x_s, const at::Tensor& t) {
      SanaTransformerInputs in = d.text;
      in.hidden_states = x_s, in.timestep = t;
      return model->forward(in);
    };
    finish_flow_step(run, flow_matching_loss_at(velocity, b.latents, d.s, d.eps), *opt.optim, params, o, opt.ema.get(), step,
                     started);
  }

  // Export a diffusers SanaPipeline folder (the EMA weights when there is an EMA).
  if (opt.ema) opt.ema->copy_to_params();
  if (!run.finish()) return;
  write_teacher(o.out);
  note("train: wrote the teacher pipeline " + o.out);
}

}  // namespace sana
