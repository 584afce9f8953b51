#pragma once
// transformers Gemma2Model (decoder stack, no LM head), the SANA text encoder, with the "eager" attention semantics
// the SANA pipelines get: logit soft-capping, sliding window on the even layers, GQA, RoPE, (1 + w) RMSNorms.
// See docs/ARCHITECTURE.md, "Text encoder". Parameter names are the transformers names (embed_tokens, layers.N.self_attn.q_proj...).
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

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

// One layer's keys and values [B, kv_heads, L, head_dim], after RoPE (before the GQA repeat).
struct Gemma2KV {
  at::Tensor keys, values;
};

class Gemma2Attention : public nn::Module {
 public:
  Gemma2Attention(const Gemma2Config& cfg, const at::TensorOptions& options);
  // x [B, L, H] at L positions whose RoPE tables are cos/sin [L, head_dim]; bias [B, 1, L, P + L] additive mask over
  // the P positions of `past` (undefined tensors: none) followed by x's own. `kv_out`, when given, receives x's keys
  // and values.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& bias,
                     const Gemma2KV& past = {}, Gemma2KV* kv_out = nullptr) const;
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
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& bias,
                     const Gemma2KV& past = {}, Gemma2KV* kv_out = nullptr) const;
  std::shared_ptr<Gemma2Attention> self_attn;
  std::shared_ptr<Gemma2MLP> mlp;
  std::shared_ptr<Gemma2RMSNorm> input_layernorm, post_attention_layernorm, pre_feedforward_layernorm,
      post_feedforward_layernorm;
};

// A token prefix run through the model once: its ids, every layer's keys and values, and its final hidden states
// [1, P, hidden]. Gemma-2 is causal, so what a prefix produces does not depend on what follows it
// (docs/ARCHITECTURE.md, "Text encoder": the prefix cache).
struct Gemma2PrefixState {
  std::vector<int64_t> ids;
  std::vector<Gemma2KV> layers;
  at::Tensor hidden;
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

  // Runs `ids` (a single sequence) and keeps what later calls need to continue it.
  Gemma2PrefixState encode_prefix(const std::vector<int64_t>& ids) const;
  // Hidden states [B, n, hidden] of input_ids [B, n] placed at positions start..start+n-1 after the first `start`
  // tokens of `prefix` (every row shares them); attention_mask [B, n] marks padding among the new tokens. Equal to
  // the matching rows of forward() on the whole sequence, at the unpadded positions.
  at::Tensor forward_after(const Gemma2PrefixState& prefix, int64_t start, const at::Tensor& input_ids,
                           const at::Tensor& attention_mask) const;

  // Next-token logits [B, L, vocab] from last_hidden_state: the causal-LM head of Gemma2ForCausalLM, tied to the
  // token embedding, soft-capped by final_logit_softcapping. Only the pretraining of the shapes world's encoder
  // uses it (docs/ARCHITECTURE.md, "Training"); SANA reads the hidden states.
  at::Tensor lm_logits(const at::Tensor& last_hidden_state) const;

  const Gemma2Config& config() const { return cfg_; }
  at::ScalarType dtype() const { return embed_tokens.scalar_type(); }

  std::shared_ptr<nn::ModuleList<Gemma2DecoderLayer>> layers;
  std::shared_ptr<Gemma2RMSNorm> norm;

 private:
  // The decoder stack on input_ids [B, n] at positions start.. with the first `start` positions of `past` before
  // them; `record` (when given) receives every layer's keys and values.
  at::Tensor run(const at::Tensor& input_ids, const at::Tensor& attention_mask, int64_t start,
                 const Gemma2PrefixState* past, std::vector<Gemma2KV>* record) const;

  Gemma2Config cfg_;
  at::Tensor embed_tokens;  // registered as "embed_tokens.weight" through a holder module
};

// Multiply-adds x2 of one forward over B x L tokens (projections, attention products, MLP).
double gemma2_flops(const Gemma2Config& cfg, int64_t batch, int64_t length);

}  // namespace sana
