// SanaSprintPipeline (sana_sprint.h).
#include "sana/pipeline/sana_sprint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "sana/diffusion/trigflow.h"
#include "sana/error.h"
#include "sana/io/config.h"
#include "sana/pipeline/decode.h"
#include "sana/pipeline/image_input.h"
#include "sana/pipeline/prompt_encoding.h"
#include "sana/pipeline/resolution.h"

namespace fs = std::filesystem;

namespace sana {
namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

}  // namespace

SCMTimestepOptions scm_timestep_options(const GenerateOptions& o) {
  SCMTimestepOptions s;
  s.steps = o.steps;
  s.max_timesteps = o.max_timesteps;
  s.intermediate_timesteps = o.intermediate_timesteps;
  s.timesteps = o.timesteps;
  return s;
}

// diffusers' get_timesteps: t_start = int(max(n - min(n * strength, n), 0)), the product and difference in doubles as
// Python computes them. Only a strength of (about) 0 leaves nothing to run.
int img2img_first_step(int steps, double strength) {
  if (!(strength >= 0 && strength <= 1)) throw Error("strength: must be in [0, 1], got " + c10::str(strength));
  const double init = std::min(steps * strength, static_cast<double>(steps));
  const int first = static_cast<int>(std::max(steps - init, 0.0));
  if (steps - first < 1)
    throw Error("strength: " + c10::str(strength) + " with " + std::to_string(steps) +
                " steps leaves no step to run (img2img skips int(steps - steps * strength) steps, as diffusers does)");
  return first;
}

SanaSprintPipeline::SanaSprintPipeline(PipelineComponents components, SCMSchedulerConfig scheduler_config)
    : Pipeline(std::move(components)), scheduler_config(std::move(scheduler_config)) {
  if (!this->components.transformer->config().guidance_embeds)
    throw Error("SanaSprintPipeline: the transformer has no guidance embedding (a flow teacher: use SanaPipeline)");
}

SanaSprintPipeline SanaSprintPipeline::from_pretrained(const std::string& dir, const at::Device& device,
                                                       at::ScalarType dtype) {
  PipelineComponents c = PipelineComponents::from_pretrained(dir, device, dtype);
  return SanaSprintPipeline(std::move(c),
                            load_scm_scheduler_config((fs::path(dir) / "scheduler" / "scheduler_config.json").string()));
}

// img2img start: the init image's latent (scaled by scaling_factor and sigma_data) noised to the first kept time,
// cos t0 * latent + sin t0 * sigma_d * noise, the noise being the call's first draw.
at::Tensor SanaSprintPipeline::noised_init_image(const GenerateOptions& o, GenerateResult& r, const at::Tensor& t0,
                                                 at::Generator& gen, int64_t B) const {
  r.vae_encode_input = preprocess_image(o.image, r.generated_height, r.generated_width, "image");
  const double sigma_d = scheduler_config.sigma_data;
  at::Tensor latents = encode_image(components, r.vae_encode_input) * components.vae->config().scaling_factor * sigma_d;
  if (B % latents.size(0) != 0)
    throw Error("image: " + std::to_string(latents.size(0)) + " init images for " + std::to_string(B) + " images");
  r.image_latents = latents = latents.repeat({B / latents.size(0), 1, 1, 1});
  r.initial_noise = at::randn(latents.sizes(), gen, at::TensorOptions().dtype(at::kFloat));
  const at::Tensor noise = r.initial_noise.to(components.device) * sigma_d;
  return at::cos(t0) * latents + at::sin(t0) * noise;
}

GenerateResult SanaSprintPipeline::generate(const GenerateOptions& o, const ProgressFn& progress) const {
  c10::InferenceMode inference;
  const SanaTransformer2DModel& transformer = *components.transformer;
  GenerateResult r;
  std::tie(r.generated_height, r.generated_width) = generation_size(components, o);
  double t0 = now();
  std::tie(r.prompt_embeds, r.prompt_attention_mask) = prompt_embeddings_for(components, o);
  const at::Tensor& embeds = r.prompt_embeds;
  if (progress && !o.prompt_embeds.defined()) progress("text encoder", now() - t0);
  const int64_t B = embeds.size(0);

  // Schedule; img2img skips its first steps. Then the initial latent from the call's one CPU generator.
  SCMScheduler scheduler(scheduler_config);
  r.timesteps = scheduler.set_timesteps(scm_timestep_options(o));
  const int first = o.image.defined() ? img2img_first_step(scheduler.num_steps(), o.strength) : 0;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const int f = components.vae_scale_factor();
  const double sigma_d = scheduler_config.sigma_data;
  at::Tensor x;
  if (o.image.defined()) {
    x = noised_init_image(o, r, r.timesteps.narrow(0, first, 1).to(components.device), gen, B);
  } else {
    r.initial_noise = at::randn({B, transformer.config().in_channels, r.generated_height / f, r.generated_width / f},
                                gen, at::TensorOptions().dtype(at::kFloat));
    x = r.initial_noise.to(components.device) * sigma_d;
  }

  // Guidance in the embeddings' dtype, then * guidance_embeds_scale (4.5 -> 0.45; bf16 rounds it).
  SanaTransformerInputs cond;
  std::tie(cond.encoder_hidden_states, cond.encoder_attention_mask) = without_padding(embeds, r.prompt_attention_mask);
  cond.guidance = at::full({B}, o.guidance_scale, at::TensorOptions().dtype(at::kFloat).device(components.device))
                      .to(embeds.scalar_type()) *
                  transformer.config().guidance_embeds_scale;

  // Each step: F from the TrigFlow view of the backbone (and its ControlNet), x0 = cos s x - sin s sigma_d F, then
  // fresh noise to the next time.
  const SanaTrigFlow model(components.transformer, controlnet_call(components, o, r, B));
  at::Tensor x0;
  StepFiniteness finite;
  const int n = scheduler.num_steps();
  for (int i = first; i < n; ++i) {
    if (o.pause_point) o.pause_point();
    t0 = now();
    // The reference rounds the time to the embeddings' dtype before the time map.
    const at::Tensor t = r.timesteps[i].expand({B}).to(components.device).to(embeds.scalar_type()).to(at::kFloat);
    const at::Tensor F = model.forward(x / sigma_d, t, cond);
    if (o.record_steps) r.steps.push_back({x / sigma_d, t, F, {}});
    std::tie(x, x0) = scheduler.step(F.to(at::kFloat) * sigma_d, i, x, gen);
    finite.add(x0, "step " + std::to_string(i + 1 - first) + "/" + std::to_string(n - first));
    r.denoised.push_back(x0);
    if (progress) progress("step " + std::to_string(i + 1 - first) + "/" + std::to_string(n - first), now() - t0);
  }

  finite.check();
  r.final_latents = x0 / sigma_d;
  decode_and_finish(components, o, r, progress);
  return r;
}

}  // namespace sana
