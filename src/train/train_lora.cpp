// `sana-sprint train-lora --objective flow`: a LoRA for a frozen flow teacher by its own flow-matching loss, as
// diffusers' Sana LoRA script trains one (docs/LORA.md, "Training"). The chosen linear layers of the transformer
// blocks get a side path x -> (x downᵀ) upᵀ (alpha / r): down drawn like PEFT's lora_A (uniform, bound 1/sqrt(in)),
// up zero, so step 0 is the teacher itself; only down and up learn. The export is the LoRA file diffusers writes
// (pytorch_lora_weights.safetensors, PEFT names under "transformer.").
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "sana/error.h"
#include "sana/io/config.h"
#include "sana/models/sana_transformer.h"
#include "sana/train/flow_loss.h"
#include "sana/train/trainer.h"
#include "train/flow_step.h"
#include "train/lora_adapters.h"
#include "train/training_run.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace sana {

using namespace detail;

void train_lora(const LoraTrainOptions& l, const TrainOptions& o) {
  if (l.objective != "flow")
    throw Error("--objective " + l.objective + ": train_lora trains a teacher's LoRA by flow matching; a Sprint "
                "student's LoRA is distilled by distill() with DistillOptions::lora_rank (train-lora --objective distill)");
  check_flow_law(l.logit_mean, l.logit_std, l.caption_dropout);
  const LoraShape shape{l.rank, l.alpha, l.target_modules};
  check_lora_shape(shape);
  const LatentCache cache = LatentCache::open(l.cache);
  // The base is checked from its config before the run touches the output folder.
  const fs::path config = fs::path(l.base) / "transformer" / "config.json";
  if (!fs::exists(config)) throw Error("--base: " + l.base + " has no transformer/config.json (a pipeline folder)");
  const SanaTransformerConfig cfg = load_sana_transformer_config(config.string());
  if (cfg.guidance_embeds)
    throw Error("--base: " + l.base + " is a Sprint student (its transformer embeds the guidance); --objective flow "
                "trains a flow teacher's LoRA");
  if (cache.latents.size(1) != cfg.in_channels || cache.prompt_embeds.size(2) != cfg.caption_channels)
    throw Error("--cache: its latents or text embeddings do not fit the base model's transformer");
  TrainingRun run("train-lora", o,
                  {{"objective", l.objective}, {"base", fs::absolute(l.base).string()}, {"rank", l.rank},
                   {"alpha", l.alpha}, {"target_modules", l.target_modules}, {"logit_mean", l.logit_mean},
                   {"logit_std", l.logit_std}, {"caption_dropout", l.caption_dropout},
                   {"cache", fs::absolute(l.cache).string()}},
                  {{"--base", l.base}, {"--cache", l.cache}});
  const auto opts = run.tensor_options();
  const auto teacher = frozen_transformer(l.base, opts);
  const NamedTensors params = add_lora_adapters(*teacher, shape, o.seed, opts);
  const TrainingRun::Optimization opt = run.optimize(params);
  std::shared_ptr<AutoencoderDC> vae;
  run.on_sample([&](const std::string& path) {
    if (!vae) vae = AutoencoderDC::from_pretrained((fs::path(l.base) / "vae").string(), opts);
    sample_flow_grid(path, l.base, teacher, nullptr, vae, cache, run.device(), o.seed);
  });
  run.on_snapshot([&](const std::string& dir) { export_lora(params, shape, dir); });
  int64_t count = 0;
  for (const auto& [name, t] : params) count += t.numel();
  run.note("train-lora (flow): rank " + std::to_string(l.rank) + " on " + std::to_string(params.size() / 2) +
           " layers, " + std::to_string(count) + " parameters, on " + std::to_string(cache.size()) + " cached samples");

  const FlowLaw law{l.logit_mean, l.logit_std, l.caption_dropout};
  for (int64_t step = run.begin(params); step < o.steps; ++step) {
    const double started = now();
    const Batch b = cache_batch(cache, o.seed, step, run.slice(), run.device(), opts.dtype().toScalarType());
    const FlowStepDraws d = draw_flow_step(run, cache, b, o.seed, step, o.batch_size, law);
    const FlowVelocityFn velocity = [&](const at::Tensor& x_s, const at::Tensor& t) {
      SanaTransformerInputs in = d.text;
      in.hidden_states = x_s, in.timestep = t;
      return teacher->forward(in);
    };
    finish_flow_step(run, flow_matching_loss_at(velocity, b.latents, d.s, d.eps), *opt.optim, params, o, opt.ema.get(), step,
                     started);
  }
  if (opt.ema) opt.ema->copy_to_params();
  if (!run.finish()) return;
  export_lora(params, shape, o.out);
  note("train-lora: wrote " + (fs::path(o.out) / "pytorch_lora_weights.safetensors").string() + " (use it with generate -m " +
       l.base + " --lora FILE)");
}

}  // namespace sana
