// The sCM loss against mathematics: for a dataset of one point the ideal TrigFlow model is an exact consistency
// model, so the tangent g vanishes; the loss gradient is -2 w e^{-logvar} g / N; the time law's quantiles.
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "sana/train/scm_loss.h"
#include "test_util.h"

namespace {

const double kSd = 0.5;

// Ideal F for data = {x0*}: with z = (x_t - cos t x0*) / sin t, F = (cos t z - sin t x0*) / sigma_d.
sana::StudentFn ideal_student(const at::Tensor& x0_star) {
  return [x0_star](const at::Tensor& x_hat, const at::Tensor& t_) {
    const at::Tensor t = t_.view({-1, 1, 1, 1});
    const at::Tensor x_t = kSd * x_hat;
    const at::Tensor z = (x_t - at::cos(t) * x0_star) / at::sin(t);
    return std::make_pair((at::cos(t) * z - at::sin(t) * x0_star) / kSd, at::Tensor());
  };
}

}  // namespace

TEST(SCMLoss, IdealConsistencyModelHasZeroTangent) {
  at::manual_seed(0);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor x0 = kSd * at::randn({3, 2, 4, 4}, f64), z = kSd * at::randn({3, 2, 4, 4}, f64);
  const at::Tensor t = at::tensor({0.3, 0.9, 1.4}, f64);
  const auto student = ideal_student(x0);
  // The teacher's velocity is the exact PF-ODE velocity: dx_t/dt = sigma_d F*.
  const at::Tensor x_t = at::cos(t.view({-1, 1, 1, 1})) * x0 + at::sin(t.view({-1, 1, 1, 1})) * z;
  const at::Tensor dxt_dt = kSd * student(x_t / kSd, t).first;

  sana::SCMLossInputs in{x0, z, t, dxt_dt, /*warmup=*/1.0};
  const auto r = sana::scm_loss(student, in);
  EXPECT_LT(r.g_norm.max().item<double>(), 1e-10) << r.g_norm;
  // (For this model both parts of g vanish separately, whatever the warm-up or the teacher: the check above fixes
  // the JVP part's sign and scale against the first part.) A student that is not a consistency model gets g != 0.
  const sana::StudentFn perturbed = [&](const at::Tensor& x_hat, const at::Tensor& tt) {
    return std::make_pair(student(x_hat, tt).first + 0.1 * at::sin(x_hat), at::Tensor());
  };
  EXPECT_GT(sana::scm_loss(perturbed, in).g_norm.min().item<double>(), 1e-3);
  // Without the tangent term (warm-up 0) g is the normalised teacher mismatch -cos^2 t (sigma_d F - dx_t/dt).
  in.warmup = 0.0;
  in.dxt_dt = at::randn_like(dxt_dt);
  const auto r0 = sana::scm_loss(student, in);
  const at::Tensor tv = t.view({-1, 1, 1, 1});
  const at::Tensor raw = -at::cos(tv).pow(2) * (kSd * student(x_t / kSd, t).first - in.dxt_dt);
  const at::Tensor norm = raw.flatten(1).norm(2, 1).view({-1, 1, 1, 1});
  EXPECT_CLOSE(r0.g, raw / (norm + 0.1), 1e-12);
}

TEST(SCMLoss, GradientIsMinusTwoWeightedTangent) {
  at::manual_seed(1);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const int64_t B = 2;
  const at::Tensor x0 = kSd * at::randn({B, 1, 3, 3}, f64), z = kSd * at::randn({B, 1, 3, 3}, f64);
  const at::Tensor t = at::tensor({0.5, 1.1}, f64), dxt_dt = at::randn({B, 1, 3, 3}, f64);
  // A student with a free output scale a and a free logvar: F = a * x_hat, logvar = c.
  at::Tensor a = at::full({1}, 0.8, f64).requires_grad_(), c = at::full({B}, 0.3, f64).requires_grad_();
  sana::StudentFn student = [&](const at::Tensor& x_hat, const at::Tensor&) { return std::make_pair(a * x_hat, c * 1.0); };
  const auto r = sana::scm_loss(student, {x0, z, t, dxt_dt, 1.0});
  r.loss.backward();
  // dL/dF = -2 w e^{-c} g / N at F = F-; dL/da = sum(dL/dF * x_hat).
  const at::Tensor tv = t.view({-1, 1, 1, 1});
  const at::Tensor x_hat = (at::cos(tv) * x0 + at::sin(tv) * z) / kSd;
  const at::Tensor w = 1.0 / (kSd * at::tan(tv));
  const double N = x0.numel();
  const at::Tensor dF = -2 * w * at::exp(-c.detach().view({-1, 1, 1, 1})) * r.g / N;
  EXPECT_NEAR(a.grad().item<double>(), (dF * x_hat).sum().item<double>(), 1e-12);
  // dL/dc_b = (1/N) sum over sample b of (1 - w e^{-c} g^2).
  const at::Tensor dc = (1 - w * at::exp(-c.detach().view({-1, 1, 1, 1})) * r.g.pow(2)).sum({1, 2, 3}) / N;
  EXPECT_CLOSE(c.grad(), dc, 1e-12);
}

TEST(SCMLoss, TimeLawQuantiles) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  const at::Tensor t = sana::sample_trigflow_times(20000, 0.2, 1.6, kSd, gen);
  EXPECT_GT(t.min().item<double>(), 0.0);
  EXPECT_LT(t.max().item<double>(), M_PI / 2);
  // The median of t is atan(exp(P_mean) / sigma_d).
  EXPECT_NEAR(t.median().item<double>(), std::atan(std::exp(0.2) / kSd), 0.02);
}
