// Training building blocks: AdamW against its update formula, CAME against its closed-form first step, gradient clipping, and a short flow-matching training
// of a tiny SANA transformer that lowers the loss on a fixed evaluation set of (s, eps) draws.
#include <ATen/core/grad_mode.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "sana/error.h"
#include "sana/models/sana_transformer.h"
#include "sana/nn/module_io.h"
#include "sana/train/flow_loss.h"
#include "sana/train/optim.h"
#include "test_util.h"

TEST(AdamW, MatchesTheUpdateFormula) {
  at::Tensor p = at::tensor({1.0, -2.0}, at::kDouble).requires_grad_();
  sana::AdamW opt({{"p", p}}, {0.1, 0.9, 0.99, 1e-8, 0.01});
  const at::Tensor g1 = at::tensor({0.5, -1.0}, at::kDouble), g2 = at::tensor({0.2, 0.3}, at::kDouble);
  at::Tensor expect = p.detach().clone(), m = at::zeros_like(expect), v = at::zeros_like(expect);
  int step = 0;
  for (const at::Tensor& g : {g1, g2}) {
    p.mutable_grad() = g.clone();
    opt.step();
    ++step;
    expect = expect * (1 - 0.1 * 0.01);
    m = 0.9 * m + 0.1 * g;
    v = 0.99 * v + 0.01 * g * g;
    expect = expect - 0.1 / (1 - std::pow(0.9, step)) * m / (at::sqrt(v) / std::sqrt(1 - std::pow(0.99, step)) + 1e-8);
  }
  EXPECT_CLOSE(p.detach(), expect, 1e-14);
  // State round trip.
  sana::AdamW other({{"p", p}}, {0.1, 0.9, 0.99, 1e-8, 0.01});
  other.load_state(opt.state());
  EXPECT_EQ(other.steps(), 2);
}

// g = a b^T with a, b > 0: g^2 is rank one, so CAME's factored second moment is exact and u = 1/sqrt(1 - beta2)
// everywhere, clipped to RMS 1 -> 1; m = 1 - beta1; the instability (u - m)^2 = beta1^2 is constant, so the first
// step is lr (1 - beta1) / (beta1 sqrt(1 - beta3)) in every entry. A 1-D tensor takes lr (1 - beta1) sign(g).
TEST(CAME, FirstStepIsTheClosedFormOnARankOneSquaredGradient) {
  at::Tensor w = at::zeros({3, 4}, at::kDouble).requires_grad_();
  at::Tensor b = at::zeros({3}, at::kDouble).requires_grad_();
  w.mutable_grad() = at::outer(at::tensor({1.0, 2.0, 3.0}, at::kDouble), at::tensor({0.5, 1.0, 2.0, 4.0}, at::kDouble));
  b.mutable_grad() = at::tensor({0.3, -2.0, 5.0}, at::kDouble);
  sana::CAMEOptions o;
  o.lr = 0.01;
  sana::CAME opt({{"w", w}, {"b", b}}, o);
  opt.step();
  EXPECT_CLOSE(w.detach(), at::full({3, 4}, -0.01 * 0.1 / (0.9 * std::sqrt(1e-4)), at::kDouble), 1e-12);
  EXPECT_CLOSE(b.detach(), at::tensor({-0.001, 0.001, -0.001}, at::kDouble), 1e-12);
  // The state round-trips and an AdamW state is refused.
  sana::CAME other({{"w", w}, {"b", b}}, o);
  other.load_state(opt.state());
  sana::AdamW adam({{"w", w}, {"b", b}}, {});
  EXPECT_THROW(other.load_state(adam.state()), sana::Error);
  EXPECT_THROW(sana::make_optimizer("sgd", {{"w", w}}, 0.1, 0.0), sana::Error);
}

TEST(CAME, SolvesALeastSquaresProblem) {
  at::manual_seed(0);
  const at::Tensor X = at::randn({64, 8}), W_true = at::randn({8, 4}), Y = at::mm(X, W_true);
  at::Tensor W = at::zeros({8, 4}).requires_grad_();
  auto opt = sana::make_optimizer("came", {{"W", W}}, 0.02, 0.0);
  auto loss = [&]() { return (at::mm(X, W) - Y).pow(2).mean(); };
  const double first = loss().item<double>();
  for (int i = 0; i < 300; ++i) {
    opt->zero_grad();
    loss().backward();
    opt->step();
  }
  EXPECT_LT(loss().item<double>(), 0.01 * first);
}

TEST(ClipGradNorm, ScalesToMaxNormAndFlagsNonFinite) {
  at::Tensor a = at::zeros({2}).requires_grad_(), b = at::zeros({1}).requires_grad_();
  a.mutable_grad() = at::tensor({3.0f, 0.0f});
  b.mutable_grad() = at::tensor({4.0f});
  EXPECT_NEAR(sana::clip_grad_norm({a, b}, 1.0), 5.0, 1e-6);
  EXPECT_NEAR(at::cat({a.grad(), b.grad()}).norm().item<double>(), 1.0, 1e-5);
  b.mutable_grad() = at::tensor({NAN});
  EXPECT_FALSE(std::isfinite(sana::clip_grad_norm({a, b}, 1.0)));
}

TEST(FlowTraining, ShortRunLowersTheLoss) {
  auto cfg = sana::load_sana_transformer_config(sana::test::fixture("transformer_sana_tiny/config.json"));
  cfg.num_layers = 1;
  sana::SanaTransformer2DModel model(cfg, at::kFloat);
  sana::nn::init_random(model, 0);
  at::manual_seed(0);
  // Two "images" with their own captions; the model must learn which latent goes with which caption.
  const int64_t C = cfg.in_channels, side = 4 * cfg.patch_size;  // latents the config's transformer takes
  const at::Tensor x0 = at::randn({2, C, side, side}) * 0.8;
  const at::Tensor text = at::randn({2, 6, cfg.caption_channels});
  sana::FlowVelocityFn v = [&](const at::Tensor& x_s, const at::Tensor& s) {
    sana::SanaTransformerInputs in;
    in.hidden_states = x_s;
    in.encoder_hidden_states = text;
    in.timestep = s;
    return model.forward(in);
  };
  at::Generator eval_gen = at::make_generator<at::CPUGeneratorImpl>(7);
  std::vector<std::pair<at::Tensor, at::Tensor>> eval_set;
  for (int i = 0; i < 8; ++i)
    eval_set.emplace_back(at::rand({2}, eval_gen), at::randn({2, C, side, side}, eval_gen));
  auto eval_loss = [&] {
    at::NoGradGuard no_grad;
    double sum = 0;
    for (const auto& [s, eps] : eval_set) sum += sana::flow_matching_loss_at(v, x0, s, eps).item<double>();
    return sum / eval_set.size();
  };

  for (auto& p : model.parameters()) p.requires_grad_(true);
  sana::AdamW opt(sana::nn::state_dict(model), {2e-3, 0.9, 0.999, 1e-8, 0.0});
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1);
  const double before = eval_loss();
  for (int step = 0; step < 60; ++step) {
    opt.zero_grad();
    sana::flow_matching_loss(v, x0, gen).backward();
    ASSERT_TRUE(std::isfinite(sana::clip_grad_norm(model.parameters(), 1.0)));
    opt.step();
  }
  const double after = eval_loss();
  EXPECT_LT(after, 0.7 * before) << before << " -> " << after;
}

TEST(FlowTraining, CaptionDropoutUsesTheNullEmbedding) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  const at::Tensor e = at::ones({64, 3, 2}), null = at::zeros({3, 2});
  const at::Tensor all = sana::caption_dropout(e, null, 1.0, gen), none = sana::caption_dropout(e, null, 0.0, gen);
  EXPECT_EQ(all.sum().item<float>(), 0.0f);
  EXPECT_TRUE(at::equal(none, e));
  const double kept = sana::caption_dropout(e, null, 0.5, gen).select(2, 0).select(1, 0).mean().item<double>();
  EXPECT_GT(kept, 0.25);
  EXPECT_LT(kept, 0.75);
}
