#pragma once
// SanaSprintPipeline: prompt -> image in 1-4 steps, reproducing diffusers' SanaSprintPipeline (and, with an init
// image, SanaSprintImg2ImgPipeline) for the same seed (docs/ARCHITECTURE.md, "Pipelines"): the initial latents are
// drawn first from one CPU generator, then one draw per sampler step; the transformer runs inside the TrigFlow view
// with the guidance scale embedded, and a ControlNet, when there is one, inside the same view.
#include <string>

#include "sana/diffusion/scm_scheduler.h"
#include "sana/diffusion/trigflow.h"
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
  Capabilities capabilities() const override { return {false, true, {"scm"}}; }

  SCMSchedulerConfig scheduler_config;

 private:
  at::Tensor noised_init_image(const GenerateOptions& options, GenerateResult& r, const at::Tensor& t0,
                               at::Generator& gen, int64_t batch) const;
};

// The SCM schedule options of a call: its steps, max_timesteps, intermediate_timesteps and custom timesteps.
SCMTimestepOptions scm_timestep_options(const GenerateOptions& options);

}  // namespace sana
