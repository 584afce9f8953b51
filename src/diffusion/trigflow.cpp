#include "sana/diffusion/trigflow.h"

namespace sana {
namespace {
// [B] or scalar -> broadcastable against [B, C, H, W].
at::Tensor per_sample_view(const at::Tensor& t, const at::Tensor& like) {
  std::vector<int64_t> shape(like.dim(), 1);
  shape[0] = t.dim() == 0 ? 1 : t.size(0);
  return t.reshape(shape);
}
}  // namespace

at::Tensor trigflow_to_flow_time(const at::Tensor& t) { return at::sin(t) / (at::sin(t) + at::cos(t)); }

at::Tensor trigflow_from_flow(const FlowVelocityFn& flow, const at::Tensor& x_hat, const at::Tensor& t) {
  const at::Tensor s = trigflow_to_flow_time(t.to(x_hat.scalar_type()));
  const at::Tensor sv = per_sample_view(s, x_hat);
  const at::Tensor scale = at::sqrt(sv * sv + (1 - sv) * (1 - sv));
  const at::Tensor x_s = x_hat * scale;
  const at::Tensor v = flow(x_s, s.dim() == 0 ? s.reshape({1}).expand({x_hat.size(0)}) : s).to(x_hat.scalar_type());
  return ((1 - 2 * sv) * x_s + (1 - 2 * sv + 2 * sv * sv) * v) / scale;
}

at::Tensor trigflow_predict_x0(const at::Tensor& x_t, const at::Tensor& t, const at::Tensor& F, double sigma_data) {
  const at::Tensor tv = per_sample_view(t.to(x_t.scalar_type()), x_t);
  return at::cos(tv) * x_t - at::sin(tv) * sigma_data * F.to(x_t.scalar_type());
}

at::Tensor sana_velocity(const SanaTransformer2DModel& backbone, const ControlNetCall& control, SanaTransformerInputs in,
                         SanaTransformerAux* aux) {
  if (control.model) in.controlnet_block_samples = control.model->forward(in, control.cond, control.scale);
  return backbone.forward(in, aux);
}

at::Tensor SanaTrigFlow::forward(const at::Tensor& x_hat, const at::Tensor& t, const SanaTransformerInputs& cond,
                                 SanaTransformerAux* aux) const {
  return trigflow_from_flow(
      [&](const at::Tensor& x_s, const at::Tensor& s) {
        SanaTransformerInputs in = cond;
        in.hidden_states = x_s;
        in.timestep = s;
        return sana_velocity(*backbone_, control_, in, aux);
      },
      x_hat, t);
}

at::Tensor sample_trigflow_ode(const TrigFlowFn& F, at::Tensor x, const at::Tensor& timesteps, double sigma_data) {
  const int64_t B = x.size(0);
  for (int64_t i = 0; i + 1 < timesteps.size(0); ++i) {
    const double t = timesteps[i].item<double>(), t_next = timesteps[i + 1].item<double>();
    const at::Tensor f = F(x / sigma_data, at::full({B}, t, x.options())).to(x.scalar_type());
    x = std::cos(t - t_next) * x - std::sin(t - t_next) * sigma_data * f;
  }
  return x;
}

}  // namespace sana
