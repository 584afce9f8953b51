#include "sana/train/scm_loss.h"

#include <ATen/core/grad_mode.h>

#include <cmath>

#include "sana/error.h"
#include "sana/nn/jvp.h"

namespace sana {

SCMLossResult scm_loss(const StudentFn& student, const SCMLossInputs& in, const SCMLossOptions& o) {
  if (in.x0.sizes() != in.z.sizes() || in.x0.sizes() != in.dxt_dt.sizes())
    throw Error("scm_loss: x0, z and dxt_dt must have one shape");
  const double sd = o.sigma_data;
  const at::Tensor t = in.t.view({-1, 1, 1, 1});
  const at::Tensor cos_t = at::cos(t), sin_t = at::sin(t);
  const at::Tensor x_t = cos_t * in.x0 + sin_t * in.z;

  // Tangent of F along the teacher's ODE: d/dt F(x_t / sigma_d, t) * cos t sin t, by forward-mode AD, no grad.
  at::Tensor F_jvp;
  {
    at::NoGradGuard no_grad;
    const at::Tensor v_x = cos_t * sin_t * in.dxt_dt / sd;
    const at::Tensor v_t = at::cos(in.t) * at::sin(in.t);
    F_jvp = nn::jvp([&](const std::vector<at::Tensor>& a) { return student(a[0], a[1]).first; }, {x_t / sd, in.t},
                    {v_x, v_t})
                .second;
  }

  // The trained forward, with grad.
  auto [F, logvar] = student(x_t / sd, in.t);
  const at::Tensor F_minus = F.detach();

  at::Tensor g = -cos_t * cos_t * (sd * F_minus - in.dxt_dt) - in.warmup * (cos_t * sin_t * x_t + sd * F_jvp);
  const at::Tensor g_norm = at::linalg_vector_norm(g, 2, at::IntArrayRef({1, 2, 3}), /*keepdim=*/true);
  g = g / (g_norm + o.tangent_norm_c);

  const at::Tensor w = 1.0 / (sd * at::tan(t));
  const at::Tensor lv = logvar.defined() ? logvar.view({-1, 1, 1, 1}) : at::zeros_like(t);
  const at::Tensor l2 = (F - F_minus - g).pow(2);
  const at::Tensor loss = (w / at::exp(lv) * l2 + lv).mean();
  return {loss, F, g, g_norm.flatten(), lv.detach().flatten()};
}

at::Tensor sample_trigflow_times(int64_t n, double p_mean, double p_std, double sigma_data, at::Generator& gen) {
  const at::Tensor noise = at::randn({n}, gen, at::TensorOptions().dtype(at::kFloat));
  return at::atan(at::exp(p_mean + p_std * noise) / sigma_data);
}

}  // namespace sana
