#pragma once
// diffusers AutoencoderTiny's decoder (TAESD, madebyollin/taesd): a fast preview decoder of a VAE's latent space,
// distilled from the full decoder (docs/DECODERS.md). It reads the latents the transformer works in (its
// scaling_factor is 1) and gives an image in [-1, 1] like AutoencoderDC::decode.
//
//   tanh(z / 3) * 3 -> conv3x3 -> ReLU -> per stage: blocks, then (not the last) nearest x2 + conv3x3 -> conv3x3 to RGB
//   block: x -> ReLU(conv(ReLU(conv(ReLU(conv(x))))) + x)
//
// Parameter names are diffusers': decoder.layers.N.weight, decoder.layers.N.conv.{0,2,4}.weight, where N counts the
// parameter-free ReLU and Upsample entries of diffusers' nn.Sequential too.
#include <ATen/ATen.h>

#include <memory>
#include <string>

#include "sana/io/config.h"
#include "sana/nn/layers.h"

namespace sana {

// AutoencoderTinyBlock with equal input and output channels (the only kind the decoder uses): three 3x3 convolutions
// registered as conv.0, conv.2, conv.4.
class TinyBlock : public nn::Module {
 public:
  TinyBlock(int64_t channels, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const;
  std::shared_ptr<nn::Conv2d> conv0, conv2, conv4;
};

class DecoderTiny : public nn::Module {
 public:
  DecoderTiny(const AutoencoderTinyConfig& cfg, const at::TensorOptions& options);
  // latent [B, latent_channels, h, w] -> image [B, out_channels, h * f, w * f] in about [-1, 1].
  at::Tensor forward(const at::Tensor& z) const;

 private:
  // One entry of diffusers' Sequential: a convolution, a block, or (both null) a ReLU / an upsampling.
  struct Layer {
    std::shared_ptr<nn::Conv2d> conv;
    std::shared_ptr<TinyBlock> block;
    bool upsample = false;
  };
  std::vector<Layer> layers_;
  int64_t scale_;
};

class AutoencoderTiny : public nn::Module {
 public:
  AutoencoderTiny(const AutoencoderTinyConfig& cfg, const at::TensorOptions& options);
  // A diffusers AutoencoderTiny folder (config.json + diffusion_pytorch_model.safetensors); encoder tensors, which
  // diffusers' folders also hold, are skipped. Errors name the folder.
  static std::shared_ptr<AutoencoderTiny> from_pretrained(const std::string& dir, const at::TensorOptions& options);

  // latent (already divided by scaling_factor) -> image in about [-1, 1].
  at::Tensor decode(const at::Tensor& latent) const;

  const AutoencoderTinyConfig& config() const { return cfg_; }
  at::ScalarType dtype() const;

  std::shared_ptr<DecoderTiny> decoder;

 private:
  AutoencoderTinyConfig cfg_;
};

// Multiply-adds x2 of one decoder forward for a [1, latent, h, w] latent (the convolutions), for GFLOP/s figures.
double autoencoder_tiny_flops(const AutoencoderTinyConfig& cfg, int64_t h, int64_t w);

}  // namespace sana
