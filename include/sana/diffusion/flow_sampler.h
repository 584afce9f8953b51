#pragma once
// Samplers for flow-matching models (the teachers): x_s = (1 - s) x0 + s eps, v = eps - x0, s from 1 (noise) to 0.
//  * Euler:            x_{s'} = x_s + (s' - s) v(x_s, s)
//  * DPM-Solver++(2M): the data-prediction multistep solver (Lu et al. 2022) in the flow parameterisation
//    alpha_s = 1 - s, sigma_s = s, lambda = log(alpha / sigma), x0 = x_s - s v; first order on the first and the
//    last step (the last step lands on x0 exactly).
// Classifier-free guidance combines two velocity evaluations: v = v_u + w (v_c - v_u).
#include <ATen/ATen.h>

#include <functional>
#include <string>

#include "sana/diffusion/trigflow.h"

namespace sana {

struct FlowSampleOptions {
  int steps = 20;
  std::string solver = "euler";  // "euler" | "dpm++2m"
  double shift = 1.0;            // time shift s' = shift s / (1 + (shift - 1) s), as diffusers' flow_shift
};

// The schedule s_0 = 1 > s_1 > ... > s_steps = 0 (float64 values, returned as a float32 tensor).
at::Tensor flow_timesteps(int steps, double shift);

// Integrates from x (at s = 1) to s = 0 with velocity v(x_s, s) ([B] times). `on_step(i, s)` is called per step.
at::Tensor sample_flow(const FlowVelocityFn& velocity, at::Tensor x, const FlowSampleOptions& options,
                       const std::function<void(int, double)>& on_step = nullptr);

// CFG velocity: evaluates `batched(x2, s2, /*rows 0..B-1 unconditional, B..2B-1 conditional*/)` once on the doubled
// batch and returns v_u + w (v_c - v_u). With w == 1 only the conditional half is evaluated (`conditional`).
FlowVelocityFn classifier_free_guidance(const FlowVelocityFn& batched, const FlowVelocityFn& conditional, double w);

}  // namespace sana
