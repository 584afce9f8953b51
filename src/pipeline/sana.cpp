// SanaPipeline: the flow-matching teacher (sana.h).
#include "sana/pipeline/sana.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <filesystem>

#include "sana/diffusion/trigflow.h"
#include "sana/error.h"
#include "sana/pipeline/decode.h"
#include "sana/pipeline/image_input.h"
#include "sana/pipeline/prompt_encoding.h"
#include "sana/pipeline/resolution.h"

namespace fs = std::filesystem;

namespace sana {
namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

}  // namespace

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
  return FlowScheduler::create(scheduler_config, o.sampler)->solver() + (o.guidance_scale > 1 ? " + CFG" : "");
}

std::pair<at::Tensor, at::Tensor> SanaPipeline::encode_negative_prompt(const GenerateOptions& o,
                                                                      const TextEncoder& encode) const {
  PromptOptions po = o.prompt;
  po.use_complex_human_instruction = false;
  return encode ? encode(o.negative_prompt, po) : encode_prompt({o.negative_prompt}, po);
}

void SanaPipeline::embed_text(GenerateOptions& o, const TextEncoder& encode) const {
  Pipeline::embed_text(o, encode);
  if (o.guidance_scale > 1.0 && !o.negative_prompt_embeds.defined())
    std::tie(o.negative_prompt_embeds, o.negative_prompt_attention_mask) = encode_negative_prompt(o, encode);
}

std::pair<at::Tensor, at::Tensor> SanaPipeline::model_text(const GenerateOptions& o, GenerateResult& r, bool cfg,
                                                           const ProgressFn& progress) const {
  double t0 = now();
  std::tie(r.prompt_embeds, r.prompt_attention_mask) = prompt_embeddings_for(components, o);
  if (progress && !o.prompt_embeds.defined()) progress("text encoder", now() - t0);
  if (!cfg) return without_padding(r.prompt_embeds, r.prompt_attention_mask);
  at::Tensor neg, mask;
  if (o.negative_prompt_embeds.defined()) {
    neg = o.negative_prompt_embeds.to(components.device, components.transformer->dtype());
    mask = o.negative_prompt_attention_mask.to(components.device);
    if (neg.dim() == 2) neg = neg.unsqueeze(0), mask = mask.unsqueeze(0);
  } else {
    t0 = now();
    std::tie(neg, mask) = encode_negative_prompt(o);
    if (progress) progress("text encoder (negative prompt)", now() - t0);
  }
  const int64_t B = r.prompt_embeds.size(0);
  return without_padding(at::cat({neg.expand({B, -1, -1}), r.prompt_embeds}),
                         at::cat({mask.expand({B, -1}), r.prompt_attention_mask}));
}

GenerateResult SanaPipeline::generate(const GenerateOptions& o, const ProgressFn& progress) const {
  c10::InferenceMode inference;
  if (o.image.defined()) throw Error("image: img2img is implemented for SANA-Sprint pipelines, not for a flow teacher");
  if (!o.timesteps.empty())  // TrigFlow angles mean nothing to a flow sampler; ignoring them would be silent
    throw Error("timesteps: custom schedules are for SANA-Sprint pipelines; a flow teacher follows its "
                "scheduler_config.json (set steps and sampler instead)");
  const SanaTransformer2DModel& transformer = *components.transformer;
  GenerateResult r;
  std::tie(r.generated_height, r.generated_width) = generation_size(components, o);
  const bool cfg = o.guidance_scale > 1.0;  // as diffusers' do_classifier_free_guidance
  const auto [embeds, mask] = model_text(o, r, cfg, progress);
  const int64_t B = r.prompt_embeds.size(0);
  const ControlNetCall controlnet = controlnet_call(components, o, r, embeds.size(0));

  const auto scheduler = FlowScheduler::create(scheduler_config, o.sampler);
  scheduler->set_timesteps(o.steps);
  r.timesteps = scheduler->timesteps();
  const int f = components.vae_scale_factor();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  r.initial_noise = at::randn({B, transformer.config().in_channels, r.generated_height / f, r.generated_width / f},
                              gen, at::TensorOptions().dtype(at::kFloat));
  at::Tensor x = r.initial_noise.to(components.device);
  StepFiniteness finite;
  for (int i = 0; i < scheduler->num_steps(); ++i) {
    if (o.pause_point) o.pause_point();
    const double t0 = now();
    SanaTransformerInputs in;
    in.hidden_states = (cfg ? at::cat({x, x}) : x).to(transformer.dtype());
    in.encoder_hidden_states = embeds, in.encoder_attention_mask = mask;
    // diffusers' timestep (sigma * 1000) times the model's timestep_scale.
    in.timestep = r.timesteps[i].expand({embeds.size(0)}).to(components.device) * transformer.config().timestep_scale;
    if (controlnet.model) in.controlnet_block_samples = controlnet.model->forward(in, controlnet.cond, controlnet.scale);
    const at::Tensor out = transformer.forward(in).to(at::kFloat);
    if (o.record_steps) r.steps.push_back({in.hidden_states, in.timestep, out, in.controlnet_block_samples});
    const at::Tensor v = cfg ? out.narrow(0, 0, B) + o.guidance_scale * (out.narrow(0, B, B) - out.narrow(0, 0, B)) : out;
    x = scheduler->step(v, i, x);
    finite.add(x, "step " + std::to_string(i + 1) + "/" + std::to_string(scheduler->num_steps()));
    if (progress) progress("step " + std::to_string(i + 1) + "/" + std::to_string(scheduler->num_steps()), now() - t0);
  }
  finite.check();
  r.denoised.push_back(x);
  r.final_latents = x;
  decode_and_finish(components, o, r, progress);
  return r;
}

}  // namespace sana
