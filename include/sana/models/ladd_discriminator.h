#pragma once
// LADD discriminator heads (docs/ARCHITECTURE.md, "Distillation"): StyleGAN-T style 1-D convolution heads on the frozen teacher's
// block outputs. Per hooked block: [B, N, D] tokens -> [B, N] logits through
//   main = [SpectralConv1d(D, D, 1), BatchNormLocal(D), LeakyReLU(0.2)],
//          Residual([SpectralConv1d(D, D, 9, circular), BatchNormLocal(D), LeakyReLU(0.2)])  ((f(x) + x) / sqrt 2)
//   cls  = SpectralConv1d(D, 1, 1)
// Names follow the PyTorch modules (main.0.0.weight_orig, main.1.fn.0.weight_u, cls.bias, ...).
#include <ATen/ATen.h>

#include <memory>
#include <vector>

#include "sana/nn/layers.h"

namespace sana {

// Conv1d with spectral normalisation (torch.nn.utils.spectral_norm, one power iteration per training forward,
// eps 1e-12): weight = weight_orig / sigma, sigma = u^T W v with W = weight_orig as [out, in * k].
class SpectralConv1d : public nn::Module {
 public:
  SpectralConv1d(int64_t in, int64_t out, int64_t kernel, bool circular, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x);  // [B, in, N] -> [B, out, N]; updates u, v when training
  at::Tensor normalized_weight();           // the weight a forward uses (one power iteration when training)
  at::Tensor weight_orig, bias, weight_u, weight_v;
  int64_t kernel;
  bool circular;
};

// Batch norm with statistics over groups of `virtual_bs` samples and all tokens, no running statistics.
class BatchNormLocal : public nn::Module {
 public:
  BatchNormLocal(int64_t channels, int64_t virtual_bs, double eps, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const;  // [B, C, N]
  at::Tensor weight, bias;
  int64_t virtual_bs;
  double eps;
};

class DiscriminatorBlock : public nn::Module {  // conv, norm, LeakyReLU(0.2)
 public:
  DiscriminatorBlock(int64_t channels, int64_t kernel, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x);
  std::shared_ptr<SpectralConv1d> conv;  // "0"
  std::shared_ptr<BatchNormLocal> norm;  // "1"
};

class DiscriminatorHead : public nn::Module {
 public:
  DiscriminatorHead(int64_t channels, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& tokens);  // [B, N, D] -> [B, N]
  std::shared_ptr<DiscriminatorBlock> block0, block1;
  std::shared_ptr<SpectralConv1d> cls;
};

// One head per hooked teacher block; logits of all heads concatenated: [B, heads * N].
class LADDDiscriminatorHeads : public nn::Module {
 public:
  LADDDiscriminatorHeads(int64_t channels, std::vector<int> block_ids, const at::TensorOptions& options);
  at::Tensor forward(const std::vector<at::Tensor>& features);
  const std::vector<int>& block_ids() const { return block_ids_; }
  std::shared_ptr<nn::ModuleList<DiscriminatorHead>> heads;

 private:
  std::vector<int> block_ids_;
};

// Hinge losses: G: -mean(D(fake)); D: 0.5 (mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))).
at::Tensor hinge_generator_loss(const at::Tensor& fake_logits);
at::Tensor hinge_discriminator_loss(const at::Tensor& real_logits, const at::Tensor& fake_logits);

}  // namespace sana
