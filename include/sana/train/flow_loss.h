#pragma once
// Flow-matching training for teachers (docs/ARCHITECTURE.md, "Flow matching"): x_s = (1 - s) x0 + s eps, target v = eps - x0,
// s ~ logit-normal (sigmoid(m + sd n)), the dense time s in [0, 1] as the model's timestep, and caption dropout to
// a learned null embedding for classifier-free guidance.
#include <ATen/ATen.h>

#include "sana/diffusion/trigflow.h"

namespace sana {

struct FlowLossOptions {
  double logit_mean = 0.0, logit_std = 1.0;
};

// Mean squared error of v(x_s, s) against eps - x0, with s and eps drawn from `gen`.
at::Tensor flow_matching_loss(const FlowVelocityFn& velocity, const at::Tensor& x0, at::Generator& gen,
                              const FlowLossOptions& options = {});

// The same loss with given s [B] and eps (for evaluation on a fixed set of draws).
at::Tensor flow_matching_loss_at(const FlowVelocityFn& velocity, const at::Tensor& x0, const at::Tensor& s,
                                 const at::Tensor& eps);

// Replaces each sample's caption embedding [B, L, C] with `null_embedding` [L, C] with probability p; the mask of a
// dropped sample keeps its caption's mask (as the NVlabs reference does for the unconditional branch).
at::Tensor caption_dropout(const at::Tensor& embeds, const at::Tensor& null_embedding, double p, at::Generator& gen);

}  // namespace sana
