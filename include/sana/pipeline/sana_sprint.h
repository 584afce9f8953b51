#pragma once
// SanaSprintPipeline: prompt -> image in 1-4 steps, reproducing diffusers' SanaSprintPipeline for the same seed
// (docs/ARCHITECTURE.md, "Pipelines"): the initial latents are drawn first from one CPU generator, then one draw
// per sampler step; the transformer runs inside the TrigFlow view with the guidance scale embedded.
#include <string>

#include "sana/diffusion/scm_scheduler.h"
#include "sana/pipeline/pipeline.h"

namespace sana {

class SanaSprintPipeline : public Pipeline {
 public:
  SanaSprintPipeline(PipelineComponents components, SCMSchedulerConfig scheduler_config);

  // A diffusers SanaSprintPipeline folder (model_index.json, tokenizer/, text_encoder/, transformer/, vae/,
  // scheduler/). Errors name the missing part.
  static SanaSprintPipeline from_pretrained(const std::string& dir, const at::Device& device, at::ScalarType dtype);

  GenerateResult generate(const GenerateOptions& options, const ProgressFn& progress = nullptr) const override;
  std::string class_name() const override { return "SanaSprintPipeline"; }
  std::string sampler_name(const GenerateOptions&) const override { return "SCM"; }

  SCMSchedulerConfig scheduler_config;
};

// The SCM schedule options of a call: its steps, max_timesteps, intermediate_timesteps and custom timesteps.
SCMTimestepOptions scm_timestep_options(const GenerateOptions& options);

}  // namespace sana
