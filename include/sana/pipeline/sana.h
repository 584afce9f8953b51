#pragma once
// SanaPipeline: the flow-matching teacher, as diffusers' SanaPipeline and SanaControlNetPipeline
// (docs/ARCHITECTURE.md, "Pipelines"): latents ~ N(0, 1) drawn once, then the folder's flow scheduler from s = 1 to
// 0, each step one transformer pass over the doubled batch [negative prompt; prompt] combined as
// v_u + w (v_c - v_u) (guidance above 1; otherwise one pass over the prompt). With a ControlNet and a control
// image, the ControlNet runs before every transformer pass on the same inputs.
#include <string>

#include "sana/diffusion/flow_scheduler.h"
#include "sana/diffusion/trigflow.h"
#include "sana/pipeline/pipeline.h"

namespace sana {

class SanaPipeline : public Pipeline {
 public:
  SanaPipeline(PipelineComponents components, FlowSchedulerConfig scheduler_config);

  // A diffusers SanaPipeline or SanaControlNetPipeline folder. Errors name the missing part.
  static SanaPipeline from_pretrained(const std::string& dir, const at::Device& device, at::ScalarType dtype);

  GenerateResult generate(const GenerateOptions& options, const ProgressFn& progress = nullptr) const override;
  std::string class_name() const override { return components.controlnet ? "SanaControlNetPipeline" : "SanaPipeline"; }
  std::string sampler_name(const GenerateOptions& options) const override;
  Capabilities capabilities() const override { return {true, false, {"euler", "dpm++2m"}}; }
  // Also the negative prompt's embedding when the call uses classifier-free guidance.
  void embed_text(GenerateOptions& options, const TextEncoder& encode = nullptr) const override;

  FlowSchedulerConfig scheduler_config;

 private:
  // The negative prompt's {embeds, mask}: no instruction prefix, as in the reference.
  std::pair<at::Tensor, at::Tensor> encode_negative_prompt(const GenerateOptions& options,
                                                           const TextEncoder& encode = nullptr) const;
  // The CFG batch's text: [negative; prompt] rows (or the prompt alone without CFG).
  std::pair<at::Tensor, at::Tensor> model_text(const GenerateOptions& options, GenerateResult& r, bool cfg,
                                               const ProgressFn& progress) const;
};

}  // namespace sana
