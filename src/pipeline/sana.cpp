// SanaPipeline: the flow-matching teacher (sana.h).
#include "sana/pipeline/sana.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "sana/diffusion/flow_sampler.h"
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

FlowSchedulerConfig parse_flow_scheduler_config(const std::string& text, const std::string& source) {
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) throw Error(source + ": not a JSON object");
  FlowSchedulerConfig c;
  for (const char* key : {"shift", "flow_shift"})
    if (j.contains(key) && j[key].is_number()) c.shift = j[key].get<double>();
  return c;
}

FlowSchedulerConfig load_flow_scheduler_config(const std::string& path) {
  return parse_flow_scheduler_config(read_text_file(path), path);
}

SanaPipeline::SanaPipeline(PipelineComponents components, FlowSchedulerConfig scheduler_config)
    : Pipeline(std::move(components)), scheduler_config(std::move(scheduler_config)) {
  if (this->components.transformer->config().guidance_embeds)
    throw Error("SanaPipeline: the transformer has a guidance embedding (a Sprint student: use SanaSprintPipeline)");
}

SanaPipeline SanaPipeline::from_pretrained(const std::string& dir, const at::Device& device, at::ScalarType dtype) {
  PipelineComponents c = PipelineComponents::from_pretrained(dir, device, dtype);
  return SanaPipeline(std::move(c),
                      load_flow_scheduler_config((fs::path(dir) / "scheduler" / "scheduler_config.json").string()));
}

std::string SanaPipeline::sampler_name(const GenerateOptions& o) const {
  return (o.sampler.empty() ? scheduler_config.solver : o.sampler) + " + CFG";
}

std::pair<at::Tensor, at::Tensor> SanaPipeline::negative_embeddings(const GenerateOptions& o, int64_t B,
                                                                    const ProgressFn& progress) const {
  at::Tensor neg, mask;
  if (o.negative_prompt_embeds.defined()) {
    neg = o.negative_prompt_embeds.to(components.device, components.transformer->dtype());
    mask = o.negative_prompt_attention_mask.to(components.device);
    if (neg.dim() == 2) neg = neg.unsqueeze(0), mask = mask.unsqueeze(0);
  } else {
    const double t0 = now();
    std::tie(neg, mask) = encode_prompt({o.negative_prompt}, o.prompt);
    if (progress) progress("text encoder (negative prompt)", now() - t0);
  }
  return {neg.expand({B, -1, -1}), mask.expand({B, -1})};
}

GenerateResult SanaPipeline::generate(const GenerateOptions& o, const ProgressFn& progress) const {
  c10::InferenceMode inference;
  const SanaTransformer2DModel& transformer = *components.transformer;
  GenerateResult r;
  std::tie(r.generated_height, r.generated_width) = generation_size(components, o);
  double t0 = now();
  std::tie(r.prompt_embeds, r.prompt_attention_mask) = prompt_embeddings_for(components, o);
  if (progress) progress("text encoder", now() - t0);
  const int64_t B = r.prompt_embeds.size(0);
  const auto [neg, neg_mask] = negative_embeddings(o, B, progress);
  const at::Tensor embeds2 = at::cat({neg, r.prompt_embeds}), mask2 = at::cat({neg_mask, r.prompt_attention_mask});

  const int f = components.vae_scale_factor();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  r.initial_noise = at::randn({B, transformer.config().in_channels, r.generated_height / f, r.generated_width / f},
                              gen, at::TensorOptions().dtype(at::kFloat));
  // The scheduler's t = 1000 s reaches the model times timestep_scale.
  const double scale = 1000.0 * transformer.config().timestep_scale;
  const auto velocity = [&](const at::Tensor& e, const at::Tensor& m) {
    return [&, e, m](const at::Tensor& x, const at::Tensor& s) {
      SanaTransformerInputs in;
      in.hidden_states = x.to(transformer.dtype());
      in.encoder_hidden_states = e, in.encoder_attention_mask = m;
      in.timestep = (s * scale).to(e.scalar_type());
      return transformer.forward(in).to(at::kFloat);
    };
  };
  const FlowVelocityFn v =
      classifier_free_guidance(velocity(embeds2, mask2), velocity(r.prompt_embeds, r.prompt_attention_mask),
                               o.guidance_scale);
  FlowSampleOptions so;
  so.steps = o.steps;
  so.solver = o.sampler.empty() ? scheduler_config.solver : o.sampler;
  so.shift = scheduler_config.shift;
  r.timesteps = flow_timesteps(so.steps, so.shift);
  t0 = now();
  const at::Tensor x0 = sample_flow(v, r.initial_noise.to(components.device), so, [&](int i, double) {
    if (progress) progress("step " + std::to_string(i + 1) + "/" + std::to_string(so.steps), now() - t0);
    t0 = now();
  });
  r.denoised.push_back(x0);
  r.final_latents = x0;
  decode_and_finish(components, o, r, progress);
  return r;
}

}  // namespace sana
