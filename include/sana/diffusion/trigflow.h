#pragma once
// TrigFlow around a flow-matching backbone (docs/ARCHITECTURE.md, "TrigFlow"), training-free.
//
// TrigFlow: x_t = cos t x0 + sin t z, z ~ N(0, sigma_d^2), t in [0, pi/2]; the network F(x_t / sigma_d, t) has the
// ideal value cos t eps - sin t x0/sigma_d. A flow model v(x_s, s) = eps - x0/sigma_d with x_s = (1-s) x0/sigma_d + s eps
// gives F exactly through
//   s   = sin t / (sin t + cos t)                       (time map)
//   x_s = x_hat * sqrt(s^2 + (1-s)^2)                   (= x_hat / (sin t + cos t), x_hat = x_t / sigma_d)
//   F   = ((1 - 2s) x_s + (1 - 2s + 2s^2) v) / sqrt(s^2 + (1-s)^2)
// The backbone sees the dense flow time s in [0, 1] as its timestep (SANA-Sprint's c_noise(s) = s).
#include <ATen/ATen.h>

#include <functional>
#include <memory>

#include "sana/models/sana_controlnet.h"
#include "sana/models/sana_transformer.h"

namespace sana {

// A flow-matching velocity model: v(x_s, s) with s of shape [B].
using FlowVelocityFn = std::function<at::Tensor(const at::Tensor& x_s, const at::Tensor& s)>;

// s = sin t / (sin t + cos t).
at::Tensor trigflow_to_flow_time(const at::Tensor& t);

// F(x_hat, t) from a flow model; t is [B] or a scalar. Computed in the dtype of x_hat (the backbone output is cast
// to it), as the reference pipeline does.
at::Tensor trigflow_from_flow(const FlowVelocityFn& flow, const at::Tensor& x_hat, const at::Tensor& t);

// x0 prediction: x0 = cos t x_t - sin t sigma_d F.
at::Tensor trigflow_predict_x0(const at::Tensor& x_t, const at::Tensor& t, const at::Tensor& F, double sigma_data);

// A ControlNet with its input, evaluated wherever the backbone is: at the same flow-space latent, timestep,
// guidance and text (docs/ARCHITECTURE.md, "ControlNet").
struct ControlNetCall {
  std::shared_ptr<SanaControlNetModel> model;  // null: no ControlNet
  at::Tensor cond;                              // the control latent, one row per model row
  double scale = 1.0;
};

// v(x_s, s) of the backbone, with the ControlNet's residuals when `control` has a model.
at::Tensor sana_velocity(const SanaTransformer2DModel& backbone, const ControlNetCall& control, SanaTransformerInputs in,
                         SanaTransformerAux* aux = nullptr);

// The TrigFlow view of a SanaTransformer2DModel (and its ControlNet). The backbone is shared, not owned
// exclusively: one backbone can serve as flow model and TrigFlow model at once.
class SanaTrigFlow {
 public:
  explicit SanaTrigFlow(std::shared_ptr<SanaTransformer2DModel> backbone, ControlNetCall control = {})
      : backbone_(std::move(backbone)), control_(std::move(control)) {}

  // F(x_hat, t). `cond` carries the text, mask and guidance; its hidden_states and timestep are ignored (they come
  // from x_hat and t). The ControlNet, if any, runs inside, on the flow-space input the backbone gets. `aux`, when
  // given, receives the backbone's auxiliary outputs (the embedded timestep; the features of aux->block_ids).
  at::Tensor forward(const at::Tensor& x_hat, const at::Tensor& t, const SanaTransformerInputs& cond,
                     SanaTransformerAux* aux = nullptr) const;

  SanaTransformer2DModel& backbone() const { return *backbone_; }

 private:
  std::shared_ptr<SanaTransformer2DModel> backbone_;
  ControlNetCall control_;
};

// TrigFlow model F(x_hat, t) with t of shape [B].
using TrigFlowFn = std::function<at::Tensor(const at::Tensor& x_hat, const at::Tensor& t)>;

// Deterministic first-order TrigFlow ODE solver (DDIM in TrigFlow form) over `timesteps` (decreasing, last 0):
//   x0 = cos t x_t - sin t sigma_d F,  eps = sin t x_t + cos t sigma_d F,  x_t' = cos t' x0 + sin t' eps
// (= cos(t - t') x_t - sin(t - t') sigma_d F). `x` is x_t at timesteps[0] in sigma_d units. At matched times it
// takes exactly the flow Euler sampler's steps, for a flow model wrapped by trigflow_from_flow.
at::Tensor sample_trigflow_ode(const TrigFlowFn& F, at::Tensor x, const at::Tensor& timesteps, double sigma_data);

}  // namespace sana
