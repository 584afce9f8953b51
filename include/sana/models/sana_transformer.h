#pragma once
// diffusers SanaTransformer2DModel: SANA (AdaLayerNormSingle time embedding) and SANA-Sprint (QK-norm across heads,
// timestep + guidance embedding). Module and parameter names are the diffusers names, so a diffusers
// `transformer/` folder loads with no mapping. See docs/ARCHITECTURE.md, "Transformer".
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "sana/io/config.h"
#include "sana/nn/layers.h"

namespace sana {

// attn1 (linear self-attention) and attn2 (softmax cross-attention) share the diffusers `Attention` layout.
class SanaAttention : public nn::Module {
 public:
  SanaAttention(int64_t query_dim, int64_t kv_input_dim, int64_t heads, int64_t head_dim, bool bias, bool qk_norm,
                const at::TensorOptions& options);
  // SANA's ReLU linear attention over the tokens of x [B, N, D] (SanaLinearAttnProcessor2_0).
  at::Tensor forward_linear(const at::Tensor& x) const;
  // Softmax attention of x [B, N, D] over context [B, L, C] with an additive key bias [B, 1, 1, L] (or undefined).
  at::Tensor forward_cross(const at::Tensor& x, const at::Tensor& context, const at::Tensor& key_bias) const;

  std::shared_ptr<nn::Linear> to_q, to_k, to_v;
  std::shared_ptr<nn::RMSNorm> norm_q, norm_k;  // null without qk_norm
  std::shared_ptr<nn::ModuleList<nn::Linear>> to_out;
  int64_t heads, head_dim;

 private:
  at::Tensor project_out(const at::Tensor& x) const;
};

class SanaTransformerBlock : public nn::Module {
 public:
  SanaTransformerBlock(const SanaTransformerConfig& cfg, const at::TensorOptions& options);
  // x [B, N, D]; mod [B, 6D] (shared adaLN-single modulation); context [B, L, D]; key_bias [B, 1, 1, L].
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mod, const at::Tensor& context,
                     const at::Tensor& key_bias, int64_t h, int64_t w) const;

  at::Tensor scale_shift_table;  // [6, D]: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp
  std::shared_ptr<SanaAttention> attn1, attn2;
  std::shared_ptr<nn::GLUMBConv> ff;
  double norm_eps;
};

// Timestep (and, for SANA-Sprint, guidance) embedding. Returns {mod [B, 6D], cond [B, D]}.
// guidance_embeds: SanaCombinedTimestepGuidanceEmbeddings (timestep_embedder + guidance_embedder, linear);
// otherwise AdaLayerNormSingle (emb.timestep_embedder, linear).
class SanaTimeEmbedding : public nn::Module {
 public:
  SanaTimeEmbedding(int64_t dim, bool guidance_embeds, const at::TensorOptions& options);
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& timestep, const at::Tensor& guidance,
                                            at::ScalarType dtype) const;
  std::shared_ptr<nn::TimestepEmbedding> timestep_embedder, guidance_embedder;  // guidance_embedder may be null
  std::shared_ptr<nn::Linear> linear;
};

// diffusers PatchEmbed without positional embedding (interpolation_scale null): conv p x p, stride p, to tokens.
class PatchEmbed : public nn::Module {
 public:
  PatchEmbed(int64_t in_channels, int64_t dim, int64_t patch_size, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const;  // [B, C, H, W] -> [B, (H/p)(W/p), D], row-major tokens
  std::shared_ptr<nn::Conv2d> proj;
};

// PixArtAlphaTextProjection: linear_2(GELU_tanh(linear_1(x))).
class CaptionProjection : public nn::Module {
 public:
  CaptionProjection(int64_t in_features, int64_t dim, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const;
  std::shared_ptr<nn::Linear> linear_1, linear_2;
};

struct SanaTransformerInputs {
  at::Tensor hidden_states;           // [B, in_channels, H, W]
  at::Tensor encoder_hidden_states;   // [B, L, caption_channels]
  at::Tensor timestep;                // [B] or scalar; SANA-Sprint: flow time in [0, 1]
  at::Tensor guidance;                // [B] (already * guidance_embeds_scale); required iff guidance_embeds
  at::Tensor encoder_attention_mask;  // [B, L], 1 = keep, 0 = padding; optional
  // ControlNet residuals [B, N, D]: residual k-1 is added after block k, for 1 <= k <= size (diffusers order).
  std::vector<at::Tensor> controlnet_block_samples;
};

// Optional extra outputs of a forward, for training: the embedded timestep (the adaptive-logvar head's input) and the
// outputs of chosen blocks (the LADD discriminator's features).
struct SanaTransformerAux {
  std::vector<int> block_ids;              // in: 0-based blocks whose outputs to keep
  std::vector<at::Tensor> block_features;  // out: [B, N, D] per id, in block_ids order
  at::Tensor embedded_timestep;            // out: [B, D]
};

// What a SANA network works on after its input embeddings (the transformer and the ControlNet share this step).
struct SanaEmbeddedInputs {
  at::Tensor x;         // [B, N, D] patch tokens
  at::Tensor mod;       // [B, 6D] adaLN-single modulation of every block
  at::Tensor cond;      // [B, D] embedded timestep (and guidance)
  at::Tensor context;   // [B, L, D] projected, normalised text
  at::Tensor key_bias;  // [B, 1, 1, L] padding bias, or undefined
  int64_t h = 0, w = 0; // token grid
};

// What the transformer and the ControlNet share, registered under diffusers' names on the derived module: the patch,
// time and caption embeddings and a stack of blocks.
class SanaBlockStack : public nn::Module {
 public:
  SanaBlockStack(const SanaTransformerConfig& cfg, const at::TensorOptions& options);

  // Checks `in` against the config (errors start with `what`) and runs the patch, time and caption embeddings.
  SanaEmbeddedInputs embed(const SanaTransformerInputs& in, at::ScalarType dtype, const std::string& what) const;

  const SanaTransformerConfig& config() const { return cfg_; }

  std::shared_ptr<PatchEmbed> patch_embed;
  std::shared_ptr<SanaTimeEmbedding> time_embed;
  std::shared_ptr<CaptionProjection> caption_projection;
  std::shared_ptr<nn::RMSNorm> caption_norm;
  std::shared_ptr<nn::ModuleList<SanaTransformerBlock>> transformer_blocks;

 protected:
  SanaTransformerConfig cfg_;
};

class SanaTransformer2DModel : public SanaBlockStack {
 public:
  SanaTransformer2DModel(const SanaTransformerConfig& cfg, const at::TensorOptions& options);
  // Config from `<dir>/config.json`, weights from `<dir>/diffusion_pytorch_model.safetensors` (or its sharded
  // index), cast to `options` (dtype and device).
  static std::shared_ptr<SanaTransformer2DModel> from_pretrained(const std::string& dir,
                                                                 const at::TensorOptions& options);

  // Returns the prediction [B, out_channels, H, W] in the model dtype.
  at::Tensor forward(const SanaTransformerInputs& in, SanaTransformerAux* aux = nullptr) const;

  at::ScalarType dtype() const { return scale_shift_table.scalar_type(); }
  at::Device device() const { return scale_shift_table.device(); }

  at::Tensor scale_shift_table;  // [2, D]: shift, scale of the final norm
  std::shared_ptr<nn::Linear> proj_out;
};

// Multiply-adds x2 of one forward (matrix products and convolutions; elementwise work is not counted), for
// GFLOP/s figures. `tokens` = text length L.
double sana_transformer_flops(const SanaTransformerConfig& cfg, int64_t batch, int64_t height, int64_t width,
                              int64_t tokens);

}  // namespace sana
