// LADD discriminator parts against their definitions: spectral normalisation converges to the top singular value,
// local batch norm normalises per group of 8, heads map teacher tokens to per-token logits, hinge losses; and the
// transformer exposes the block features and embedded timestep the training losses need.
#include "sana/models/ladd_discriminator.h"
#include "sana/models/sana_transformer.h"
#include "sana/nn/module_io.h"
#include "test_util.h"

TEST(LADD, SpectralNormConvergesToTopSingularValue) {
  at::manual_seed(0);
  sana::SpectralConv1d conv(6, 5, 3, true, at::kDouble);
  sana::nn::init_random(conv, 1);
  conv.train();
  for (int i = 0; i < 200; ++i) conv.normalized_weight();  // power iterations
  const at::Tensor w = conv.normalized_weight().flatten(1);
  EXPECT_NEAR(at::linalg_svdvals(w)[0].item<double>(), 1.0, 1e-9);
  // In eval mode u, v stay put.
  conv.eval();
  const at::Tensor u = conv.weight_u.clone();
  conv.normalized_weight();
  EXPECT_TRUE(at::equal(u, conv.weight_u));
}

TEST(LADD, CircularConvolutionWrapsTokens) {
  sana::SpectralConv1d conv(1, 1, 3, true, at::kDouble);
  conv.eval();
  conv.weight_orig.data().copy_(at::tensor({1.0, 0.0, 0.0}, at::kDouble).view({1, 1, 3}));
  conv.weight_u.fill_(1.0);
  conv.weight_v.copy_(at::tensor({1.0, 0.0, 0.0}, at::kDouble));
  // Kernel [1, 0, 0] picks the left neighbour; the first token's left neighbour is the last token.
  const at::Tensor y = conv.forward(at::tensor({1.0, 2.0, 3.0, 4.0}, at::kDouble).view({1, 1, 4}));
  EXPECT_TRUE(at::allclose(y.flatten(), at::tensor({4.0, 1.0, 2.0, 3.0}, at::kDouble)));
}

TEST(LADD, BatchNormLocalNormalisesGroupsOfEight) {
  sana::BatchNormLocal bn(3, 8, 1e-5, at::kDouble);
  at::manual_seed(2);
  const at::Tensor x = at::randn({16, 3, 10}, at::kDouble) * 3 + 1;
  const at::Tensor y = bn.forward(x).view({2, 8, 3, 10});
  EXPECT_LT(y.mean({1, 3}).abs().max().item<double>(), 1e-12);
  EXPECT_NEAR(y.pow(2).mean({1, 3}).min().item<double>(), 1.0, 1e-5);
}

TEST(LADD, HeadsAndHingeLosses) {
  at::manual_seed(3);
  sana::LADDDiscriminatorHeads disc(16, {0, 1}, at::kFloat);
  sana::nn::init_random(disc, 4);
  const at::Tensor f = at::randn({4, 20, 16});
  EXPECT_EQ(disc.forward({f, f}).sizes(), (std::vector<int64_t>{4, 40}));
  const at::Tensor real = at::tensor({2.0f, 0.5f}), fake = at::tensor({-2.0f, 0.5f});
  EXPECT_FLOAT_EQ(sana::hinge_discriminator_loss(real, fake).item<float>(), 0.5f * (0.25f + 0.75f));
  EXPECT_FLOAT_EQ(sana::hinge_generator_loss(fake).item<float>(), 0.75f);
  // Gradients reach the heads' parameters.
  disc.forward({f, f}).mean().backward();
  EXPECT_TRUE((*disc.heads)[1].cls->weight_orig.grad().defined());
}

TEST(LADD, TransformerExposesBlockFeaturesAndEmbeddedTimestep) {
  auto model = sana::SanaTransformer2DModel::from_pretrained(sana::test::fixture("transformer_sprint_tiny"), at::kFloat);
  auto io = sana::SafetensorsFile::open(sana::test::fixture("transformer_sprint_tiny/io.safetensors"));
  sana::SanaTransformerInputs in;
  in.hidden_states = io->get("case0.hidden_states");
  in.encoder_hidden_states = io->get("case0.encoder_hidden_states");
  in.encoder_attention_mask = io->get("case0.encoder_attention_mask");
  in.timestep = io->get("case0.timestep");
  in.guidance = io->get("case0.guidance");
  sana::SanaTransformerAux aux;
  aux.block_ids = {1, 0};
  const at::Tensor out = model->forward(in, &aux);
  EXPECT_TRUE(at::equal(out, model->forward(in)));  // asking for features changes nothing
  ASSERT_EQ(aux.block_features.size(), 2u);
  const auto& cfg = model->config();
  const int64_t B = in.hidden_states.size(0), p = cfg.patch_size;
  const int64_t tokens = in.hidden_states.size(2) / p * (in.hidden_states.size(3) / p);
  EXPECT_EQ(aux.block_features[0].sizes(), (std::vector<int64_t>{B, tokens, cfg.inner_dim()}));
  EXPECT_FALSE(at::equal(aux.block_features[0], aux.block_features[1]));
  EXPECT_EQ(aux.embedded_timestep.sizes(), (std::vector<int64_t>{B, cfg.inner_dim()}));
  aux.block_ids = {cfg.num_layers};  // one past the last block
  EXPECT_ANY_THROW(model->forward(in, &aux));
}
