#pragma once
// The optimiser step of the two image-reconstruction trainers (train-vae, train-tiny-decoder): loss L1 + MSE between
// an output and its target in [-1, 1], backward, apply_gradients, and the step's log line (PSNR on range 2).
#include <ATen/ATen.h>

#include "train/training_run.h"

namespace sana::detail {

void reconstruction_step(TrainingRun& run, Optimizer& optim, const NamedTensors& params, EMA* ema,
                         const TrainOptions& o, int64_t step, const at::Tensor& output, const at::Tensor& target,
                         double step_t0);

}  // namespace sana::detail
