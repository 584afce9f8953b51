#pragma once
// SanaPipeline: the flow-matching teacher, as diffusers' SanaPipeline (docs/ARCHITECTURE.md, "Pipelines"):
// latents ~ N(0, 1) drawn once, then the flow ODE from s = 1 to 0 with the folder's scheduler (Euler or
// DPM-Solver++ 2M, with its time shift), each step one transformer pass over the doubled batch
// [negative prompt; prompt] combined as v_u + w (v_c - v_u).
#include <string>

#include "sana/pipeline/pipeline.h"

namespace sana {

// The part of scheduler/scheduler_config.json the teacher pipeline follows.
struct FlowSchedulerConfig {
  std::string class_name = "FlowMatchEulerDiscreteScheduler";
  std::string solver = "euler";  // "euler" (FlowMatchEulerDiscreteScheduler) | "dpm++2m" (DPMSolverMultistepScheduler)
  double shift = 1.0;            // "shift" or "flow_shift"
};

// A FlowMatchEulerDiscreteScheduler or DPMSolverMultistepScheduler config (`source` names it in errors).
FlowSchedulerConfig parse_flow_scheduler_config(const std::string& json_text, const std::string& source);
FlowSchedulerConfig load_flow_scheduler_config(const std::string& path);

class SanaPipeline : public Pipeline {
 public:
  SanaPipeline(PipelineComponents components, FlowSchedulerConfig scheduler_config);

  // A diffusers SanaPipeline folder. Errors name the missing part.
  static SanaPipeline from_pretrained(const std::string& dir, const at::Device& device, at::ScalarType dtype);

  GenerateResult generate(const GenerateOptions& options, const ProgressFn& progress = nullptr) const override;
  std::string class_name() const override { return "SanaPipeline"; }
  std::string sampler_name(const GenerateOptions& options) const override;

  FlowSchedulerConfig scheduler_config;

 private:
  // Negative-prompt embeddings, expanded to the batch: options' precomputed ones, or the encoded negative prompt.
  std::pair<at::Tensor, at::Tensor> negative_embeddings(const GenerateOptions& options, int64_t batch,
                                                        const ProgressFn& progress) const;
};

}  // namespace sana
