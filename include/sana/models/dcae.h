#pragma once
// diffusers AutoencoderDC (DC-AE), the SANA VAE: encoder and decoder with ResBlocks, EfficientViT blocks (multi-scale
// ReLU linear attention + GLUMBConv), and shortcut up/down blocks. See docs/ARCHITECTURE.md, "DC-AE". Parameter names are
// the diffusers names (decoder.up_blocks.4.0.conv.weight, ...). Convolution stages run NCHW, attention blocks on
// channels-last tokens (see dcae.cpp for why).
#include <ATen/ATen.h>

#include <memory>
#include <string>

#include "sana/io/config.h"
#include "sana/nn/layers.h"

namespace sana {

// One element of a DC-AE stage (an nn.Sequential in the reference): [B, C, H, W] -> [B, C', H', W'].
class DCBlock : public nn::Module {
 public:
  virtual at::Tensor forward(const at::Tensor& x) const = 0;
};

// conv3x3 -> act -> conv3x3 (no bias) -> RMSNorm over channels (w + b) -> + x.
class DCResBlock : public DCBlock {
 public:
  DCResBlock(int64_t channels, std::string act, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const override;
  std::shared_ptr<nn::Conv2d> conv1, conv2;
  std::shared_ptr<nn::RMSNorm> norm;
  std::string act;
};

// SanaMultiscaleAttentionProjection: depthwise k x k conv, then a grouped 1x1 conv (groups = 3 * heads).
class DCMultiscaleProjection : public nn::Module {
 public:
  DCMultiscaleProjection(int64_t channels, int64_t heads, int64_t kernel, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const { return proj_out->forward(proj_in->forward(x)); }
  std::shared_ptr<nn::Conv2d> proj_in, proj_out;
};

// SanaMultiscaleLinearAttention (LiteMLA) with its residual.
class DCLiteMLA : public nn::Module {
 public:
  DCLiteMLA(int64_t channels, int64_t head_dim, const std::vector<int>& scales, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const;
  std::shared_ptr<nn::Linear> to_q, to_k, to_v, to_out;
  std::shared_ptr<nn::ModuleList<DCMultiscaleProjection>> to_qkv_multiscale;
  std::shared_ptr<nn::RMSNorm> norm_out;
  int64_t head_dim;
};

class DCEfficientViTBlock : public DCBlock {
 public:
  DCEfficientViTBlock(int64_t channels, int64_t head_dim, const std::vector<int>& scales, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const override;
  std::shared_ptr<DCLiteMLA> attn;
  std::shared_ptr<nn::GLUMBConv> conv_out;
};

// x2 upsampling: nearest + conv3x3 ("interpolate") or conv3x3 + pixel_shuffle; shortcut = pixel_shuffle of the
// input with every channel repeated.
class DCUpBlock2d : public DCBlock {
 public:
  DCUpBlock2d(int64_t in_channels, int64_t out_channels, bool interpolate, bool shortcut, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const override;
  std::shared_ptr<nn::Conv2d> conv;
  bool interpolate, shortcut;
  int64_t repeats;
};

// x2 downsampling: stride-2 conv3x3, or conv3x3 + pixel_unshuffle; shortcut = pixel_unshuffle + group mean.
class DCDownBlock2d : public DCBlock {
 public:
  DCDownBlock2d(int64_t in_channels, int64_t out_channels, bool pixel_unshuffle, bool shortcut, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const override;
  std::shared_ptr<nn::Conv2d> conv;
  bool pixel_unshuffle, shortcut;
  int64_t group_size;
};

using DCStage = nn::ModuleList<DCBlock>;

// LiteMLA's attention on token tensors q, k, v [B, N, groups*d] (q, k after ReLU), in fp32, result in q's dtype:
// out_n = sum_m v_m (k_m . q_n) / (sum_m k_m . q_n + 1e-15). The reference evaluates it as a linear-attention product
// when N > d and as an explicit N x N matrix otherwise; `quadratic` picks the form.
at::Tensor lite_mla_kernel(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t groups, bool quadratic);

class DCEncoder : public nn::Module {
 public:
  DCEncoder(const AutoencoderDCConfig& cfg, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const;
  std::shared_ptr<DCBlock> conv_in_block;      // when layers_per_block[0] == 0
  std::shared_ptr<nn::Conv2d> conv_in, conv_out;
  std::shared_ptr<nn::ModuleList<DCStage>> down_blocks;
  int64_t out_shortcut_group = 0;              // 0: no shortcut
};

class DCDecoder : public nn::Module {
 public:
  DCDecoder(const AutoencoderDCConfig& cfg, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& z) const;
  std::shared_ptr<nn::Conv2d> conv_in, conv_out;
  std::shared_ptr<DCBlock> conv_out_block;     // when layers_per_block[0] == 0
  std::shared_ptr<nn::ModuleList<DCStage>> up_blocks;
  std::shared_ptr<nn::RMSNorm> norm_out;
  int64_t in_shortcut_repeats = 0;             // 0: no shortcut
  std::string conv_act;
};

// diffusers' AutoencoderDC.enable_tiling settings, in output pixels (multiples of the VAE factor), with its defaults.
struct TiledDecodeOptions {
  int tile_sample_min_height = 512, tile_sample_min_width = 512;        // tile size
  int tile_sample_stride_height = 448, tile_sample_stride_width = 448;  // tile stride (tiles overlap by the rest)
};

class AutoencoderDC : public nn::Module {
 public:
  AutoencoderDC(const AutoencoderDCConfig& cfg, const at::TensorOptions& options);
  static std::shared_ptr<AutoencoderDC> from_pretrained(const std::string& dir, const at::TensorOptions& options);

  // image [B, in_channels, H, W] in [-1, 1] -> latent [B, latent_channels, H/f, W/f] (deterministic, not scaled).
  at::Tensor encode(const at::Tensor& image) const;
  // latent (already divided by scaling_factor) -> image, roughly in [-1, 1].
  at::Tensor decode(const at::Tensor& latent) const;
  // diffusers' tiled decode: overlapping latent tiles decoded one at a time (the decoder's working memory bounded by
  // the tile size, not the image size) and blended as diffusers blends them; the whole decode when one tile covers
  // the latent. Error for settings that are not multiples of the factor or whose stride exceeds the tile.
  at::Tensor decode_tiled(const at::Tensor& latent, const TiledDecodeOptions& options = {}) const;

  const AutoencoderDCConfig& config() const { return cfg_; }
  at::ScalarType dtype() const { return decoder->conv_in->weight.scalar_type(); }

  std::shared_ptr<DCEncoder> encoder;
  std::shared_ptr<DCDecoder> decoder;

 private:
  AutoencoderDCConfig cfg_;
};

// Multiply-adds x2 of one decoder forward for a [1, latent, h, w] latent (convolutions, projections, attention
// products; elementwise work not counted), for GFLOP/s figures.
double dcae_decoder_flops(const AutoencoderDCConfig& cfg, int64_t h, int64_t w);

}  // namespace sana
