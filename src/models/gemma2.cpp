#include "sana/models/gemma2.h"

#include <cmath>
#include <filesystem>
#include <limits>

#include "sana/error.h"
#include "sana/nn/module_io.h"

namespace sana {
namespace {

// "embed_tokens.weight" lives in a module of its own (torch.nn.Embedding).
class Embedding : public nn::Module {
 public:
  Embedding(int64_t num, int64_t dim, const at::TensorOptions& options) {
    weight = register_parameter("weight", at::empty({num, dim}, options));
  }
  at::Tensor weight;
};

// rotate_half([x1, x2]) = [-x2, x1] on the last dim.
at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

}  // namespace

Gemma2RMSNorm::Gemma2RMSNorm(int64_t dim, double eps_, const at::TensorOptions& options) : eps(eps_) {
  weight = register_parameter("weight", at::empty({dim}, options));
}

at::Tensor Gemma2RMSNorm::forward(const at::Tensor& x) const {
  const auto acc = nn::accumulation_dtype(x.scalar_type());
  const at::Tensor xf = x.to(acc);
  const at::Tensor y = xf * at::rsqrt(xf.pow(2).mean(-1, true) + eps) * (1.0 + weight.to(acc));
  return y.to(x.scalar_type());
}

Gemma2Attention::Gemma2Attention(const Gemma2Config& c, const at::TensorOptions& options)
    : heads(c.num_attention_heads),
      kv_heads(c.num_key_value_heads),
      head_dim(c.head_dim),
      scaling(1.0 / std::sqrt(c.query_pre_attn_scalar)),
      softcap(c.attn_logit_softcapping) {
  q_proj = register_module("q_proj", std::make_shared<nn::Linear>(c.hidden_size, heads * head_dim, c.attention_bias, options));
  k_proj = register_module("k_proj", std::make_shared<nn::Linear>(c.hidden_size, kv_heads * head_dim, c.attention_bias, options));
  v_proj = register_module("v_proj", std::make_shared<nn::Linear>(c.hidden_size, kv_heads * head_dim, c.attention_bias, options));
  o_proj = register_module("o_proj", std::make_shared<nn::Linear>(heads * head_dim, c.hidden_size, c.attention_bias, options));
}

at::Tensor Gemma2Attention::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                    const at::Tensor& bias, const Gemma2KV& past, Gemma2KV* kv_out) const {
  const int64_t B = x.size(0), L = x.size(1), rep = heads / kv_heads;
  at::Tensor q = q_proj->forward(x).view({B, L, heads, head_dim}).transpose(1, 2);     // [B, h, L, d]
  at::Tensor k = k_proj->forward(x).view({B, L, kv_heads, head_dim}).transpose(1, 2);  // [B, kv, L, d]
  at::Tensor v = v_proj->forward(x).view({B, L, kv_heads, head_dim}).transpose(1, 2);
  q = q * cos + rotate_half(q) * sin;
  k = k * cos + rotate_half(k) * sin;
  if (kv_out) *kv_out = {k, v};
  if (past.keys.defined()) {  // a cached prefix: its keys and values come first
    k = at::cat({past.keys.expand({B, -1, -1, -1}), k}, 2);
    v = at::cat({past.values.expand({B, -1, -1, -1}), v}, 2);
  }
  const int64_t S = k.size(2);
  // GQA: query head j reads kv head j / rep.
  auto repeat_kv = [&](const at::Tensor& t) {
    return t.unsqueeze(2).expand({B, kv_heads, rep, S, head_dim}).reshape({B, heads, S, head_dim});
  };
  k = repeat_kv(k);
  v = repeat_kv(v);
  at::Tensor logits = at::matmul(q, k.transpose(2, 3)) * scaling;
  if (softcap) logits = at::tanh(logits / *softcap) * *softcap;  // soft-capping before the mask
  logits = logits + bias;
  const at::Tensor probs = at::softmax(logits, -1, at::kFloat).to(q.scalar_type());
  const at::Tensor out = at::matmul(probs, v).transpose(1, 2).reshape({B, L, heads * head_dim});
  return o_proj->forward(out);
}

Gemma2MLP::Gemma2MLP(const Gemma2Config& c, const at::TensorOptions& options)
    : tanh_gelu(c.hidden_activation == "gelu_pytorch_tanh") {
  gate_proj = register_module("gate_proj", std::make_shared<nn::Linear>(c.hidden_size, c.intermediate_size, false, options));
  up_proj = register_module("up_proj", std::make_shared<nn::Linear>(c.hidden_size, c.intermediate_size, false, options));
  down_proj = register_module("down_proj", std::make_shared<nn::Linear>(c.intermediate_size, c.hidden_size, false, options));
}

at::Tensor Gemma2MLP::forward(const at::Tensor& x) const {
  return down_proj->forward(at::gelu(gate_proj->forward(x), tanh_gelu ? "tanh" : "none") * up_proj->forward(x));
}

Gemma2DecoderLayer::Gemma2DecoderLayer(const Gemma2Config& c, const at::TensorOptions& options) {
  self_attn = register_module("self_attn", std::make_shared<Gemma2Attention>(c, options));
  mlp = register_module("mlp", std::make_shared<Gemma2MLP>(c, options));
  auto norm = [&](const char* name) {
    return register_module(name, std::make_shared<Gemma2RMSNorm>(c.hidden_size, c.rms_norm_eps, options));
  };
  input_layernorm = norm("input_layernorm");
  post_attention_layernorm = norm("post_attention_layernorm");
  pre_feedforward_layernorm = norm("pre_feedforward_layernorm");
  post_feedforward_layernorm = norm("post_feedforward_layernorm");
}

at::Tensor Gemma2DecoderLayer::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                       const at::Tensor& bias, const Gemma2KV& past, Gemma2KV* kv_out) const {
  const at::Tensor attn = self_attn->forward(input_layernorm->forward(x), cos, sin, bias, past, kv_out);
  at::Tensor h = x + post_attention_layernorm->forward(attn);
  return h + post_feedforward_layernorm->forward(mlp->forward(pre_feedforward_layernorm->forward(h)));
}

Gemma2Model::Gemma2Model(const Gemma2Config& c, const at::TensorOptions& options) : cfg_(c) {
  embed_tokens = register_module("embed_tokens", std::make_shared<Embedding>(c.vocab_size, c.hidden_size, options))->weight;
  layers = register_module("layers", std::make_shared<nn::ModuleList<Gemma2DecoderLayer>>());
  for (int i = 0; i < c.num_hidden_layers; ++i) layers->append(std::make_shared<Gemma2DecoderLayer>(c, options));
  norm = register_module("norm", std::make_shared<Gemma2RMSNorm>(c.hidden_size, c.rms_norm_eps, options));
}

std::shared_ptr<Gemma2Model> Gemma2Model::from_pretrained(const std::string& dir, const at::TensorOptions& options) {
  const auto cfg = load_gemma2_config((std::filesystem::path(dir) / "config.json").string());
  auto model = std::make_shared<Gemma2Model>(cfg, options);
  const Checkpoint ckpt = Checkpoint::open_in_directory(dir, "model");
  nn::LoadOptions load;
  if (!ckpt.contains("embed_tokens.weight") && ckpt.contains("model.embed_tokens.weight")) load.prefix = "model.";
  load.ignore = {"lm_head."};
  nn::load_state_dict(*model, ckpt, "Gemma2Model", load);
  return model;
}

at::Tensor Gemma2Model::forward(const at::Tensor& input_ids, const at::Tensor& attention_mask) const {
  if (!input_ids.defined() || input_ids.dim() != 2)
    throw Error("text encoder: input_ids must be [B, L]");
  return run(input_ids, attention_mask, 0, nullptr, nullptr);
}

at::Tensor Gemma2Model::lm_logits(const at::Tensor& last_hidden_state) const {
  at::Tensor logits = at::matmul(last_hidden_state, embed_tokens.t());
  if (cfg_.final_logit_softcapping)
    logits = at::tanh(logits / *cfg_.final_logit_softcapping) * *cfg_.final_logit_softcapping;
  return logits;
}

Gemma2PrefixState Gemma2Model::encode_prefix(const std::vector<int64_t>& ids) const {
  if (ids.empty()) throw Error("text encoder: the prefix has no tokens");
  Gemma2PrefixState state;
  state.ids = ids;
  state.layers.resize(layers->size());
  const at::Tensor input = at::tensor(ids, at::kLong).view({1, -1});
  state.hidden = run(input, at::Tensor(), 0, nullptr, &state.layers);
  return state;
}

at::Tensor Gemma2Model::forward_after(const Gemma2PrefixState& prefix, int64_t start, const at::Tensor& input_ids,
                                      const at::Tensor& attention_mask) const {
  if (!input_ids.defined() || input_ids.dim() != 2) throw Error("text encoder: input_ids must be [B, n]");
  if (start < 0 || start > static_cast<int64_t>(prefix.ids.size()) || prefix.layers.size() != layers->size())
    throw Error("text encoder: the prefix state does not cover " + std::to_string(start) + " positions");
  return run(input_ids, attention_mask, start, &prefix, nullptr);
}

at::Tensor Gemma2Model::run(const at::Tensor& input_ids, const at::Tensor& attention_mask, int64_t start,
                            const Gemma2PrefixState* past, std::vector<Gemma2KV>* record) const {
  const int64_t B = input_ids.size(0), L = input_ids.size(1), S = start + L;  // S: keys seen by each query
  const auto dt = dtype();
  const auto dev = embed_tokens.device();
  if (input_ids.numel() > 0 && (input_ids.min().item<int64_t>() < 0 || input_ids.max().item<int64_t>() >= cfg_.vocab_size))
    throw Error("text encoder: token id outside the vocabulary of " + std::to_string(cfg_.vocab_size));

  // Embedding scaled by sqrt(hidden), the scale rounded to the hidden dtype first (as the reference does).
  const at::Tensor normalizer = at::scalar_tensor(std::sqrt(static_cast<double>(cfg_.hidden_size)), at::TensorOptions().dtype(dt));
  at::Tensor h = at::embedding(embed_tokens, input_ids.to(dev)) * normalizer.to(dev);

  // RoPE tables for positions start..S-1, in fp32, then the activation dtype.
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(dev);
  const int64_t d = cfg_.head_dim;
  const at::Tensor inv_freq = 1.0 / at::pow(cfg_.rope_theta, at::arange(0, d, 2, f32) / static_cast<double>(d));
  const at::Tensor angles = at::outer(at::arange(start, S, f32), inv_freq);
  const at::Tensor emb = at::cat({angles, angles}, -1);
  const at::Tensor cos = emb.cos().to(dt), sin = emb.sin().to(dt);

  // Additive masks for queries at start..S-1 over keys 0..S-1: causal + key padding (global layers); + sliding
  // window (even layers). Masked logits get the dtype's lowest value, as in the reference.
  const auto i64 = f32.dtype(at::kLong);
  const at::Tensor i = at::arange(start, S, i64).view({L, 1}), j = at::arange(S, i64).view({1, S});
  at::Tensor blocked = (j > i).view({1, 1, L, S}).expand({B, 1, L, S});
  if (attention_mask.defined()) {
    if (attention_mask.sizes() != input_ids.sizes()) throw Error("text encoder: attention_mask must match input_ids");
    const at::Tensor padded = at::cat({at::zeros({B, start}, i64.dtype(at::kBool)), attention_mask.to(dev) == 0}, 1);
    blocked = blocked.logical_or(padded.view({B, 1, 1, S}));
  }
  const double lowest = dt == at::kBFloat16 ? -3.3895313892515355e38
                        : dt == at::kHalf   ? -65504.0
                        : dt == at::kDouble ? std::numeric_limits<double>::lowest()
                                            : static_cast<double>(std::numeric_limits<float>::lowest());
  auto to_bias = [&](const at::Tensor& mask) {
    return at::zeros({B, 1, L, S}, at::TensorOptions().dtype(dt).device(dev)).masked_fill(mask, lowest);
  };
  const at::Tensor global_bias = to_bias(blocked);
  at::Tensor sliding_bias = global_bias;
  if (cfg_.sliding_window && *cfg_.sliding_window < S)
    sliding_bias = to_bias(blocked.logical_or(((i - j) >= *cfg_.sliding_window).view({1, 1, L, S})));

  for (size_t k = 0; k < layers->size(); ++k) {
    Gemma2KV cached;
    if (past && start > 0) cached = {past->layers[k].keys.narrow(2, 0, start), past->layers[k].values.narrow(2, 0, start)};
    h = (*layers)[k].forward(h, cos, sin, k % 2 == 0 ? sliding_bias : global_bias, cached,
                             record ? &(*record)[k] : nullptr);
  }
  return norm->forward(h);
}

double gemma2_flops(const Gemma2Config& c, int64_t batch, int64_t length) {
  const double L = length, H = c.hidden_size, q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  const double per_layer = 2 * L * H * (2 * q + 2 * kv) + 2 * 2 * L * L * q + 2 * L * H * 3.0 * c.intermediate_size;
  return batch * c.num_hidden_layers * per_layer;
}

}  // namespace sana
