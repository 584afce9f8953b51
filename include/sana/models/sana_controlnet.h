#pragma once
// diffusers SanaControlNetModel (docs/ARCHITECTURE.md, "ControlNet"): a trainable copy of the transformer's first N
// blocks that reads the control image's latent and returns one residual per block, which the transformer adds after
// its blocks 1..N. Module and parameter names are diffusers': its own patch_embed, time_embed, caption_projection and
// caption_norm; transformer_blocks.{i}; input_block (zero-initialised Linear(D, D) on the embedded control latent,
// added to the embedded latent); controlnet_blocks.{i} (zero-initialised Linear(D, D) on each block's output).
//
// diffusers' class has no qk_norm or guidance_embeds; this one reads both from its config, so that a ControlNet for a
// SANA-Sprint student has the student's blocks and timestep + guidance embedding (our Sprint ControlNet).
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "sana/models/sana_transformer.h"

namespace sana {

class SanaControlNetModel : public SanaBlockStack {
 public:
  SanaControlNetModel(const SanaTransformerConfig& cfg, const at::TensorOptions& options);
  // Config from `<dir>/config.json` (SanaControlNetModel), weights from `<dir>/diffusion_pytorch_model.safetensors`.
  static std::shared_ptr<SanaControlNetModel> from_pretrained(const std::string& dir, const at::TensorOptions& options);

  // The residuals [B, N, D], one per block, already times `conditioning_scale`. `in` carries what the transformer
  // gets (latent, timestep, guidance, text, mask); `controlnet_cond` is the control image's latent
  // (vae.encode(image) * scaling_factor) of the latent's shape.
  std::vector<at::Tensor> forward(const SanaTransformerInputs& in, const at::Tensor& controlnet_cond,
                                  double conditioning_scale = 1.0) const;

  at::ScalarType dtype() const { return input_block->bias.scalar_type(); }  // the weight may be int8

  std::shared_ptr<nn::Linear> input_block;
  std::shared_ptr<nn::ModuleList<nn::Linear>> controlnet_blocks;
};

// Error unless `controlnet` fits `transformer`: the same widths, text and latent channels, patch size, time embedding
// (guidance or not) and no more blocks than the transformer has. `what` names the ControlNet in the message.
void check_controlnet_fits(const SanaTransformerConfig& controlnet, const SanaTransformerConfig& transformer,
                           const std::string& what);

// A ControlNet that starts as `transformer`'s copy: its embeddings and first `num_layers` blocks copied, input_block
// and controlnet_blocks zero, so that adding its residuals leaves the transformer's output unchanged. Parameters
// require grad (it is what a ControlNet trainer trains).
std::shared_ptr<SanaControlNetModel> controlnet_from_transformer(const SanaTransformer2DModel& transformer,
                                                                 int num_layers);

// The config.json text of a ControlNet for `transformer` with `num_layers` blocks (diffusers' keys, plus qk_norm and
// guidance_embeds when the transformer has them).
std::string controlnet_config_for(const SanaTransformerConfig& transformer, int num_layers);

}  // namespace sana
