// diffusers AutoencoderTiny's decoder (autoencoder_tiny.h).
#include "sana/models/autoencoder_tiny.h"

#include <filesystem>

#include "sana/error.h"
#include "sana/io/safetensors.h"
#include "sana/nn/module_io.h"

namespace sana {
namespace {

std::shared_ptr<nn::Conv2d> conv3x3(int64_t in, int64_t out, bool bias, const at::TensorOptions& options) {
  return std::make_shared<nn::Conv2d>(in, out, 3, 1, 1, 1, bias, options);
}

}  // namespace

TinyBlock::TinyBlock(int64_t channels, const at::TensorOptions& options) {
  // diffusers' nn.Sequential(conv, ReLU, conv, ReLU, conv): the convolutions are its entries 0, 2 and 4.
  auto conv = register_module("conv", std::make_shared<nn::Module>());
  conv0 = conv->register_module("0", conv3x3(channels, channels, true, options));
  conv2 = conv->register_module("2", conv3x3(channels, channels, true, options));
  conv4 = conv->register_module("4", conv3x3(channels, channels, true, options));
}

at::Tensor TinyBlock::forward(const at::Tensor& x) const {
  const at::Tensor y = conv4->forward(at::relu(conv2->forward(at::relu(conv0->forward(x)))));
  return at::relu(y + x);  // equal channels: the skip is the identity
}

DecoderTiny::DecoderTiny(const AutoencoderTinyConfig& cfg, const at::TensorOptions& options)
    : scale_(cfg.upsampling_scaling_factor) {
  auto seq = register_module("layers", std::make_shared<nn::Module>());
  const auto& ch = cfg.decoder_block_out_channels;
  const auto add_conv = [&](int64_t in, int64_t out, bool bias) {
    layers_.push_back({seq->register_module(std::to_string(layers_.size()), conv3x3(in, out, bias, options)), {}});
  };
  add_conv(cfg.latent_channels, ch[0], true);
  layers_.push_back({});  // ReLU
  for (size_t i = 0; i < ch.size(); ++i) {
    for (int b = 0; b < cfg.num_decoder_blocks[i]; ++b)
      layers_.push_back(
          {{}, seq->register_module(std::to_string(layers_.size()), std::make_shared<TinyBlock>(ch[i], options))});
    const bool last = i + 1 == ch.size();
    if (!last) layers_.push_back({{}, {}, true});
    add_conv(ch[i], last ? cfg.out_channels : ch[i + 1], /*bias=*/last);
  }
}

at::Tensor DecoderTiny::forward(const at::Tensor& z) const {
  at::Tensor x = at::tanh(z / 3) * 3;  // soft clamp: out-of-range latents cannot blow the image up
  for (const Layer& l : layers_) {
    if (l.conv) x = l.conv->forward(x);
    else if (l.block) x = l.block->forward(x);
    else if (l.upsample) x = at::upsample_nearest2d(x, {x.size(2) * scale_, x.size(3) * scale_});
    else x = at::relu(x);
  }
  return x * 2 - 1;  // TAESD's images are in [0, 1]
}

AutoencoderTiny::AutoencoderTiny(const AutoencoderTinyConfig& cfg, const at::TensorOptions& options) : cfg_(cfg) {
  decoder = register_module("decoder", std::make_shared<DecoderTiny>(cfg, options));
}

std::shared_ptr<AutoencoderTiny> AutoencoderTiny::from_pretrained(const std::string& dir,
                                                                 const at::TensorOptions& options) {
  const std::filesystem::path config = std::filesystem::path(dir) / "config.json";
  if (!std::filesystem::is_directory(dir)) throw Error("tiny decoder: " + dir + " is not a directory");
  if (!std::filesystem::exists(config))
    throw Error("tiny decoder: " + dir + " has no config.json (an AutoencoderTiny folder)");
  auto model = std::make_shared<AutoencoderTiny>(load_autoencoder_tiny_config(config.string()), options);
  nn::LoadOptions load;
  load.ignore = {"encoder."};
  nn::load_state_dict(*model, Checkpoint::open_in_directory(dir, "diffusion_pytorch_model"), "AutoencoderTiny", load);
  return model;
}

at::Tensor AutoencoderTiny::decode(const at::Tensor& latent) const {
  if (latent.dim() != 4 || latent.size(1) != cfg_.latent_channels)
    throw Error("tiny decoder: latent must be [B, " + std::to_string(cfg_.latent_channels) + ", h, w], got " +
                c10::str(latent.sizes()));
  return decoder->forward(latent.to(dtype()));
}

double autoencoder_tiny_flops(const AutoencoderTinyConfig& cfg, int64_t h, int64_t w) {
  const auto conv = [](double in, double out, double pixels) { return 2 * 9 * in * out * pixels; };
  const auto& ch = cfg.decoder_block_out_channels;
  double pixels = static_cast<double>(h) * w;
  double flops = conv(cfg.latent_channels, ch[0], pixels);
  for (size_t i = 0; i < ch.size(); ++i) {
    flops += cfg.num_decoder_blocks[i] * 3 * conv(ch[i], ch[i], pixels);
    const bool last = i + 1 == ch.size();
    if (!last) pixels *= cfg.upsampling_scaling_factor * cfg.upsampling_scaling_factor;
    flops += conv(ch[i], last ? cfg.out_channels : ch[i + 1], pixels);
  }
  return flops;
}

at::ScalarType AutoencoderTiny::dtype() const { return decoder->parameters().front().scalar_type(); }

}  // namespace sana
