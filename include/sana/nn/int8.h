#pragma once
// int8 weights (docs/QUANTIZATION.md): symmetric, one scale per output channel, stored as the compressed-tensors /
// ComfyUI int8 layout does: `weight` int8 [out, in] (or [out, in, 1, 1]) and `weight_scale` fp32 [out, 1] (or
// [out, 1, 1, 1]), weight ≈ weight * weight_scale. Two ways to multiply with them:
//   Int8Compute::weights  — W8A16: the weight is dequantized to the input's dtype per call, the product runs in that
//                           dtype. Only the weight rounding changes the result (each weight within half a step).
//   Int8Compute::dynamic  — W8A8: on the CPU, the activations are quantized per call too (per tensor, by LibTorch's
//                           oneDNN engine) and the product runs in int8: faster, and less exact. Elsewhere, and for
//                           inputs of few rows (where packing the weight costs more than it saves), as `weights`.
//   Int8Compute::q4       — 4-bit weights, weight-only (quantize_q4 below): `weight` uint8 [out, in / 2], two values
//                           per byte, `weight_scale` fp32 [out, in / kQ4Group]; dequantized per call like `weights`.
#include <ATen/ATen.h>

namespace sana::nn {

enum class Int8Compute { none, weights, dynamic, q4 };

// Layers with fewer weights stay floating unless told otherwise (quantize.h says why).
constexpr int64_t kDefaultQuantizeMinWeights = int64_t{1} << 16;

// Symmetric per-row int8 of a floating weight [out, ...]: {q int8, scale fp32 [out, 1, ...]}, q = round(w / scale)
// with scale = max|w_row| / 127 (rows of zeros get scale 1).
std::pair<at::Tensor, at::Tensor> quantize_int8_rows(const at::Tensor& weight);

// q * scale in `dtype`.
at::Tensor dequantize_int8(const at::Tensor& q, const at::Tensor& scale, at::ScalarType dtype);

// x [..., in] times the int8 weight q [out, in] (scale [out, 1]) plus bias, in x's dtype.
at::Tensor int8_linear(const at::Tensor& x, const at::Tensor& q, const at::Tensor& scale, const at::Tensor& bias,
                       Int8Compute compute);

// 4-bit groups: each run of kQ4Group weights of a row shares one scale, max|w| / 7, and stores round(w / scale) in
// [-7, 7] as value + 8 in a nibble, the even input first (low nibble), the odd one next (high nibble). The input
// width must be a multiple of the group. {packed uint8 [out, in / 2], scale fp32 [out, in / group]}.
constexpr int64_t kQ4Group = 64;
std::pair<at::Tensor, at::Tensor> quantize_q4(const at::Tensor& weight, int64_t group = kQ4Group);
// The [out, in] weight in `dtype`.
at::Tensor dequantize_q4(const at::Tensor& packed, const at::Tensor& scale, at::ScalarType dtype);

// Whether this LibTorch can run Int8Compute::dynamic on the CPU (a quantized engine with dynamic linear).
bool cpu_int8_dynamic_available();

}  // namespace sana::nn
