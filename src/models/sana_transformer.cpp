#include "sana/models/sana_transformer.h"

#include <c10/core/InferenceMode.h>
#include <torch/version.h>

#include <cmath>
#include <filesystem>

#include "sana/error.h"
#include "sana/nn/module_io.h"

namespace sana {
namespace {

// diffusers' linear-attention epsilon (the NVlabs original uses 1e-8).
constexpr double kLinearAttentionEps = 1e-15;
// Attention's RMSNorm epsilon for qk_norm "rms_norm_across_heads".
constexpr double kQkNormEps = 1e-5;

std::string shape_str(at::IntArrayRef s) { return c10::str(s); }

// x * (1 + scale) + shift, the adaLN modulation.
at::Tensor modulate(const at::Tensor& x, const at::Tensor& shift, const at::Tensor& scale) {
  return at::addcmul(x + shift, x, scale);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
SanaAttention::SanaAttention(int64_t query_dim, int64_t kv_input_dim, int64_t heads_, int64_t head_dim_, bool bias,
                             bool qk_norm, const at::TensorOptions& options)
    : heads(heads_), head_dim(head_dim_) {
  const int64_t inner = heads * head_dim;
  to_q = register_module("to_q", std::make_shared<nn::Linear>(query_dim, inner, bias, options));
  to_k = register_module("to_k", std::make_shared<nn::Linear>(kv_input_dim, inner, bias, options));
  to_v = register_module("to_v", std::make_shared<nn::Linear>(kv_input_dim, inner, bias, options));
  if (qk_norm) {
    // "rms_norm_across_heads": one RMSNorm over all heads' channels, before the head split.
    norm_q = register_module("norm_q", std::make_shared<nn::RMSNorm>(inner, kQkNormEps, true, false, options));
    norm_k = register_module("norm_k", std::make_shared<nn::RMSNorm>(inner, kQkNormEps, true, false, options));
  }
  to_out = register_module("to_out", std::make_shared<nn::ModuleList<nn::Linear>>());
  to_out->append(std::make_shared<nn::Linear>(inner, query_dim, /*bias=*/true, options));
}

at::Tensor SanaAttention::project_out(const at::Tensor& x) const {
  at::Tensor out = (*to_out)[0].forward(x);
  if (out.scalar_type() == at::kHalf) out = out.clamp(-65504, 65504);
  return out;
}

at::Tensor SanaAttention::forward_linear(const at::Tensor& x) const {
  at::Tensor q = to_q->forward(x), k = to_k->forward(x), v = to_v->forward(x);
  if (norm_q) {
    q = norm_q->forward(q);
    k = norm_k->forward(k);
  }
  const at::Tensor out = nn::relu_linear_attention(at::relu(q), at::relu(k), v, heads, kLinearAttentionEps);
  return project_out(out);
}

at::Tensor SanaAttention::forward_cross(const at::Tensor& x, const at::Tensor& context,
                                        const at::Tensor& key_bias) const {
  const int64_t B = x.size(0), N = x.size(1), L = context.size(1);
  at::Tensor q = to_q->forward(x), k = to_k->forward(context), v = to_v->forward(context);
  if (norm_q) {
    q = norm_q->forward(q);
    k = norm_k->forward(k);
  }
#if TORCH_VERSION_MAJOR >= 2
  // LibTorch 2: the fused kernel (flash / memory-efficient on CUDA) when no autograd is recording; the JVP and the
  // backward keep the explicit form below, which forward-mode AD differentiates.
  if (c10::InferenceMode::is_enabled()) {
    auto split = [&](const at::Tensor& t, int64_t n) { return t.view({B, n, heads, head_dim}).transpose(1, 2); };
    const at::Tensor mask = key_bias.defined() ? key_bias.to(q.scalar_type()).view({B, 1, 1, L}) : at::Tensor();
    const at::Tensor out = at::scaled_dot_product_attention(split(q, N), split(k, L), split(v, L), mask);
    return project_out(out.transpose(1, 2).reshape({B, N, heads * head_dim}));
  }
#endif
  // Heads folded into the batch: [B*H, N, d] and [B*H, L, d].
  auto heads_first = [&](const at::Tensor& t, int64_t n) {
    return t.view({B, n, heads, head_dim}).transpose(1, 2).reshape({B * heads, n, head_dim});
  };
  const at::Tensor qh = heads_first(q, N), kh = heads_first(k, L), vh = heads_first(v, L);
  // softmax(q k^T / sqrt(d) + bias) v; the scale and the key bias ride along in one baddbmm.
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  const at::Tensor scores =
      key_bias.defined()
          ? at::baddbmm(key_bias.expand({B, heads, 1, L}).reshape({B * heads, 1, L}), qh, kh.transpose(1, 2), 1.0, scale)
          : at::bmm(qh, kh.transpose(1, 2)) * scale;
  // The softmax sums in fp32 whatever the activations' dtype (as the reference's fused attention does).
  const at::Tensor probs = at::softmax(scores, -1, nn::accumulation_dtype(scores.scalar_type())).to(vh.scalar_type());
  const at::Tensor out = at::bmm(probs, vh);  // [B*H, N, d]
  return project_out(out.view({B, heads, N, head_dim}).transpose(1, 2).reshape({B, N, heads * head_dim}));
}

// ---------------------------------------------------------------------------------------------------------------
// ---------------------------------------------------------------------------------------------------------------
SanaTransformerBlock::SanaTransformerBlock(const SanaTransformerConfig& cfg, const at::TensorOptions& options)
    : norm_eps(cfg.norm_eps) {
  const int64_t D = cfg.inner_dim();
  const bool qk_norm = cfg.qk_norm.has_value();
  if (cfg.norm_elementwise_affine)
    throw Error("SanaTransformer2DModel: norm_elementwise_affine=true is not supported (no SANA checkpoint uses it)");
  attn1 = register_module("attn1", std::make_shared<SanaAttention>(D, D, cfg.num_attention_heads,
                                                                   cfg.attention_head_dim, cfg.attention_bias,
                                                                   qk_norm, options));
  attn2 = register_module("attn2", std::make_shared<SanaAttention>(D, cfg.cross_attention_dim,
                                                                   cfg.num_cross_attention_heads,
                                                                   cfg.cross_attention_head_dim, /*bias=*/true,
                                                                   qk_norm, options));
  ff = register_module("ff", std::make_shared<nn::GLUMBConv>(D, D, cfg.ff_hidden(), /*norm=*/false, options));
  scale_shift_table = register_parameter("scale_shift_table", at::empty({6, D}, options));
}

at::Tensor SanaTransformerBlock::forward(const at::Tensor& x_in, const at::Tensor& mod, const at::Tensor& context,
                                         const at::Tensor& key_bias, int64_t h, int64_t w) const {
  const int64_t B = x_in.size(0), D = x_in.size(2);
  const auto m = (scale_shift_table.unsqueeze(0) + mod.view({B, 6, D})).chunk(6, 1);  // each [B, 1, D]
  const at::Tensor &shift_msa = m[0], &scale_msa = m[1], &gate_msa = m[2];
  const at::Tensor &shift_mlp = m[3], &scale_mlp = m[4], &gate_mlp = m[5];

  at::Tensor x = x_in;
  at::Tensor y = modulate(nn::layer_norm(x, norm_eps), shift_msa, scale_msa).to(x.scalar_type());
  x = x + gate_msa * attn1->forward_linear(y);
  x = x + attn2->forward_cross(x, context, key_bias);  // no norm, no modulation, no gate
  y = modulate(nn::layer_norm(x, norm_eps), shift_mlp, scale_mlp);
  return x + gate_mlp * ff->forward_tokens(y, h, w);
}

// ---------------------------------------------------------------------------------------------------------------
namespace {
// AdaLayerNormSingle keeps its timestep embedder one level down, under "emb".
class TimestepHolder : public nn::Module {};
}  // namespace

SanaTimeEmbedding::SanaTimeEmbedding(int64_t dim, bool guidance_embeds, const at::TensorOptions& options) {
  timestep_embedder = std::make_shared<nn::TimestepEmbedding>(256, dim, options);
  if (guidance_embeds) {
    register_module("timestep_embedder", timestep_embedder);
    guidance_embedder = register_module("guidance_embedder", std::make_shared<nn::TimestepEmbedding>(256, dim, options));
  } else {
    auto emb = register_module("emb", std::make_shared<TimestepHolder>());
    emb->register_module("timestep_embedder", timestep_embedder);
  }
  linear = register_module("linear", std::make_shared<nn::Linear>(dim, 6 * dim, true, options));
}

std::pair<at::Tensor, at::Tensor> SanaTimeEmbedding::forward(const at::Tensor& timestep, const at::Tensor& guidance,
                                                             at::ScalarType dtype) const {
  at::Tensor cond = timestep_embedder->forward(nn::timestep_sinusoids(timestep).to(dtype));
  if (guidance_embedder) cond = cond + guidance_embedder->forward(nn::timestep_sinusoids(guidance).to(dtype));
  return {linear->forward(at::silu(cond)), cond};
}

CaptionProjection::CaptionProjection(int64_t in_features, int64_t dim, const at::TensorOptions& options) {
  linear_1 = register_module("linear_1", std::make_shared<nn::Linear>(in_features, dim, true, options));
  linear_2 = register_module("linear_2", std::make_shared<nn::Linear>(dim, dim, true, options));
}

at::Tensor CaptionProjection::forward(const at::Tensor& x) const {
  return linear_2->forward(at::gelu(linear_1->forward(x), "tanh"));
}

PatchEmbed::PatchEmbed(int64_t in_channels, int64_t dim, int64_t p, const at::TensorOptions& options) {
  proj = register_module("proj", std::make_shared<nn::Conv2d>(in_channels, dim, p, p, 0, 1, true, options));
}

at::Tensor PatchEmbed::forward(const at::Tensor& x) const {
  if (proj->stride == 1) {  // 1x1 patches: a matrix product on the channels-last view
    return proj->forward_pointwise_tokens(x.permute({0, 2, 3, 1})).flatten(1, 2);
  }
  return proj->forward(x).flatten(2).transpose(1, 2);
}

// ---------------------------------------------------------------------------------------------------------------
SanaBlockStack::SanaBlockStack(const SanaTransformerConfig& cfg, const at::TensorOptions& options) : cfg_(cfg) {
  if (cfg.interpolation_scale)
    throw Error("SANA: interpolation_scale is set (sin-cos positional embedding); only interpolation_scale=null (the "
                "1024px SANA / SANA-Sprint models) is supported");
  const int64_t D = cfg.inner_dim();
  patch_embed = register_module("patch_embed", std::make_shared<PatchEmbed>(cfg.in_channels, D, cfg.patch_size, options));
  time_embed = register_module("time_embed", std::make_shared<SanaTimeEmbedding>(D, cfg.guidance_embeds, options));
  caption_projection =
      register_module("caption_projection", std::make_shared<CaptionProjection>(cfg.caption_channels, D, options));
  caption_norm = register_module("caption_norm", std::make_shared<nn::RMSNorm>(D, 1e-5, true, false, options));
  transformer_blocks = register_module("transformer_blocks", std::make_shared<nn::ModuleList<SanaTransformerBlock>>());
  for (int i = 0; i < cfg.num_layers; ++i) transformer_blocks->append(std::make_shared<SanaTransformerBlock>(cfg, options));
}

SanaTransformer2DModel::SanaTransformer2DModel(const SanaTransformerConfig& cfg, const at::TensorOptions& options)
    : SanaBlockStack(cfg, options) {
  const int64_t D = cfg.inner_dim();
  scale_shift_table = register_parameter("scale_shift_table", at::empty({2, D}, options));
  const int64_t p = cfg.patch_size;
  proj_out = register_module("proj_out", std::make_shared<nn::Linear>(D, p * p * cfg.out_channels, true, options));
}

std::shared_ptr<SanaTransformer2DModel> SanaTransformer2DModel::from_pretrained(const std::string& dir,
                                                                                const at::TensorOptions& options) {
  const auto cfg = load_sana_transformer_config((std::filesystem::path(dir) / "config.json").string());
  auto model = std::make_shared<SanaTransformer2DModel>(cfg, options);
  nn::load_state_dict(*model, Checkpoint::open_in_directory(dir, "diffusion_pytorch_model"), "SanaTransformer2DModel");
  return model;
}

SanaEmbeddedInputs SanaBlockStack::embed(const SanaTransformerInputs& in, at::ScalarType dt,
                                         const std::string& what) const {
  const SanaTransformerConfig& cfg = cfg_;
  const at::Tensor& hs = in.hidden_states;
  if (!hs.defined() || hs.dim() != 4 || hs.size(1) != cfg.in_channels)
    throw Error(what + ": hidden_states must be [B, " + std::to_string(cfg.in_channels) + ", H, W], got " +
                (hs.defined() ? shape_str(hs.sizes()) : std::string("nothing")));
  const int64_t B = hs.size(0), p = cfg.patch_size;
  if (hs.size(2) % p != 0 || hs.size(3) % p != 0)
    throw Error(what + ": latent size " + std::to_string(hs.size(2)) + "x" + std::to_string(hs.size(3)) +
                " is not divisible by patch_size " + std::to_string(p));
  const at::Tensor& ctx_in = in.encoder_hidden_states;
  if (!ctx_in.defined() || ctx_in.dim() != 3 || ctx_in.size(0) != B || ctx_in.size(2) != cfg.caption_channels)
    throw Error(what + ": encoder_hidden_states must be [" + std::to_string(B) + ", L, " +
                std::to_string(cfg.caption_channels) + "], got " +
                (ctx_in.defined() ? shape_str(ctx_in.sizes()) : std::string("nothing")));
  if (cfg.guidance_embeds != in.guidance.defined())
    throw Error(cfg.guidance_embeds ? what + ": this model has guidance_embeds and needs a guidance tensor"
                                    : what + ": guidance given, but this model has no guidance embedding");
  auto per_sample = [&](const at::Tensor& t, const char* name) {
    if (t.dim() == 0) return t.reshape({1}).expand({B});
    if (t.dim() != 1 || (t.size(0) != B && t.size(0) != 1))
      throw Error(what + ": " + name + " must be a scalar or [" + std::to_string(B) + "], got " + shape_str(t.sizes()));
    return t.expand({B});
  };
  if (!in.timestep.defined()) throw Error(what + ": timestep is required");
  const at::Tensor timestep = per_sample(in.timestep, "timestep");
  const at::Tensor guidance = in.guidance.defined() ? per_sample(in.guidance, "guidance") : at::Tensor();

  SanaEmbeddedInputs e;
  e.h = hs.size(2) / p, e.w = hs.size(3) / p;
  // Mask (1 keep, 0 pad) -> additive key bias (1 - m) * -10000, broadcast over heads and queries.
  if (in.encoder_attention_mask.defined()) {
    const at::Tensor& m = in.encoder_attention_mask;
    if (m.dim() != 2 || m.size(0) != B || m.size(1) != ctx_in.size(1))
      throw Error(what + ": encoder_attention_mask must be [" + std::to_string(B) + ", " +
                  std::to_string(ctx_in.size(1)) + "], got " + shape_str(m.sizes()));
    e.key_bias = ((1 - m.to(dt)) * -10000.0).view({B, 1, 1, -1});
  }
  e.x = patch_embed->forward(hs.to(dt));  // [B, N, D]
  std::tie(e.mod, e.cond) = time_embed->forward(timestep, guidance, dt);
  e.context = caption_norm->forward(caption_projection->forward(ctx_in.to(dt)));
  return e;
}

at::Tensor SanaTransformer2DModel::forward(const SanaTransformerInputs& in, SanaTransformerAux* aux) const {
  const auto dt = dtype();
  if (static_cast<int64_t>(in.controlnet_block_samples.size()) > cfg_.num_layers)
    throw Error("transformer: " + std::to_string(in.controlnet_block_samples.size()) +
                " controlnet residuals for " + std::to_string(cfg_.num_layers) + " blocks");
  SanaEmbeddedInputs e = embed(in, dt, "transformer");
  at::Tensor& x = e.x;
  const at::Tensor &mod = e.mod, &cond = e.cond, &context = e.context, &key_bias = e.key_bias;
  const int64_t B = x.size(0), h = e.h, w = e.w, p = cfg_.patch_size;

  if (aux) {
    aux->embedded_timestep = cond;
    aux->block_features.assign(aux->block_ids.size(), at::Tensor());
    for (int id : aux->block_ids)
      if (id < 0 || id >= cfg_.num_layers)
        throw Error("transformer: feature block id " + std::to_string(id) + " outside 0.." + std::to_string(cfg_.num_layers - 1));
  }
  const auto& residuals = in.controlnet_block_samples;
  for (size_t k = 0; k < transformer_blocks->size(); ++k) {
    x = (*transformer_blocks)[k].forward(x, mod, context, key_bias, h, w);
    if (k >= 1 && k <= residuals.size()) x = x + residuals[k - 1].to(dt);
    if (aux)
      for (size_t j = 0; j < aux->block_ids.size(); ++j)
        if (aux->block_ids[j] == static_cast<int>(k)) aux->block_features[j] = x;
  }

  // Final adaLN: rows of scale_shift_table are (shift, scale).
  const auto ss = (scale_shift_table.unsqueeze(0) + cond.unsqueeze(1)).chunk(2, 1);
  x = modulate(nn::layer_norm(x, 1e-6), ss[0], ss[1]);
  x = proj_out->forward(x);  // [B, N, p*p*C]

  // Unpatchify: [B, h, w, p, p, C] -> [B, C, h*p, w*p].
  const int64_t C = cfg_.out_channels;
  return x.view({B, h, w, p, p, C}).permute({0, 5, 1, 3, 2, 4}).reshape({B, C, h * p, w * p});
}

// ---------------------------------------------------------------------------------------------------------------
double sana_transformer_flops(const SanaTransformerConfig& cfg, int64_t batch, int64_t height, int64_t width,
                              int64_t tokens) {
  const double p = cfg.patch_size, N = (height / p) * (width / p), L = tokens;
  const double D = cfg.inner_dim(), X = cfg.cross_inner_dim(), Hf = cfg.ff_hidden();
  const double d = cfg.attention_head_dim, heads = cfg.num_attention_heads;
  auto mm = [](double m, double k, double n) { return 2.0 * m * k * n; };
  double block = 0;
  block += 3 * mm(N, D, D) + mm(N, D, D);                               // attn1 q, k, v, out
  block += heads * (mm(d, N, d + 1) + mm(N, d, d + 1));                 // linear attention
  block += mm(N, D, X) + 2 * mm(L, cfg.cross_attention_dim, X);         // attn2 q, k, v
  block += mm(N, X, L) + mm(N, L, X) + mm(N, X, D);                     // scores, values, out
  block += mm(N, D, 2 * Hf) + 2.0 * 9 * N * 2 * Hf + mm(N, Hf, D);      // GLUMBConv
  double total = cfg.num_layers * block;
  total += mm(N, cfg.in_channels * p * p, D) + mm(L, cfg.caption_channels, D) + mm(L, D, D);
  total += mm(N, D, p * p * cfg.out_channels);
  return batch * total;
}

}  // namespace sana
