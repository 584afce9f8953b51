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
                                    const at::Tensor& bias) const {
  const int64_t B = x.size(0), L = x.size(1), rep = heads / kv_heads;
  at::Tensor q = q_proj->forward(x).view({B, L, heads, head_dim}).transpose(1, 2);     // [B, h, L, d]
  at::Tensor k = k_proj->forward(x).view({B, L, kv_heads, head_dim}).transpose(1, 2);  // [B, kv, L, d]
  at::Tensor v = v_proj->forward(x).view({B, L, kv_heads, head_dim}).transpose(1, 2);
  q = q * cos + rotate_half(q) * sin;
  k = k * cos + rotate_half(k) * sin;
  // GQA: query head j reads kv head j / rep.
  auto repeat_kv = [&](const at::Tensor& t) {
    return t.unsqueeze(2).expand({B, kv_heads, rep, L, head_dim}).reshape({B, heads, L, head_dim});
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
                                       const at::Tensor& bias) const {
  at::Tensor h = x + post_attention_layernorm->forward(self_attn->forward(input_layernorm->forward(x), cos, sin, bias));
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
  const int64_t B = input_ids.size(0), L = input_ids.size(1);
  const auto dt = dtype();
  const auto dev = embed_tokens.device();
  if (input_ids.numel() > 0 && (input_ids.min().item<int64_t>() < 0 || input_ids.max().item<int64_t>() >= cfg_.vocab_size))
    throw Error("text encoder: token id outside the vocabulary of " + std::to_string(cfg_.vocab_size));

  // Embedding scaled by sqrt(hidden), the scale rounded to the hidden dtype first (as the reference does).
  const at::Tensor normalizer = at::scalar_tensor(std::sqrt(static_cast<double>(cfg_.hidden_size)), at::TensorOptions().dtype(dt));
  at::Tensor h = at::embedding(embed_tokens, input_ids.to(dev)) * normalizer.to(dev);

  // RoPE tables for positions 0..L-1, in fp32, then the activation dtype.
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(dev);
  const int64_t d = cfg_.head_dim;
  const at::Tensor inv_freq = 1.0 / at::pow(cfg_.rope_theta, at::arange(0, d, 2, f32) / static_cast<double>(d));
  const at::Tensor angles = at::outer(at::arange(L, f32), inv_freq);
  const at::Tensor emb = at::cat({angles, angles}, -1);
  const at::Tensor cos = emb.cos().to(dt), sin = emb.sin().to(dt);

  // Additive masks: causal + key padding (global layers); + sliding window (even layers). Masked logits get the
  // dtype's lowest value, as in the reference.
  const at::Tensor i = at::arange(L, f32.dtype(at::kLong)).view({L, 1}), j = at::arange(L, f32.dtype(at::kLong)).view({1, L});
  at::Tensor blocked = (j > i).view({1, 1, L, L}).expand({B, 1, L, L});
  if (attention_mask.defined()) {
    if (attention_mask.sizes() != input_ids.sizes()) throw Error("text encoder: attention_mask must match input_ids");
    blocked = blocked.logical_or((attention_mask.to(dev) == 0).view({B, 1, 1, L}));
  }
  const double lowest = dt == at::kBFloat16 ? -3.3895313892515355e38
                        : dt == at::kHalf   ? -65504.0
                        : dt == at::kDouble ? std::numeric_limits<double>::lowest()
                                            : static_cast<double>(std::numeric_limits<float>::lowest());
  auto to_bias = [&](const at::Tensor& mask) {
    return at::zeros({B, 1, L, L}, at::TensorOptions().dtype(dt).device(dev)).masked_fill(mask, lowest);
  };
  const at::Tensor global_bias = to_bias(blocked);
  at::Tensor sliding_bias = global_bias;
  if (cfg_.sliding_window && *cfg_.sliding_window < L)
    sliding_bias = to_bias(blocked.logical_or(((i - j) >= *cfg_.sliding_window).view({1, 1, L, L})));

  for (size_t k = 0; k < layers->size(); ++k)
    h = (*layers)[k].forward(h, cos, sin, k % 2 == 0 ? sliding_bias : global_bias);
  return norm->forward(h);
}

double gemma2_flops(const Gemma2Config& c, int64_t batch, int64_t length) {
  const double L = length, H = c.hidden_size, q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  const double per_layer = 2 * L * H * (2 * q + 2 * kv) + 2 * 2 * L * L * q + 2 * L * H * 3.0 * c.intermediate_size;
  return batch * c.num_hidden_layers * per_layer;
}

}  // namespace sana
