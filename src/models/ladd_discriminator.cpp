#include "sana/models/ladd_discriminator.h"

#include <ATen/core/grad_mode.h>

#include <cmath>

#include "sana/error.h"

namespace sana {
namespace {

// Holds named children so the parameter names follow PyTorch's nn.Sequential / ResidualBlock layout.
class Holder : public nn::Module {};

at::Tensor normalize(const at::Tensor& v) { return v / at::clamp_min(v.norm(), 1e-12); }

}  // namespace

SpectralConv1d::SpectralConv1d(int64_t in, int64_t out, int64_t kernel_, bool circular_, const at::TensorOptions& options)
    : kernel(kernel_), circular(circular_) {
  weight_orig = register_parameter("weight_orig", at::empty({out, in, kernel}, options));
  bias = register_parameter("bias", at::zeros({out}, options));
  // PyTorch starts u and v as normalised Gaussian vectors.
  weight_u = register_buffer("weight_u", normalize(at::randn({out}, options)));
  weight_v = register_buffer("weight_v", normalize(at::randn({in * kernel}, options)));
}

at::Tensor SpectralConv1d::normalized_weight() {
  const at::Tensor W = weight_orig.flatten(1);
  if (is_training()) {
    at::NoGradGuard no_grad;
    weight_v.copy_(normalize(at::mv(W.t(), weight_u)));
    weight_u.copy_(normalize(at::mv(W, weight_v)));
  }
  // sigma depends on weight_orig (gradients flow through it); u and v are constants, cloned so that a second
  // forward's power iteration does not modify what this forward's graph saved (as torch's spectral_norm does).
  const at::Tensor sigma = at::dot(weight_u.detach().clone(), at::mv(W, weight_v.detach().clone()));
  return weight_orig / sigma;
}

at::Tensor SpectralConv1d::forward(const at::Tensor& x) {
  const at::Tensor w = normalized_weight();
  const int64_t pad = kernel / 2;
  at::Tensor in = x;
  if (pad > 0 && circular) in = at::cat({x.narrow(2, x.size(2) - pad, pad), x, x.narrow(2, 0, pad)}, 2);
  return at::conv1d(in, w, bias, 1, circular ? 0 : pad);
}

BatchNormLocal::BatchNormLocal(int64_t channels, int64_t virtual_bs_, double eps_, const at::TensorOptions& options)
    : virtual_bs(virtual_bs_), eps(eps_) {
  weight = register_parameter("weight", at::ones({channels}, options));
  bias = register_parameter("bias", at::zeros({channels}, options));
}

at::Tensor BatchNormLocal::forward(const at::Tensor& x) const {
  const int64_t B = x.size(0), C = x.size(1), N = x.size(2);
  const int64_t G = (B + virtual_bs - 1) / virtual_bs;
  if (B % G != 0)
    throw Error("BatchNormLocal: batch " + std::to_string(B) + " does not split into " + std::to_string(G) + " groups");
  const at::Tensor g = x.view({G, B / G, C, N});
  const at::Tensor mean = g.mean({1, 3}, true);
  const at::Tensor var = (g - mean).pow(2).mean({1, 3}, true);
  const at::Tensor y = (g - mean) / at::sqrt(var + eps);
  return (y * weight.view({1, 1, C, 1}) + bias.view({1, 1, C, 1})).view({B, C, N});
}

DiscriminatorBlock::DiscriminatorBlock(int64_t channels, int64_t kernel, const at::TensorOptions& options) {
  conv = register_module("0", std::make_shared<SpectralConv1d>(channels, channels, kernel, true, options));
  norm = register_module("1", std::make_shared<BatchNormLocal>(channels, 8, 1e-5, options));
}

at::Tensor DiscriminatorBlock::forward(const at::Tensor& x) { return at::leaky_relu(norm->forward(conv->forward(x)), 0.2); }

DiscriminatorHead::DiscriminatorHead(int64_t channels, const at::TensorOptions& options) {
  auto main = register_module("main", std::make_shared<Holder>());
  block0 = main->register_module("0", std::make_shared<DiscriminatorBlock>(channels, 1, options));
  auto residual = main->register_module("1", std::make_shared<Holder>());
  block1 = residual->register_module("fn", std::make_shared<DiscriminatorBlock>(channels, 9, options));
  cls = register_module("cls", std::make_shared<SpectralConv1d>(channels, 1, 1, false, options));
}

at::Tensor DiscriminatorHead::forward(const at::Tensor& tokens) {
  at::Tensor x = block0->forward(tokens.transpose(1, 2));  // [B, D, N]
  x = (block1->forward(x) + x) / std::sqrt(2.0);
  return cls->forward(x).squeeze(1);  // [B, N]
}

LADDDiscriminatorHeads::LADDDiscriminatorHeads(int64_t channels, std::vector<int> block_ids,
                                               const at::TensorOptions& options)
    : block_ids_(std::move(block_ids)) {
  if (block_ids_.empty()) throw Error("LADD discriminator: no teacher block ids given");
  heads = register_module("heads", std::make_shared<nn::ModuleList<DiscriminatorHead>>());
  for (size_t i = 0; i < block_ids_.size(); ++i) heads->append(std::make_shared<DiscriminatorHead>(channels, options));
}

at::Tensor LADDDiscriminatorHeads::forward(const std::vector<at::Tensor>& features) {
  if (features.size() != heads->size())
    throw Error("LADD discriminator: " + std::to_string(features.size()) + " feature maps for " +
                std::to_string(heads->size()) + " heads");
  std::vector<at::Tensor> logits;
  for (size_t i = 0; i < features.size(); ++i) logits.push_back((*heads)[i].forward(features[i]));
  return at::cat(logits, 1);
}

at::Tensor hinge_generator_loss(const at::Tensor& fake_logits) { return -fake_logits.mean(); }

at::Tensor hinge_discriminator_loss(const at::Tensor& real_logits, const at::Tensor& fake_logits) {
  return 0.5 * (at::relu(1 - real_logits).mean() + at::relu(1 + fake_logits).mean());
}

}  // namespace sana
