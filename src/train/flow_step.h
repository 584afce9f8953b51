#pragma once
// One flow-matching training step, shared by the teacher's trainer and the teacher ControlNet's: the step's draws
// (logit-normal time s, noise, caption dropout to the empty prompt, all for the global batch, this process's rows
// kept), then after the loss the optimiser step and the run's log line.
#include "sana/models/dcae.h"
#include "sana/models/sana_controlnet.h"
#include "sana/models/sana_transformer.h"
#include "train/training_run.h"

namespace sana::detail {

struct FlowStepDraws {
  at::Tensor s, eps;            // flow times [B], noise like the latents
  SanaTransformerInputs text;   // encoder_hidden_states and mask, captions dropped to the empty prompt
};

struct FlowLaw {
  double logit_mean = 0, logit_std = 1, caption_dropout = 0.1;
};

// Error naming the flag unless the law's settings are usable (finite, std > 0, dropout a probability).
void check_flow_law(double logit_mean, double logit_std, double caption_dropout);

FlowStepDraws draw_flow_step(const TrainingRun& run, const LatentCache& cache, const Batch& b, uint64_t seed,
                             int64_t step, int64_t global_batch, const FlowLaw& law);

// loss.backward(), the shared optimiser step, the loss averaged over the processes, and run.end_step.
void finish_flow_step(TrainingRun& run, const at::Tensor& loss, Optimizer& optim, const NamedTensors& params,
                      const TrainOptions& o, EMA* ema, int64_t step, double started);

// The transformer of a flow teacher's pipeline folder (`--base`), every parameter frozen.
std::shared_ptr<SanaTransformer2DModel> frozen_transformer(const std::string& folder, const at::TensorOptions& opts);

// Sample grid of a flow trainer: the first 8 cached captions (and controls, with a ControlNet) through the teacher
// pipeline of `base` with `transformer` (20 steps of the folder's scheduler, CFG 4.5, fixed noise), one row.
void sample_flow_grid(const std::string& path, const std::string& base,
                      const std::shared_ptr<SanaTransformer2DModel>& transformer,
                      const std::shared_ptr<SanaControlNetModel>& controlnet, const std::shared_ptr<AutoencoderDC>& vae,
                      const LatentCache& cache, const at::Device& device, uint64_t seed);

}  // namespace sana::detail
