#include "sana/models/dcae.h"

#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <utility>
#include <vector>

#include "sana/error.h"
#include "sana/nn/module_io.h"

namespace sana {
namespace {

constexpr double kLinearAttentionEps = 1e-15;

at::Tensor activate(const std::string& act, const at::Tensor& x) {
  if (act == "silu") return at::silu(x);
  if (act == "relu") return at::relu(x);
  return at::gelu(x);
}

void activate_in_place(const std::string& act, at::Tensor& x) {
  if (act == "silu" && nn::cpu::supported(x)) nn::cpu::silu_(x);
  else if (act == "silu") at::silu_(x);
  else if (act == "relu") at::relu_(x);
  else x = at::gelu(x);
}

// pixel_shuffle by 2, by the fused CPU kernel where it applies (a plain copy, 2-3x faster than ATen's permute).
at::Tensor pixel_shuffle2(const at::Tensor& x) {
  return nn::cpu::supported(x) ? nn::cpu::pixel_shuffle2(x) : at::pixel_shuffle(x, 2);
}

// conv3x3(nearest_upsample_x2(x)), computed on x itself (docs/PERFORMANCE.md, "DC-AE decode"). Output pixel
// (2i + a, 2j + b) reads only x's rows i-1..i+1 and columns j-1..j+1, so each of the four phases (a, b) is a 3x3
// convolution of x whose taps are sums of the original taps; one convolution with 4x the output channels, then
// pixel_shuffle, lays the phases out. The same number of products, without the 4x larger upsampled input (and
// oneDNN's copy of it in its own layout): at 1024^2 that input is 512 MB in bf16.
at::Tensor upsampled_conv3x3(const nn::Conv2d& conv, const at::Tensor& x) {
  // Taps over x's offsets -1, 0, +1 along `dim` (2: rows, 3: columns) for output phase 0 (even) or 1 (odd):
  // phase 0 reads {-1: w0, 0: w1 + w2}, phase 1 reads {0: w0 + w1, +1: w2}.
  auto fold = [](const at::Tensor& w, int64_t dim, int phase) {
    const at::Tensor w0 = w.select(dim, 0), w1 = w.select(dim, 1), w2 = w.select(dim, 2), zero = at::zeros_like(w0);
    return phase == 0 ? at::stack({w0, w1 + w2, zero}, dim) : at::stack({zero, w0 + w1, w2}, dim);
  };
  const at::Tensor w = conv.weight.to(nn::accumulation_dtype(conv.weight.scalar_type()));  // sums in fp32
  std::vector<at::Tensor> phases;
  for (int a : {0, 1})
    for (int b : {0, 1}) phases.push_back(fold(fold(w, 2, a), 3, b));
  // Output channel c * 4 + a * 2 + b, the order pixel_shuffle reads.
  const at::Tensor folded = at::stack(phases, 1).flatten(0, 1).to(conv.weight.scalar_type());
  const at::Tensor bias = conv.bias.defined() ? conv.bias.repeat_interleave(4) : at::Tensor();
  return pixel_shuffle2(at::conv2d(x, folded, bias, 1, 1));
}

// RMSNorm over the channel dim of [B, C, H, W] (either memory layout).
at::Tensor channel_norm(const nn::RMSNorm& norm, const at::Tensor& x) { return norm.forward_dim(x, 1); }

// Layouts: the 3x3 convolutions of the high-resolution stages run fastest on NCHW (oneDNN/im2col at ~sgemm speed,
// 1.4-1.8x faster than channels-last here), the attention blocks work on channels-last tokens. Each EfficientViT
// block converts in and out; at the resolutions where those blocks sit the copies are cheap.
at::Tensor channels_last(const at::Tensor& x) { return x.contiguous(at::MemoryFormat::ChannelsLast); }

std::shared_ptr<DCBlock> make_block(const std::string& type, int64_t channels, int64_t head_dim, const std::string& act,
                                    const std::vector<int>& scales, const at::TensorOptions& options) {
  if (type == "ResBlock") return std::make_shared<DCResBlock>(channels, act, options);
  return std::make_shared<DCEfficientViTBlock>(channels, head_dim, scales, options);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
DCResBlock::DCResBlock(int64_t c, std::string act_, const at::TensorOptions& options) : act(std::move(act_)) {
  conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(c, c, 3, 1, 1, 1, true, options));
  conv2 = register_module("conv2", std::make_shared<nn::Conv2d>(c, c, 3, 1, 1, 1, false, options));
  norm = register_module("norm", std::make_shared<nn::RMSNorm>(c, 1e-5, true, true, options));
}

at::Tensor DCResBlock::forward(const at::Tensor& x) const {
  if (!c10::InferenceMode::is_enabled()) return channel_norm(*norm, conv2->forward(activate(act, conv1->forward(x)))) + x;
  // Inference: the activation and the residual in place, each intermediate dropped as soon as it is used (at 1024^2
  // the last stages' activations are 256-512 MB each).
  at::Tensor h = conv1->forward(x);
  activate_in_place(act, h);
  h = conv2->forward(h);
  if (norm->fused_channels(h) && x.is_contiguous()) return nn::cpu::rms_norm_channels(h, norm->weight, norm->bias, norm->eps, x);
  return channel_norm(*norm, h).add_(x);
}

DCMultiscaleProjection::DCMultiscaleProjection(int64_t c, int64_t heads, int64_t k, const at::TensorOptions& options) {
  proj_in = register_module("proj_in", std::make_shared<nn::Conv2d>(c, c, k, 1, k / 2, c, false, options));
  proj_out = register_module("proj_out", std::make_shared<nn::Conv2d>(c, c, 1, 1, 0, 3 * heads, false, options));
}

DCLiteMLA::DCLiteMLA(int64_t c, int64_t head_dim_, const std::vector<int>& scales, const at::TensorOptions& options)
    : head_dim(head_dim_) {
  const int64_t heads = c / head_dim, inner = heads * head_dim;
  to_q = register_module("to_q", std::make_shared<nn::Linear>(c, inner, false, options));
  to_k = register_module("to_k", std::make_shared<nn::Linear>(c, inner, false, options));
  to_v = register_module("to_v", std::make_shared<nn::Linear>(c, inner, false, options));
  to_qkv_multiscale = register_module("to_qkv_multiscale", std::make_shared<nn::ModuleList<DCMultiscaleProjection>>());
  for (int k : scales) to_qkv_multiscale->append(std::make_shared<DCMultiscaleProjection>(3 * inner, heads, k, options));
  to_out = register_module("to_out", std::make_shared<nn::Linear>(inner * (1 + scales.size()), c, false, options));
  norm_out = register_module("norm_out", std::make_shared<nn::RMSNorm>(c, 1e-5, true, true, options));
}

at::Tensor DCLiteMLA::forward(const at::Tensor& x) const {
  const int64_t B = x.size(0), H = x.size(2), W = x.size(3), N = H * W;
  const at::Tensor tokens = x.permute({0, 2, 3, 1});  // [B, H, W, C]
  // [q | k | v] channels, then each multi-scale projection of that, all channels-last.
  const at::Tensor qkv = at::cat({to_q->forward(tokens), to_k->forward(tokens), to_v->forward(tokens)}, 3);
  std::vector<at::Tensor> scales = {qkv};
  for (const auto& proj : *to_qkv_multiscale)
    scales.push_back(proj->forward(qkv.permute({0, 3, 1, 2})).permute({0, 2, 3, 1}));
  const at::Tensor all = at::cat(scales, 3).reshape({B, N, -1});  // [B, N, G * 3 * d]
  // The reference reshapes channels into groups of 3d = [q | k | v] of one head each; a group can mix
  // projections across scales. Token form of the same grouping: [B, N, G, 3, d].
  const int64_t d = head_dim, G = all.size(2) / (3 * d);
  const at::Tensor grouped = all.view({B, N, G, 3, d});
  const at::Tensor q = at::relu(grouped.select(3, 0)), k = at::relu(grouped.select(3, 1)), v = grouped.select(3, 2);
  const at::Tensor out = lite_mla_kernel(q.reshape({B, N, G * d}), k.reshape({B, N, G * d}), v.reshape({B, N, G * d}),
                                         G, /*quadratic=*/N <= d);
  const at::Tensor y = norm_out->forward(to_out->forward(out.view({B, H, W, G * d})));  // [B, H, W, C]
  return y.permute({0, 3, 1, 2}) + x;
}

at::Tensor lite_mla_kernel(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t groups,
                           bool quadratic) {
  if (!quadratic) return nn::relu_linear_attention(q, k, v, groups, kLinearAttentionEps);
  const int64_t B = q.size(0), N = q.size(1), d = q.size(2) / groups;
  const auto acc = nn::accumulation_dtype(q.scalar_type());
  auto heads = [&](const at::Tensor& t) { return t.to(acc).reshape({B, N, groups, d}).permute({0, 2, 1, 3}); };
  const at::Tensor qh = heads(q), kh = heads(k), vh = heads(v);  // [B, G, N, d]
  at::Tensor S = at::matmul(kh, qh.transpose(2, 3));            // S[m, n] = k_m . q_n
  S = S / (S.sum(2, true) + kLinearAttentionEps);               // normalised over the keys m
  return at::matmul(S.transpose(2, 3), vh).permute({0, 2, 1, 3}).reshape({B, N, groups * d}).to(q.scalar_type());
}

DCEfficientViTBlock::DCEfficientViTBlock(int64_t c, int64_t head_dim, const std::vector<int>& scales,
                                         const at::TensorOptions& options) {
  attn = register_module("attn", std::make_shared<DCLiteMLA>(c, head_dim, scales, options));
  conv_out = register_module("conv_out", std::make_shared<nn::GLUMBConv>(c, c, 4 * c, /*norm=*/true, options));
}

at::Tensor DCEfficientViTBlock::forward(const at::Tensor& x_in) const {
  const at::Tensor x = channels_last(attn->forward(channels_last(x_in)));
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const at::Tensor tokens = x.permute({0, 2, 3, 1}).reshape({B, H * W, C});
  return (conv_out->forward_tokens(tokens, H, W) + tokens).view({B, H, W, C}).permute({0, 3, 1, 2}).contiguous();
}

DCUpBlock2d::DCUpBlock2d(int64_t cin, int64_t cout, bool interpolate_, bool shortcut_, const at::TensorOptions& options)
    : interpolate(interpolate_), shortcut(shortcut_), repeats(cout * 4 / cin) {
  if (shortcut && (cout * 4 % cin != 0 || cout * 4 < cin))
    throw Error("AutoencoderDC config: an up block from " + std::to_string(cin) + " to " + std::to_string(cout) +
                " channels has no shortcut (4 * out must be a multiple of in)");
  conv = register_module("conv", std::make_shared<nn::Conv2d>(cin, interpolate ? cout : 4 * cout, 3, 1, 1, 1, true, options));
}

at::Tensor DCUpBlock2d::forward(const at::Tensor& x) const {
  at::Tensor y;
  if (!interpolate)
    y = pixel_shuffle2(conv->forward(x));
  else if (c10::InferenceMode::is_enabled() && conv->weight.size(2) == 3 && conv->stride == 1 && conv->padding == 1 &&
           conv->groups == 1)
    y = upsampled_conv3x3(*conv, x);
  else
    y = conv->forward(at::upsample_nearest2d(x, {2 * x.size(2), 2 * x.size(3)}));
  if (!shortcut) return y;
  const at::Tensor s = pixel_shuffle2(x.repeat_interleave(repeats, 1));
  return c10::InferenceMode::is_enabled() ? y.add_(s) : y + s;  // in place when nothing records: one 1024^2 map less
}

DCDownBlock2d::DCDownBlock2d(int64_t cin, int64_t cout, bool pixel_unshuffle_, bool shortcut_,
                             const at::TensorOptions& options)
    : pixel_unshuffle(pixel_unshuffle_), shortcut(shortcut_), group_size(cin * 4 / cout) {
  if (shortcut && (cin * 4 % cout != 0 || cin * 4 < cout))
    throw Error("AutoencoderDC config: a down block from " + std::to_string(cin) + " to " + std::to_string(cout) +
                " channels has no shortcut (4 * in must be a multiple of out)");
  conv = register_module("conv", std::make_shared<nn::Conv2d>(cin, pixel_unshuffle ? cout / 4 : cout, 3,
                                                              pixel_unshuffle ? 1 : 2, 1, 1, true, options));
}

at::Tensor DCDownBlock2d::forward(const at::Tensor& x) const {
  at::Tensor y = conv->forward(x);
  if (pixel_unshuffle) y = at::pixel_unshuffle(y, 2);
  if (shortcut) {
    const at::Tensor s = at::pixel_unshuffle(x, 2);
    y = y + s.unflatten(1, {-1, group_size}).mean(2);
  }
  return y;
}

// ---------------------------------------------------------------------------------------------------------------
DCEncoder::DCEncoder(const AutoencoderDCConfig& c, const at::TensorOptions& options) {
  const auto& ch = c.encoder_block_out_channels;
  const auto& layers = c.encoder_layers_per_block;
  const size_t n = ch.size();
  const bool unshuffle = c.downsample_block_type == "pixel_unshuffle";
  const int64_t first = layers[0] > 0 ? ch[0] : ch[1];
  if (layers[0] > 0) {
    conv_in = register_module("conv_in", std::make_shared<nn::Conv2d>(c.in_channels, first, 3, 1, 1, 1, true, options));
  } else {
    conv_in_block = register_module("conv_in", std::make_shared<DCDownBlock2d>(c.in_channels, first, unshuffle, false, options));
  }
  down_blocks = register_module("down_blocks", std::make_shared<nn::ModuleList<DCStage>>());
  for (size_t i = 0; i < n; ++i) {
    auto stage = std::make_shared<DCStage>();
    for (int l = 0; l < layers[i]; ++l)
      stage->append(make_block(c.encoder_block_types[i], ch[i], c.attention_head_dim, "silu", c.encoder_qkv_multiscales[i], options));
    if (i + 1 < n && layers[i] > 0) stage->append(std::make_shared<DCDownBlock2d>(ch[i], ch[i + 1], unshuffle, true, options));
    down_blocks->append(stage);
  }
  conv_out = register_module("conv_out", std::make_shared<nn::Conv2d>(ch[n - 1], c.latent_channels, 3, 1, 1, 1, true, options));
  if (c.encoder_out_shortcut) out_shortcut_group = ch[n - 1] / c.latent_channels;
}

at::Tensor DCEncoder::forward(const at::Tensor& image) const {
  at::Tensor x = image.contiguous();
  x = conv_in ? conv_in->forward(x) : conv_in_block->forward(x);
  for (const auto& stage : *down_blocks)
    for (const auto& block : *stage) x = block->forward(x);
  at::Tensor out = conv_out->forward(x);
  if (out_shortcut_group > 0) out = out + x.unflatten(1, {-1, out_shortcut_group}).mean(2);
  return out.contiguous();
}

DCDecoder::DCDecoder(const AutoencoderDCConfig& c, const at::TensorOptions& options) : conv_act(c.decoder_conv_act_fn) {
  const auto& ch = c.decoder_block_out_channels;
  const auto& layers = c.decoder_layers_per_block;
  const size_t n = ch.size();
  const bool interpolate = c.upsample_block_type == "interpolate";
  conv_in = register_module("conv_in", std::make_shared<nn::Conv2d>(c.latent_channels, ch[n - 1], 3, 1, 1, 1, true, options));
  if (c.decoder_in_shortcut) in_shortcut_repeats = ch[n - 1] / c.latent_channels;
  up_blocks = register_module("up_blocks", std::make_shared<nn::ModuleList<DCStage>>());
  for (size_t i = 0; i < n; ++i) {  // indexed by stage; run from the last stage to the first
    auto stage = std::make_shared<DCStage>();
    if (i + 1 < n && layers[i] > 0) stage->append(std::make_shared<DCUpBlock2d>(ch[i + 1], ch[i], interpolate, true, options));
    for (int l = 0; l < layers[i]; ++l)
      stage->append(make_block(c.decoder_block_types[i], ch[i], c.attention_head_dim, c.decoder_act_fns[i],
                               c.decoder_qkv_multiscales[i], options));
    up_blocks->append(stage);
  }
  const int64_t out_ch = layers[0] > 0 ? ch[0] : ch[1];
  norm_out = register_module("norm_out", std::make_shared<nn::RMSNorm>(out_ch, 1e-5, true, true, options));
  if (layers[0] > 0) {
    conv_out = register_module("conv_out", std::make_shared<nn::Conv2d>(out_ch, c.in_channels, 3, 1, 1, 1, true, options));
  } else {
    conv_out_block = register_module("conv_out", std::make_shared<DCUpBlock2d>(out_ch, c.in_channels, interpolate, false, options));
  }
}

at::Tensor DCDecoder::forward(const at::Tensor& z_in) const {
  const at::Tensor z = z_in.contiguous();
  at::Tensor x = conv_in->forward(z);
  if (in_shortcut_repeats > 0) x = x + z.repeat_interleave(in_shortcut_repeats, 1);
  for (size_t i = up_blocks->size(); i-- > 0;)
    for (const auto& block : (*up_blocks)[i]) x = block->forward(x);
  x = activate(conv_act, channel_norm(*norm_out, x));
  x = conv_out ? conv_out->forward(x) : conv_out_block->forward(x);
  return x.contiguous();
}

// ---------------------------------------------------------------------------------------------------------------
AutoencoderDC::AutoencoderDC(const AutoencoderDCConfig& c, const at::TensorOptions& options) : cfg_(c) {
  encoder = register_module("encoder", std::make_shared<DCEncoder>(c, options));
  decoder = register_module("decoder", std::make_shared<DCDecoder>(c, options));
}

std::shared_ptr<AutoencoderDC> AutoencoderDC::from_pretrained(const std::string& dir, const at::TensorOptions& options) {
  const auto cfg = load_autoencoder_dc_config((std::filesystem::path(dir) / "config.json").string());
  auto model = std::make_shared<AutoencoderDC>(cfg, options);
  nn::load_state_dict(*model, Checkpoint::open_in_directory(dir, "diffusion_pytorch_model"), "AutoencoderDC");
  return model;
}

at::Tensor AutoencoderDC::encode(const at::Tensor& image) const {
  const int64_t f = cfg_.spatial_factor();
  if (image.dim() != 4 || image.size(1) != cfg_.in_channels || image.size(2) % f || image.size(3) % f)
    throw Error("vae encode: image must be [B, " + std::to_string(cfg_.in_channels) + ", H, W] with H, W divisible by " +
                std::to_string(f) + ", got " + c10::str(image.sizes()));
  return encoder->forward(image.to(dtype()));
}

at::Tensor AutoencoderDC::decode(const at::Tensor& latent) const {
  if (latent.dim() != 4 || latent.size(1) != cfg_.latent_channels)
    throw Error("vae decode: latent must be [B, " + std::to_string(cfg_.latent_channels) + ", h, w], got " +
                c10::str(latent.sizes()));
  return decoder->forward(latent.to(dtype()));
}

namespace {

void check_tiling(const TiledDecodeOptions& o, int64_t f) {
  const std::pair<const char*, int> sizes[] = {{"tile_sample_min_height", o.tile_sample_min_height},
                                               {"tile_sample_min_width", o.tile_sample_min_width},
                                               {"tile_sample_stride_height", o.tile_sample_stride_height},
                                               {"tile_sample_stride_width", o.tile_sample_stride_width}};
  for (const auto& [name, v] : sizes)
    if (v < f || v % f != 0)
      throw Error(std::string("tiled decode: ") + name + " must be a positive multiple of the VAE factor " +
                  std::to_string(f) + ", got " + std::to_string(v));
  if (o.tile_sample_stride_height > o.tile_sample_min_height || o.tile_sample_stride_width > o.tile_sample_min_width)
    throw Error("tiled decode: the stride must not exceed the tile (tiles would leave gaps)");
}

// diffusers' blend_v / blend_h along `dim` (2: rows, 3: columns), in place on `b`: over the first e = min(sizes,
// extent) lines, b = a's last e lines * (1 - y/e) + b * (y/e).
void blend_into(const at::Tensor& a, at::Tensor& b, int64_t dim, int64_t extent) {
  const int64_t e = std::min({a.size(dim), b.size(dim), extent});
  if (e <= 0) return;
  std::vector<int64_t> shape(4, 1);
  shape[dim] = e;
  const at::Tensor y = (at::arange(e, at::TensorOptions().dtype(at::kDouble)) / static_cast<double>(e))
                           .to(b.scalar_type()).to(b.device()).view(shape);
  at::Tensor head = b.narrow(dim, 0, e);
  head.copy_(a.narrow(dim, a.size(dim) - e, e) * (1 - y) + head * y);
}

}  // namespace

// diffusers' AutoencoderDC.tiled_decode: latent tiles at every stride, each decoded on its own; then row by row, left
// to right, each tile blended in place with the (already blended) tile above and the one on its left, cropped to the
// stride, and the crops concatenated.
at::Tensor AutoencoderDC::decode_tiled(const at::Tensor& latent, const TiledDecodeOptions& o) const {
  const int64_t h = latent.size(2), w = latent.size(3), f = cfg_.spatial_factor();
  check_tiling(o, f);
  const int64_t tile_h = o.tile_sample_min_height / f, tile_w = o.tile_sample_min_width / f;
  const int64_t stride_h = o.tile_sample_stride_height / f, stride_w = o.tile_sample_stride_width / f;
  if (h <= tile_h && w <= tile_w) return decode(latent);
  std::vector<std::vector<at::Tensor>> tiles;
  for (int64_t i = 0; i < h; i += stride_h) {
    tiles.emplace_back();
    for (int64_t j = 0; j < w; j += stride_w)
      tiles.back().push_back(decode(latent.narrow(2, i, std::min(tile_h, h - i)).narrow(3, j, std::min(tile_w, w - j))));
  }
  std::vector<at::Tensor> rows;
  for (size_t i = 0; i < tiles.size(); ++i) {
    std::vector<at::Tensor> crops;
    for (size_t j = 0; j < tiles[i].size(); ++j) {
      at::Tensor& tile = tiles[i][j];
      if (i > 0) blend_into(tiles[i - 1][j], tile, 2, o.tile_sample_min_height - o.tile_sample_stride_height);
      if (j > 0) blend_into(tiles[i][j - 1], tile, 3, o.tile_sample_min_width - o.tile_sample_stride_width);
      crops.push_back(tile.narrow(2, 0, std::min<int64_t>(o.tile_sample_stride_height, tile.size(2)))
                          .narrow(3, 0, std::min<int64_t>(o.tile_sample_stride_width, tile.size(3))));
    }
    rows.push_back(at::cat(crops, 3));
  }
  return at::cat(rows, 2);
}

double dcae_decoder_flops(const AutoencoderDCConfig& c, int64_t h, int64_t w) {
  const auto& ch = c.decoder_block_out_channels;
  const auto& layers = c.decoder_layers_per_block;
  const size_t n = ch.size();
  const double d = c.attention_head_dim;
  auto conv = [](double cin, double cout, double k, double hw) { return 2.0 * k * k * cin * cout * hw; };
  double total = conv(c.latent_channels, ch[n - 1], 3, static_cast<double>(h) * w);
  for (size_t i = n; i-- > 0;) {
    const double hw = static_cast<double>(h) * w * std::pow(4.0, static_cast<double>(n - 1 - i));
    const double C = ch[i];
    if (i + 1 < n && layers[i] > 0) total += conv(ch[i + 1], C, 3, hw);
    for (int l = 0; l < layers[i]; ++l) {
      if (c.decoder_block_types[i] == "ResBlock") {
        total += 2 * conv(C, C, 3, hw);
        continue;
      }
      const double S = c.decoder_qkv_multiscales[i].size();  // groups of d channels: (1 + S) C / d
      total += 3 * conv(C, C, 1, hw);                                             // q, k, v
      for (int k : c.decoder_qkv_multiscales[i]) total += 2.0 * k * k * 3 * C * hw + 2.0 * 3 * C * d * hw;
      total += (1 + S) * C / d * 4.0 * hw * d * (d + 1);                          // linear attention, all groups
      total += conv((1 + S) * C, C, 1, hw);                                        // to_out
      total += conv(C, 8 * C, 1, hw) + 2.0 * 9 * 8 * C * hw + conv(4 * C, C, 1, hw);  // GLUMBConv
    }
  }
  const double out_ch = layers[0] > 0 ? ch[0] : ch[1];
  total += conv(out_ch, c.in_channels, 3, static_cast<double>(h) * w * std::pow(4.0, static_cast<double>(n - 1)));
  return total;
}

}  // namespace sana
