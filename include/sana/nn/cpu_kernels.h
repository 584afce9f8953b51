#pragma once
// Fused CPU kernels for the elementwise and normalisation work between the matrix products, for inference.
// LibTorch 1.13 runs several of these ops on bf16 far below the memory bandwidth (layer_norm 13x slower than on
// fp32, silu 2x, a channel-wise RMSNorm as four passes with a strided reduction), and at the 0.6B model's sizes
// that work took a quarter of a transformer step and a third of the decode (docs/PERFORMANCE.md, "Between the
// products").
// Each kernel computes in fp32 and rounds where the reference's sequence of ATen ops rounds, so its result is the
// reference's up to fp32 summation order and, for silu, the last bit of exp.
//
// Each function here takes contiguous CPU tensors of fp32 or bf16 (`supported`); the callers keep the ATen form for
// everything else (CUDA, other dtypes, autograd and the JVP, which these kernels do not record).
#include <ATen/ATen.h>

namespace sana::nn::cpu {

// True when the fused kernels can run on x: a CPU tensor of fp32 or bf16, contiguous, under InferenceMode, and the
// kernels not switched off by the environment (SANA_CPU_KERNELS=0).
bool supported(const at::Tensor& x);

// x = silu(x) = x * sigmoid(x), in place.
void silu_(at::Tensor& x);

// GLU with a SiLU gate over the last dimension: x [..., 2H] -> x[..., :H] * silu(x[..., H:]), [..., H].
at::Tensor glu_silu(const at::Tensor& x);

// Layer norm over the last dimension without affine parameters (as the SANA blocks' norms).
at::Tensor layer_norm(const at::Tensor& x, double eps);

// diffusers' RMSNorm over the channels of an NCHW tensor: x * rsqrt(mean_c(x^2) + eps), then * weight + bias per
// channel (either may be undefined; they must have x's dtype), then + residual (undefined: none).
at::Tensor rms_norm_channels(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps,
                             const at::Tensor& residual);

// pixel_shuffle by 2 of NCHW [B, 4C, H, W] -> [B, C, 2H, 2W].
at::Tensor pixel_shuffle2(const at::Tensor& x);

}  // namespace sana::nn::cpu
