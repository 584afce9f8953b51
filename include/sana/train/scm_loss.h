#pragma once
// The continuous-time consistency (sCM) loss of SANA-Sprint, as in the NVlabs training loop (docs/ARCHITECTURE.md, "Distillation"):
//   x_t   = cos t x0 + sin t z,                z ~ N(0, sigma_d^2)
//   (F-, dF) = JVP of F_theta at (x_t / sigma_d, t) along (cos t sin t dx_t/dt / sigma_d, cos t sin t)   [no grad]
//   g     = -cos^2 t (sigma_d F- - dx_t/dt) - r (cos t sin t x_t + sigma_d dF)      r: tangent warm-up in [0, 1]
//   g     = g / (||g||_per-sample + 0.1)
//   L     = mean( w(t) / exp(logvar) (F_theta - F- - g)^2 + logvar ),  w(t) = 1 / (sigma_d tan t)
// dx_t/dt is the teacher's (CFG) velocity sigma_d F_teacher. The loss is a pure function of callables, so teacher
// and student can be anything with these signatures.
#include <ATen/ATen.h>

#include <functional>
#include <utility>

namespace sana {

// The student: (x_hat = x_t / sigma_d, t) -> {F, logvar [B]} (logvar may be undefined: treated as 0).
using StudentFn = std::function<std::pair<at::Tensor, at::Tensor>(const at::Tensor& x_hat, const at::Tensor& t)>;

struct SCMLossOptions {
  double sigma_data = 0.5;
  double tangent_norm_c = 0.1;
};

struct SCMLossInputs {
  at::Tensor x0;      // clean latents in x0 units (VAE latent * scaling_factor * sigma_d), [B, C, H, W]
  at::Tensor z;       // noise ~ N(0, sigma_d^2), same shape
  at::Tensor t;       // [B] TrigFlow times in (0, pi/2)
  at::Tensor dxt_dt;  // teacher velocity sigma_d F_teacher(x_t / sigma_d, t) (with CFG), same shape as x0
  double warmup = 1.0;  // r = min(1, step / tangent_warmup_steps)
};

struct SCMLossResult {
  at::Tensor loss;    // scalar, differentiable w.r.t. the student's parameters
  at::Tensor F;       // F_theta (with grad)
  at::Tensor g;       // normalised tangent (no grad)
  at::Tensor g_norm;  // per-sample ||g|| before normalisation
  at::Tensor logvar;  // [B] the student's adaptive log-variance (zeros when it has none)
};

SCMLossResult scm_loss(const StudentFn& student, const SCMLossInputs& in, const SCMLossOptions& options = {});

// The sCM time law: t = atan(exp(P_mean + P_std n) / sigma_d), n ~ N(0, 1) (P_mean 0.2, P_std 1.6 for the student,
// -0.6 and 1.0 for the discriminator).
at::Tensor sample_trigflow_times(int64_t n, double p_mean, double p_std, double sigma_data, at::Generator& gen);

}  // namespace sana
