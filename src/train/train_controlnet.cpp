// `sana-sprint train-controlnet --objective flow`: a ControlNet for a frozen flow teacher (sana/train/trainer.h).
// The teacher's flow-matching loss with the ControlNet's residuals added: v = transformer(x_s, s, text,
// residuals = controlnet(x_s, s, text, control)), target eps - x0; only the ControlNet learns. Captions drop to the
// empty prompt as in the teacher's training, so classifier-free guidance works with the control on.
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "sana/diffusion/trigflow.h"
#include "sana/error.h"
#include "sana/io/atomic_file.h"
#include "sana/models/dcae.h"
#include "sana/models/sana_controlnet.h"
#include "sana/nn/module_io.h"
#include "sana/pipeline/sana.h"
#include "sana/runtime.h"
#include "sana/train/flow_loss.h"
#include "train/export.h"
#include "train/flow_step.h"
#include "train/training_run.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace sana {
namespace {

using namespace detail;

void check_cache(const LatentCache& cache, const SanaTransformerConfig& t) {
  if (!cache.control_latents.defined())
    throw Error("--cache: it holds no control latents (make it from a folder with NAME.control.png images, e.g. "
                "`shapes make-dataset --control`)");
  if (cache.latents.size(1) != t.in_channels || cache.prompt_embeds.size(2) != t.caption_channels)
    throw Error("--cache: its latents or text embeddings do not fit the base model's transformer");
}

}  // namespace

void train_controlnet_flow(const ControlNetFlowOptions& f, const TrainOptions& o) {
  check_flow_law(f.logit_mean, f.logit_std, f.caption_dropout);
  const LatentCache cache = LatentCache::open(f.cache);
  const auto opts = at::TensorOptions().dtype(parse_dtype(o.dtype)).device(parse_device(o.device));
  const auto teacher = frozen_transformer(f.base, opts);
  check_cache(cache, teacher->config());
  const int teacher_layers = teacher->config().num_layers;
  if (f.num_layers < 0 || f.num_layers > teacher_layers)
    throw Error("--num-layers must be between 1 and the teacher's " + std::to_string(teacher_layers) +
                " blocks (0: a quarter of them), got " + std::to_string(f.num_layers));
  const int L = f.num_layers > 0 ? f.num_layers : (teacher_layers + 3) / 4;
  TrainingRun run("train-controlnet", o,
                  {{"objective", "flow"}, {"base", fs::absolute(f.base).string()}, {"num_layers", L},
                   {"logit_mean", f.logit_mean}, {"logit_std", f.logit_std}, {"caption_dropout", f.caption_dropout},
                   {"cache", fs::absolute(f.cache).string()}},
                  {{"--base", f.base}, {"--cache", f.cache}});
  auto controlnet = controlnet_from_transformer(*teacher, L);
  const NamedTensors params = trainable(*controlnet);
  const TrainingRun::Optimization opt = run.optimize(params);
  std::shared_ptr<AutoencoderDC> vae;
  run.on_sample([&](const std::string& path) {
    if (!vae) vae = AutoencoderDC::from_pretrained((fs::path(f.base) / "vae").string(), opts);
    // (The controls are not shown: the cache holds only their latents, and a VAE trained on scenes decodes a
    // scribble's latent poorly, although the latent carries the outline.)
    sample_flow_grid(path, f.base, teacher, controlnet, vae, cache, run.device(), o.seed);
  });
  run.on_snapshot([&](const std::string& dir) { export_controlnet(*controlnet, dir); });
  run.note("train-controlnet (flow): " + std::to_string(L) + " of the teacher's " +
           std::to_string(teacher->config().num_layers) + " blocks, " + std::to_string(nn::count_parameters(*controlnet)) +
           " parameters, on " + std::to_string(cache.size()) + " cached triples");

  const FlowLaw law{f.logit_mean, f.logit_std, f.caption_dropout};
  for (int64_t step = run.begin(params); step < o.steps; ++step) {
    const double started = now();
    const Batch b = cache_batch(cache, o.seed, step, run.slice(), run.device(), opts.dtype().toScalarType());
    const FlowStepDraws d = draw_flow_step(run, cache, b, o.seed, step, o.batch_size, law);
    const ControlNetCall control{controlnet, b.control, 1.0};
    const FlowVelocityFn velocity = [&](const at::Tensor& x_s, const at::Tensor& t) {
      SanaTransformerInputs in = d.text;
      in.hidden_states = x_s, in.timestep = t;
      return sana_velocity(*teacher, control, in);
    };
    finish_flow_step(run, flow_matching_loss_at(velocity, b.latents, d.s, d.eps), *opt.optim, params, o, opt.ema.get(), step,
                     started);
  }
  if (opt.ema) opt.ema->copy_to_params();
  if (!run.finish()) return;
  export_controlnet(*controlnet, o.out);
  note("train-controlnet: wrote the ControlNet " + o.out + " (use it with generate -m " + f.base +
       " --controlnet " + o.out + ")");
}

}  // namespace sana
