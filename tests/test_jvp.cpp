// Forward-mode AD through the SANA-Sprint student (TrigFlow-wrapped transformer with QK-norm, linear attention,
// softmax cross-attention, depthwise convolution, LayerNorm, sinusoidal time and guidance embeddings) against a
// central finite difference, in float64: the JVP the sCM loss needs (docs/ARCHITECTURE.md, "Distillation").
#include "sana/diffusion/trigflow.h"
#include "sana/nn/jvp.h"
#include "test_util.h"

using sana::test::fixture;

TEST(Jvp, SimpleFunctionsAreExact) {
  const at::Tensor x = at::tensor({0.3, -0.7, 1.1}, at::kDouble), v = at::tensor({1.0, 2.0, -0.5}, at::kDouble);
  const auto [y, dy] = sana::nn::jvp([](const std::vector<at::Tensor>& a) { return at::sin(a[0]) * a[0]; }, {x}, {v});
  EXPECT_CLOSE(y, at::sin(x) * x, 1e-15);
  EXPECT_CLOSE(dy, (at::cos(x) * x + at::sin(x)) * v, 1e-15);
}

TEST(Jvp, SprintStudentMatchesCentralDifference) {
  auto model = sana::SanaTransformer2DModel::from_pretrained(fixture("transformer_sprint_tiny"), at::kDouble);
  ASSERT_TRUE(model->config().qk_norm.has_value());
  const sana::SanaTrigFlow student(model);
  auto io = sana::SafetensorsFile::open(fixture("transformer_sprint_tiny/io.safetensors"));
  sana::SanaTransformerInputs cond;
  cond.encoder_hidden_states = io->get("case0.encoder_hidden_states").to(at::kDouble);
  cond.encoder_attention_mask = io->get("case0.encoder_attention_mask");
  cond.guidance = io->get("case0.guidance").to(at::kDouble);

  at::manual_seed(3);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor like = io->get("case0.hidden_states").to(at::kDouble);  // the fixture's latent shape
  const at::Tensor x = at::randn_like(like), t = at::linspace(0.4, 1.2, like.size(0), f64);
  // The sCM tangents: v_x = cos t sin t dx/dt / sigma_d (here a random direction), v_t = cos t sin t.
  const at::Tensor vx = at::randn_like(like), vt = at::cos(t) * at::sin(t);
  auto F = [&](const std::vector<at::Tensor>& a) { return student.forward(a[0], a[1], cond); };

  const auto [out, tangent] = sana::nn::jvp(F, {x, t}, {vx, vt});
  EXPECT_CLOSE(out, F({x, t}), 1e-12);

  // A small step: the ReLU kernels of the linear attention make F piecewise smooth, and a wider difference can
  // straddle a kink (with 1e-5 one such crossing here gave a 1.5e-4 relative error); float64 rounding at 1e-7 is
  // ~1e-9 relative.
  const double eps = 1e-7;
  const at::Tensor fd = (F({x + eps * vx, t + eps * vt}) - F({x - eps * vx, t - eps * vt})) / (2 * eps);
  const double rel = (tangent - fd).norm().item<double>() / fd.norm().item<double>();
  EXPECT_LT(rel, 1e-6) << "relative error " << rel;
  // The time direction alone is not trivially small (the test would not notice a dropped dF/dt otherwise).
  const auto [o2, dt_only] = sana::nn::jvp(F, {x, t}, {at::zeros_like(vx), vt});
  EXPECT_GT(dt_only.norm().item<double>(), 1e-3 * tangent.norm().item<double>());
}
