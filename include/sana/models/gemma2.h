#pragma once
// transformers Gemma2Model (decoder stack, no LM head), the SANA text encoder, with the "eager" attention semantics
// the SANA pipelines get: logit soft-capping, sliding window on the even layers, GQA, RoPE, (1 + w) RMSNorms.
// See docs/ARCHITECTURE.md, "Text encoder". Parameter names are the transformers names (embed_tokens, layers.N.self_attn.q_proj...).
#include <ATen/ATen.h>

#include <memory>
#include <string>

#include "sana/io/config.h"
#include "sana/nn/layers.h"

namespace sana {

// Gemma2RMSNorm: y = x * rsqrt(mean(x^2) + eps) * (1 + w), computed in fp32, cast back to the input dtype.
class Gemma2RMSNorm : public nn::Module {
 public:
  Gemma2RMSNorm(int64_t dim, double eps, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const;
  at::Tensor weight;
  double eps;
};

class Gemma2Attention : public nn::Module {
 public:
  Gemma2Attention(const Gemma2Config& cfg, const at::TensorOptions& options);
  // x [B, L, H]; cos/sin [L, head_dim]; bias [B, 1, L, L] additive mask.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& bias) const;
  std::shared_ptr<nn::Linear> q_proj, k_proj, v_proj, o_proj;
  int64_t heads, kv_heads, head_dim;
  double scaling;
  std::optional<double> softcap;
};

class Gemma2MLP : public nn::Module {
 public:
  Gemma2MLP(const Gemma2Config& cfg, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const;
  std::shared_ptr<nn::Linear> gate_proj, up_proj, down_proj;
  bool tanh_gelu;
};

class Gemma2DecoderLayer : public nn::Module {
 public:
  Gemma2DecoderLayer(const Gemma2Config& cfg, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& bias) const;
  std::shared_ptr<Gemma2Attention> self_attn;
  std::shared_ptr<Gemma2MLP> mlp;
  std::shared_ptr<Gemma2RMSNorm> input_layernorm, post_attention_layernorm, pre_feedforward_layernorm,
      post_feedforward_layernorm;
};

class Gemma2Model : public nn::Module {
 public:
  Gemma2Model(const Gemma2Config& cfg, const at::TensorOptions& options);
  // Config from `<dir>/config.json`, weights from `<dir>/model.safetensors` or its sharded index; a leading
  // "model." on the stored names and an "lm_head" are accepted.
  static std::shared_ptr<Gemma2Model> from_pretrained(const std::string& dir, const at::TensorOptions& options);

  // last_hidden_state [B, L, hidden] (after the final norm) for input_ids [B, L] and attention_mask [B, L]
  // (1 = token, 0 = padding; optional). Positions are 0..L-1 whatever the padding, as in the reference.
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& attention_mask) const;

  const Gemma2Config& config() const { return cfg_; }
  at::ScalarType dtype() const { return embed_tokens.scalar_type(); }

  std::shared_ptr<nn::ModuleList<Gemma2DecoderLayer>> layers;
  std::shared_ptr<Gemma2RMSNorm> norm;

 private:
  Gemma2Config cfg_;
  at::Tensor embed_tokens;  // registered as "embed_tokens.weight" through a holder module
};

// Multiply-adds x2 of one forward over B x L tokens (projections, attention products, MLP).
double gemma2_flops(const Gemma2Config& cfg, int64_t batch, int64_t length);

}  // namespace sana
