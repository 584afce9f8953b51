#pragma once
// Shared layers with the diffusers parameter names (weight, bias) so checkpoints load by name.
// Parameters are allocated uninitialised; they are filled by loading a checkpoint or by nn::init_random.
#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <memory>
#include <string>
#include <vector>

#include "sana/nn/cpu_kernels.h"
#include "sana/nn/int8.h"

namespace sana::nn {

using torch::nn::Module;

// The dtype of sums and norms: fp32 for fp32 and half types (half sums overflow), fp64 stays fp64 (float64 runs are
// the reference for derivative checks).
inline at::ScalarType accumulation_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// One LoRA update of a layer's weight, dW = scale * up . down, with the tensors as LoRA files store them: down
// [r, in] (a convolution's [r, in, k, k]), up [out, r] ([out, r, 1, 1]); scale = the user's scale * alpha / r.
struct LoraDelta {
  at::Tensor down, up;
  double scale = 1;
};

// A layer with a `weight` (and maybe a `bias`) that can hold its weight as int8 (int8.h): the parameter named
// "weight" becomes the int8 tensor and a buffer "weight_scale" appears beside it, so state_dict() and checkpoints
// carry the int8 layout by the same names.
class WeightedLayer : public Module {
 public:
  // Replaces the floating weight by its int8 rows (quantize_int8_rows), or by 4-bit groups for Int8Compute::q4
  // (quantize_q4), and frees it; later products use `compute`.
  void quantize_int8(Int8Compute compute);
  // An uninitialised int8 weight and scale of the same shapes, for load_state_dict to fill from an int8 checkpoint.
  void prepare_int8(Int8Compute compute);
  bool is_int8() const { return int8 != Int8Compute::none; }  // quantized: int8 rows or 4-bit groups
  // The weight's shape as a floating tensor ([out, in] or [out, in, kh, kw]), whatever its storage.
  std::vector<int64_t> weight_shape() const { return int8 == Int8Compute::q4 ? q4_shape_ : weight.sizes().vec(); }
  // The weight as a floating tensor of `dtype` in that shape (quantized ones dequantized).
  at::Tensor dequantized(at::ScalarType dtype) const;

  at::Tensor weight, bias;  // bias undefined when disabled
  at::Tensor weight_scale;  // int8: fp32 [out, 1, ...]; q4: fp32 [out, in / kQ4Group]
  Int8Compute int8 = Int8Compute::none;

  // LoRA (lora.h), in one of two forms: fused into `weight` (fuse_lora; the weight it replaced is kept, so
  // unfuse_lora restores it bit for bit), or beside it (`lora`: each output gets scale * (x down^T) up^T added; for
  // int8 weights, or when the LoRAs change from call to call).
  void fuse_lora(const LoraDelta& delta);
  void unfuse_lora();
  std::vector<LoraDelta> lora;

 protected:
  // y plus the side-path LoRAs for input x: `product(x, down)` then `product(., up)` is the layer's own operation.
  template <class Product>
  at::Tensor add_lora(const at::Tensor& x, at::Tensor y, Product&& product) const {
    for (const LoraDelta& d : lora)
      y = y + product(product(x, d.down.to(x.scalar_type()), true), d.up.to(x.scalar_type()), false) * d.scale;
    return y;
  }
  std::vector<int64_t> q4_shape_;  // q4 only: the floating weight's shape

 private:
  void set_int8(at::Tensor q, at::Tensor scale, Int8Compute compute);
  void replace_weight(at::Tensor w);
  at::Tensor lora_original;  // the weight before the first fuse_lora
};

// y = x W^T + b, W [out, in].
class Linear : public WeightedLayer {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const {
    at::Tensor y = is_int8() ? int8_linear(x, weight, weight_scale, bias, int8) : at::linear(x, weight, bias);
    if (lora.empty()) return y;
    return add_lora(x, std::move(y), [](const at::Tensor& v, const at::Tensor& w, bool) { return at::linear(v, w); });
  }
};

// 2-D convolution, weight [out, in/groups, k, k].
class Conv2d : public WeightedLayer {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride, int64_t padding,
         int64_t groups, bool bias, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const;
  // A 1x1 convolution applied to channels-last tokens [..., in] is a linear layer with weight [out, in].
  at::Tensor forward_pointwise_tokens(const at::Tensor& x) const;
  int64_t stride, padding, groups;
};

// diffusers RMSNorm over the last dim: y = x * rsqrt(mean(x^2) + eps) computed in fp32 (fp64 stays fp64), then
// * weight (+ bias).
// (The plain weight, not 1 + weight as in Gemma.)
class RMSNorm : public Module {
 public:
  RMSNorm(int64_t dim, double eps, bool elementwise_affine, bool bias, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const { return forward_dim(x, -1); }
  // The same over dimension `dim` (e.g. 1 = channels of an NCHW tensor, without moving them last).
  at::Tensor forward_dim(const at::Tensor& x, int64_t dim) const;
  // True when the fused CPU kernel can norm x's channels (x NCHW; weight and bias, if any, in x's dtype).
  bool fused_channels(const at::Tensor& x) const;
  at::Tensor weight, bias;
  double eps;

 private:
  at::Tensor forward_dim_lean(const at::Tensor& x, int64_t dim) const;
  at::Tensor weight_view(int64_t rank, int64_t dim) const;
  at::Tensor bias_view(int64_t rank, int64_t dim) const;
};

// diffusers TimestepEmbedding: linear_2(SiLU(linear_1(x))).
class TimestepEmbedding : public Module {
 public:
  TimestepEmbedding(int64_t in_channels, int64_t dim, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const { return linear_2->forward(at::silu(linear_1->forward(x))); }
  std::shared_ptr<Linear> linear_1, linear_2;
};

// GLUMBConv (diffusers): 1x1 conv C->2H + SiLU, depthwise 3x3, a * SiLU(gate), 1x1 conv H->C_out (no bias), and in
// the DC-AE an RMSNorm (weight and bias) on the output. The residual, where there is one, is the caller's.
class GLUMBConv : public Module {
 public:
  GLUMBConv(int64_t in_channels, int64_t out_channels, int64_t hidden, bool norm, const at::TensorOptions& options);
  // On channels-last tokens [B, h*w, C]: the 1x1 convolutions are matrix products, the depthwise convolution
  // runs on the channels-last view of the same memory.
  at::Tensor forward_tokens(const at::Tensor& x, int64_t h, int64_t w) const;
  std::shared_ptr<Conv2d> conv_inverted, conv_depth, conv_point;
  std::shared_ptr<RMSNorm> norm;  // null without norm
};

// A list of submodules registered as "0", "1", ... (torch.nn.ModuleList names).
template <class M>
class ModuleList : public Module {
 public:
  void append(std::shared_ptr<M> m) {
    register_module(std::to_string(items_.size()), m);
    items_.push_back(std::move(m));
  }
  M& operator[](size_t i) const { return *items_.at(i); }
  size_t size() const { return items_.size(); }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }

 private:
  std::vector<std::shared_ptr<M>> items_;
};

// diffusers Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0): for k < dim/2,
// f_k = exp(-ln(10000) k / (dim/2)); returns [cos(t f), sin(t f)] in fp32 (fp64 for fp64 t), shape [B, dim].
at::Tensor timestep_sinusoids(const at::Tensor& t, int64_t dim = 256);

// LayerNorm over the last dim without affine parameters (the fused CPU kernel where it applies).
inline at::Tensor layer_norm(const at::Tensor& x, double eps) {
  if (cpu::supported(x)) return cpu::layer_norm(x, eps);
  return at::layer_norm(x, {x.size(-1)}, {}, {}, eps);
}

// ReLU linear attention (SANA, no softmax, no scale) on token tensors q, k, v [B, N, heads*d], accumulated in
// fp32 (fp64 for fp64 inputs): out_n = sum_m v_m (k_m . q_n) / (sum_m k_m . q_n + eps). q and k must already be ReLU'd.
at::Tensor relu_linear_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads,
                                 double eps);

}  // namespace sana::nn
