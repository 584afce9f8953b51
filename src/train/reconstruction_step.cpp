// The reconstruction trainers' optimiser step (reconstruction_step.h).
#include "train/reconstruction_step.h"

#include <algorithm>
#include <cmath>

namespace sana::detail {

void reconstruction_step(TrainingRun& run, Optimizer& optim, const NamedTensors& params, EMA* ema,
                         const TrainOptions& o, int64_t step, const at::Tensor& output, const at::Tensor& target,
                         double step_t0) {
  const at::Tensor mse = (output - target).pow(2).mean(), l1 = (output - target).abs().mean();
  const at::Tensor loss = mse + l1;
  optim.zero_grad();
  loss.backward();
  const auto [gnorm, ok] =
      apply_gradients(optim, params, o.lr, o.warmup_steps, step, o.grad_clip, run.data_parallel(), ema);
  const double mse_v = mse.item<double>(), psnr = 10 * std::log10(4.0 / std::max(mse_v, 1e-12));  // range 2
  run.end_step(step,
               {{"loss", loss.item<double>()}, {"mse", mse_v}, {"l1", l1.item<double>()}, {"psnr", psnr},
                {"grad_norm", gnorm}, {"lr", optim.lr()}, {"skipped", ok ? 0.0 : 1.0}, {"seconds", now() - step_t0}},
               {{"loss", loss.item<double>()}, {"psnr", psnr}, {"gnorm", gnorm}});
}

}  // namespace sana::detail
