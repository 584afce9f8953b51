// SanaSprintPipeline (sana_sprint.h).
#include "sana/pipeline/sana_sprint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <filesystem>

#include "sana/diffusion/trigflow.h"
#include "sana/error.h"
#include "sana/io/config.h"
#include "sana/pipeline/decode.h"
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

GenerateResult SanaSprintPipeline::generate(const GenerateOptions& o, const ProgressFn& progress) const {
  c10::InferenceMode inference;
  const SanaTransformer2DModel& transformer = *components.transformer;
  const auto report = [&](const std::string& stage, double t0) {
    if (progress) progress(stage, now() - t0);
  };
  GenerateResult r;
  std::tie(r.generated_height, r.generated_width) = generation_size(components, o);

  double t0 = now();
  std::tie(r.prompt_embeds, r.prompt_attention_mask) = prompt_embeddings_for(components, o);
  const at::Tensor& embeds = r.prompt_embeds;
  report("text encoder", t0);

  // Schedule, then the initial noise: the first draw of the call's one CPU generator.
  SCMScheduler scheduler(scheduler_config);
  r.timesteps = scheduler.set_timesteps(scm_timestep_options(o));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const int64_t B = embeds.size(0);
  const int f = components.vae_scale_factor();
  const double sigma_d = scheduler_config.sigma_data;
  r.initial_noise = at::randn({B, transformer.config().in_channels, r.generated_height / f, r.generated_width / f},
                              gen, at::TensorOptions().dtype(at::kFloat));
  at::Tensor x = r.initial_noise.to(components.device) * sigma_d;

  // Guidance in the embeddings' dtype, then * guidance_embeds_scale (4.5 -> 0.45; bf16 rounds it).
  SanaTransformerInputs cond;
  cond.encoder_hidden_states = embeds;
  cond.encoder_attention_mask = r.prompt_attention_mask;
  cond.guidance = at::full({B}, o.guidance_scale, at::TensorOptions().dtype(at::kFloat).device(components.device))
                      .to(embeds.scalar_type()) *
                  transformer.config().guidance_embeds_scale;

  // Each step: F from the TrigFlow view of the backbone, x0 = cos s x - sin s sigma_d F, fresh noise.
  const SanaTrigFlow model(components.transformer);
  at::Tensor x0;
  const int n = scheduler.num_steps();
  for (int i = 0; i < n; ++i) {
    t0 = now();
    // The reference rounds the time to the embeddings' dtype before the time map.
    const at::Tensor t = r.timesteps[i].expand({B}).to(components.device).to(embeds.scalar_type()).to(at::kFloat);
    const at::Tensor F = model.forward(x / sigma_d, t, cond);
    std::tie(x, x0) = scheduler.step(F.to(at::kFloat) * sigma_d, i, x, gen);
    r.denoised.push_back(x0);
    report("step " + std::to_string(i + 1) + "/" + std::to_string(n), t0);
  }

  r.final_latents = x0 / sigma_d;
  decode_and_finish(components, o, r, progress);
  return r;
}

}  // namespace sana
