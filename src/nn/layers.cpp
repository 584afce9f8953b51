#include "sana/nn/layers.h"

#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>

namespace sana::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool has_bias, const at::TensorOptions& options) {
  weight = register_parameter("weight", at::empty({out_features, in_features}, options));
  if (has_bias) bias = register_parameter("bias", at::empty({out_features}, options));
}

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride_, int64_t padding_,
               int64_t groups_, bool has_bias, const at::TensorOptions& options)
    : stride(stride_), padding(padding_), groups(groups_) {
  weight = register_parameter("weight", at::empty({out_channels, in_channels / groups, kernel, kernel}, options));
  if (has_bias) bias = register_parameter("bias", at::empty({out_channels}, options));
}

at::Tensor Conv2d::forward(const at::Tensor& x) const {
  at::Tensor y = is_int8() ? at::conv2d(x, dequantized(x.scalar_type()),
                                        bias.defined() ? bias.to(x.scalar_type()) : bias, {stride, stride},
                                        {padding, padding}, {1, 1}, groups)
                           : at::conv2d(x, weight, bias, {stride, stride}, {padding, padding}, {1, 1}, groups);
  if (lora.empty()) return y;
  // PEFT's convolution LoRA: down is a convolution like this one (kernel, stride, padding), up a 1x1 one.
  return add_lora(x, std::move(y), [this](const at::Tensor& v, const at::Tensor& w, bool down) {
    const at::Tensor kernel = w.dim() == 4 ? w : w.view({w.size(0), w.size(1), 1, 1});
    return down ? at::conv2d(v, kernel, {}, {stride, stride}, {padding, padding}) : at::conv2d(v, kernel);
  });
}

at::Tensor Conv2d::forward_pointwise_tokens(const at::Tensor& x) const {
  const at::IntArrayRef shape = int8 == Int8Compute::q4 ? at::IntArrayRef(q4_shape_) : weight.sizes();
  TORCH_CHECK(shape[2] == 1 && shape[3] == 1 && groups == 1 && stride == 1,
              "forward_pointwise_tokens needs a 1x1 convolution");
  at::Tensor y = is_int8() ? int8_linear(x, weight.flatten(1), weight_scale, bias, int8)
                           : at::linear(x, weight.flatten(1), bias);
  if (lora.empty()) return y;
  return add_lora(x, std::move(y),
                  [](const at::Tensor& v, const at::Tensor& w, bool) { return at::linear(v, w.flatten(1)); });
}

void WeightedLayer::replace_weight(at::Tensor w) {
  // The registered "weight" is replaced (same name, same position), so state_dict() and checkpoints see the new one.
  parameters_["weight"] = w;
  weight = std::move(w);
}

void WeightedLayer::fuse_lora(const LoraDelta& d) {
  TORCH_CHECK(!is_int8(), "fuse_lora: an int8 weight takes LoRAs on the side path only");
  // W + scale * up . down, summed in fp32 (fp64 stays fp64) and rounded once to the weight's dtype.
  const auto acc = accumulation_dtype(weight.scalar_type());
  const at::Tensor delta = at::mm(d.up.flatten(1).to(acc), d.down.flatten(1).to(acc)).view(weight.sizes());
  at::Tensor fused = (weight.to(acc) + delta * d.scale).to(weight.scalar_type());
  if (!lora_original.defined()) lora_original = weight;  // the original tensor itself: nothing is copied
  replace_weight(std::move(fused));
}

void WeightedLayer::unfuse_lora() {
  if (!lora_original.defined()) return;
  replace_weight(lora_original);
  lora_original = at::Tensor();
}

void WeightedLayer::set_int8(at::Tensor q, at::Tensor scale, Int8Compute compute) {
  TORCH_CHECK(!is_int8(), "quantize_int8: the weight is int8 already");
  TORCH_CHECK(compute != Int8Compute::none, "quantize_int8: no int8 compute mode given");
  // The floating tensor is freed once this layer's own handle lets go of it too; LoRAs fused before stay fused
  // (the int8 rows hold them), so the weight they replaced is let go as well.
  replace_weight(q);
  lora_original = at::Tensor();
  weight_scale = register_buffer("weight_scale", std::move(scale));
  int8 = compute;
}

void WeightedLayer::quantize_int8(Int8Compute compute) {
  if (compute == Int8Compute::q4) {
    auto [packed, scale] = quantize_q4(weight);  // on the weight's device
    q4_shape_ = weight.sizes().vec();
    set_int8(std::move(packed), std::move(scale), compute);
    return;
  }
  auto [q, scale] = quantize_int8_rows(weight);
  set_int8(std::move(q), std::move(scale), compute);
}

at::Tensor WeightedLayer::dequantized(at::ScalarType dtype) const {
  if (int8 == Int8Compute::q4) return dequantize_q4(weight, weight_scale, dtype).view(q4_shape_);
  if (is_int8()) return dequantize_int8(weight, weight_scale, dtype);
  return weight.to(dtype);
}

void WeightedLayer::prepare_int8(Int8Compute compute) {
  const auto on = at::TensorOptions().device(weight.device());
  if (compute == Int8Compute::q4) {  // quantize_q4's shapes: packed [out, in / 2], scales [out, in / group]
    const int64_t out = weight.size(0), in = weight.numel() / out;
    q4_shape_ = weight.sizes().vec();
    set_int8(at::empty({out, in / 2}, on.dtype(at::kByte)), at::empty({out, in / kQ4Group}, on.dtype(at::kFloat)),
             compute);
    return;
  }
  std::vector<int64_t> scale_shape(weight.dim(), 1);
  scale_shape[0] = weight.size(0);
  set_int8(at::empty(weight.sizes(), on.dtype(at::kChar)), at::empty(scale_shape, on.dtype(at::kFloat)), compute);
}

RMSNorm::RMSNorm(int64_t dim, double eps_, bool elementwise_affine, bool has_bias, const at::TensorOptions& options)
    : eps(eps_) {
  if (elementwise_affine) {
    weight = register_parameter("weight", at::empty({dim}, options));
    if (has_bias) bias = register_parameter("bias", at::empty({dim}, options));
  }
}

at::Tensor RMSNorm::forward_dim(const at::Tensor& x, int64_t dim) const {
  if (c10::InferenceMode::is_enabled()) return forward_dim_lean(x, dim);
  const at::Tensor xf = x.to(accumulation_dtype(x.scalar_type()));
  at::Tensor y = xf * at::rsqrt(xf.pow(2).mean(dim, /*keepdim=*/true) + eps);
  if (!weight.defined()) return y.to(x.scalar_type());
  // diffusers: half-precision weights see the normalised value in their own dtype first.
  if (weight.scalar_type() == at::kHalf || weight.scalar_type() == at::kBFloat16) y = y.to(weight.scalar_type());
  y = y * weight_view(x.dim(), dim);
  if (bias.defined()) y = y + bias_view(x.dim(), dim);
  return y;
}

// The same values with fewer full-size temporaries: a decode's activations run to hundreds of MB each, and the
// straightforward form holds up to three fp32 copies at once. Only without autograd (the in-place steps would
// break a backward or a JVP).
at::Tensor RMSNorm::forward_dim_lean(const at::Tensor& x, int64_t dim) const {
  if (dim == 1 && fused_channels(x)) return cpu::rms_norm_channels(x, weight, bias, eps, {});
  const auto acc = accumulation_dtype(x.scalar_type());
  // The sums of squares in fp32, over slabs of the dimension after `dim` so that a half-precision x is never
  // converted whole (about 32 MB of fp32 at a time).
  const int64_t d = dim < 0 ? dim + x.dim() : dim, slab_dim = d + 1 < x.dim() ? d + 1 : 0;
  std::vector<int64_t> reduced(x.sizes().begin(), x.sizes().end());
  reduced[d] = 1;
  at::Tensor inv_rms = at::empty(reduced, x.options().dtype(acc));
  const int64_t per_row = std::max<int64_t>(1, x.numel() / std::max<int64_t>(1, x.size(slab_dim)));
  const int64_t slab = std::max<int64_t>(1, (int64_t{8} << 20) / per_row);
  for (int64_t r = 0; r < x.size(slab_dim); r += slab) {
    const int64_t n = std::min(slab, x.size(slab_dim) - r);
    inv_rms.narrow(slab_dim, r, n).copy_(at::linalg_vector_norm(x.narrow(slab_dim, r, n).to(acc), 2, {d}, true));
  }
  inv_rms.square_().div_(x.size(d)).add_(eps).rsqrt_();
  const bool half_weight = weight.defined() && (weight.scalar_type() == at::kHalf || weight.scalar_type() == at::kBFloat16);
  // x * inv_rms is computed in fp32 and rounded once on the store, as the reference's fp32 product then cast.
  at::Tensor y = at::empty_like(x, x.options().dtype(half_weight || !weight.defined() ? x.scalar_type() : acc));
  at::mul_out(y, x, inv_rms);
  if (!weight.defined()) return y;
  y.mul_(weight_view(x.dim(), dim));
  if (bias.defined()) y.add_(bias_view(x.dim(), dim));
  return y;
}

bool RMSNorm::fused_channels(const at::Tensor& x) const {
  for (const at::Tensor* t : {&weight, &bias})
    if (t->defined() && t->scalar_type() != x.scalar_type()) return false;
  return x.dim() == 4 && cpu::supported(x);
}

// weight / bias shaped to broadcast along `dim` of a rank-`rank` tensor.
at::Tensor RMSNorm::weight_view(int64_t rank, int64_t dim) const {
  std::vector<int64_t> shape(rank, 1);
  shape[dim < 0 ? dim + rank : dim] = weight.size(0);
  return weight.view(shape);
}

at::Tensor RMSNorm::bias_view(int64_t rank, int64_t dim) const {
  std::vector<int64_t> shape(rank, 1);
  shape[dim < 0 ? dim + rank : dim] = bias.size(0);
  return bias.view(shape);
}

GLUMBConv::GLUMBConv(int64_t in_channels, int64_t out_channels, int64_t hidden, bool with_norm,
                     const at::TensorOptions& options) {
  conv_inverted =
      register_module("conv_inverted", std::make_shared<Conv2d>(in_channels, 2 * hidden, 1, 1, 0, 1, true, options));
  conv_depth =
      register_module("conv_depth", std::make_shared<Conv2d>(2 * hidden, 2 * hidden, 3, 1, 1, 2 * hidden, true, options));
  conv_point = register_module("conv_point", std::make_shared<Conv2d>(hidden, out_channels, 1, 1, 0, 1, false, options));
  if (with_norm) norm = register_module("norm", std::make_shared<RMSNorm>(out_channels, 1e-5, true, true, options));
}

at::Tensor GLUMBConv::forward_tokens(const at::Tensor& x, int64_t h, int64_t w) const {
  const int64_t B = x.size(0), C2 = conv_inverted->weight.size(0);
  at::Tensor u = conv_inverted->forward_pointwise_tokens(x);  // [B, N, 2H]
  if (cpu::supported(u)) cpu::silu_(u);
  else u = at::silu(u);
  u = conv_depth->forward(u.view({B, h, w, C2}).permute({0, 3, 1, 2}));  // NHWC strides: no copy
  const at::Tensor tokens = u.permute({0, 2, 3, 1});                    // [B, h, w, 2H], contiguous when NHWC
  if (cpu::supported(tokens)) {
    u = cpu::glu_silu(tokens).view({B, h * w, C2 / 2});
  } else {
    auto halves = u.chunk(2, 1);
    u = (halves[0] * at::silu(halves[1])).permute({0, 2, 3, 1}).reshape({B, h * w, C2 / 2});
  }
  u = conv_point->forward_pointwise_tokens(u);
  return norm ? norm->forward(u) : u;
}

TimestepEmbedding::TimestepEmbedding(int64_t in_channels, int64_t dim, const at::TensorOptions& options) {
  linear_1 = register_module("linear_1", std::make_shared<Linear>(in_channels, dim, true, options));
  linear_2 = register_module("linear_2", std::make_shared<Linear>(dim, dim, true, options));
}

at::Tensor timestep_sinusoids(const at::Tensor& t, int64_t dim) {
  const int64_t half = dim / 2;
  const auto acc = t.options().dtype(accumulation_dtype(t.scalar_type()));
  const at::Tensor freqs = at::exp(at::arange(half, acc) * (-std::log(10000.0) / static_cast<double>(half)));
  const at::Tensor args = t.reshape({-1, 1}).to(acc.dtype()) * freqs.unsqueeze(0);
  return at::cat({at::cos(args), at::sin(args)}, -1);
}

at::Tensor relu_linear_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads,
                                 double eps) {
  const int64_t B = q.size(0), N = q.size(1), C = q.size(2), d = C / heads;
  // [B, N, H, d] -> [B, H, N, d], in fp32 (the sums overflow half precision).
  const auto acc = accumulation_dtype(q.scalar_type());
  auto split = [&](const at::Tensor& x) { return x.to(acc).reshape({B, -1, heads, d}).transpose(1, 2); };
  const at::Tensor qh = split(q), kh = split(k), vh = split(v);
  // Append a ones column to V so one matmul gives both sum_m v_m k_m^T and sum_m k_m.
  const at::Tensor v_pad = at::constant_pad_nd(vh, {0, 1}, 1.0);  // [B, H, N, d+1]
  const at::Tensor kv = at::matmul(kh.transpose(2, 3), v_pad);   // [B, H, d, d+1]
  const at::Tensor out = at::matmul(qh, kv);                      // [B, H, N, d+1]
  const at::Tensor num = out.narrow(-1, 0, d);
  const at::Tensor den = out.narrow(-1, d, 1);
  return (num / (den + eps)).transpose(1, 2).reshape({B, N, C}).to(q.scalar_type());
}

}  // namespace sana::nn
