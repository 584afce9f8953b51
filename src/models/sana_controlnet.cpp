// SanaControlNetModel (sana_controlnet.h).
#include "sana/models/sana_controlnet.h"

#include <ATen/core/grad_mode.h>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "sana/error.h"
#include "sana/io/config.h"
#include "sana/nn/module_io.h"

namespace sana {

SanaControlNetModel::SanaControlNetModel(const SanaTransformerConfig& cfg, const at::TensorOptions& options)
    : SanaBlockStack(cfg, options) {
  const int64_t D = cfg.inner_dim();
  controlnet_blocks = register_module("controlnet_blocks", std::make_shared<nn::ModuleList<nn::Linear>>());
  for (int i = 0; i < cfg.num_layers; ++i) controlnet_blocks->append(std::make_shared<nn::Linear>(D, D, true, options));
  input_block = register_module("input_block", std::make_shared<nn::Linear>(D, D, true, options));
}

std::shared_ptr<SanaControlNetModel> SanaControlNetModel::from_pretrained(const std::string& dir,
                                                                          const at::TensorOptions& options) {
  const auto cfg = load_sana_controlnet_config((std::filesystem::path(dir) / "config.json").string());
  auto model = std::make_shared<SanaControlNetModel>(cfg, options);
  nn::load_state_dict(*model, Checkpoint::open_in_directory(dir, "diffusion_pytorch_model"), "SanaControlNetModel");
  return model;
}

std::vector<at::Tensor> SanaControlNetModel::forward(const SanaTransformerInputs& in, const at::Tensor& controlnet_cond,
                                                     double conditioning_scale) const {
  const auto dt = dtype();
  const at::Tensor& hs = in.hidden_states;
  if (!controlnet_cond.defined() || !hs.defined() || controlnet_cond.sizes() != hs.sizes())
    throw Error("controlnet: controlnet_cond must have the latent's shape " +
                (hs.defined() ? c10::str(hs.sizes()) : std::string("[B, C, H, W]")) + ", got " +
                (controlnet_cond.defined() ? c10::str(controlnet_cond.sizes()) : std::string("nothing")));
  SanaEmbeddedInputs e = embed(in, dt, "controlnet");
  at::Tensor x = e.x + input_block->forward(patch_embed->forward(controlnet_cond.to(dt)));
  std::vector<at::Tensor> residuals;
  for (size_t k = 0; k < transformer_blocks->size(); ++k) {
    x = (*transformer_blocks)[k].forward(x, e.mod, e.context, e.key_bias, e.h, e.w);
    residuals.push_back((*controlnet_blocks)[k].forward(x) * conditioning_scale);
  }
  return residuals;
}

void check_controlnet_fits(const SanaTransformerConfig& c, const SanaTransformerConfig& t, const std::string& what) {
  const auto mismatch = [&](const std::string& key, const std::string& cn, const std::string& tr) {
    throw Error(what + ": " + key + " is " + cn + " but the transformer's is " + tr + "; this ControlNet was made for "
                "another model");
  };
  const auto same = [&](const char* key, double a, double b) {
    if (a != b) mismatch(key, c10::str(a), c10::str(b));
  };
  same("inner dim (num_attention_heads x attention_head_dim)", c.inner_dim(), t.inner_dim());
  same("in_channels", c.in_channels, t.in_channels);
  same("caption_channels", c.caption_channels, t.caption_channels);
  same("patch_size", c.patch_size, t.patch_size);
  if (c.guidance_embeds != t.guidance_embeds)
    mismatch("guidance_embeds", c.guidance_embeds ? "true" : "false", t.guidance_embeds ? "true" : "false");
  if (c.num_layers > t.num_layers)
    mismatch("num_layers", std::to_string(c.num_layers), std::to_string(t.num_layers) + " (at most that many)");
}

std::shared_ptr<SanaControlNetModel> controlnet_from_transformer(const SanaTransformer2DModel& t, int num_layers) {
  if (num_layers < 1 || num_layers > t.config().num_layers)
    throw Error("controlnet: num_layers " + std::to_string(num_layers) + " outside 1.." +
                std::to_string(t.config().num_layers) + " (the transformer's blocks)");
  const auto options = at::TensorOptions().dtype(t.dtype()).device(t.device());
  auto cn = std::make_shared<SanaControlNetModel>(
      parse_sana_controlnet_config(controlnet_config_for(t.config(), num_layers), "controlnet"), options);
  at::NoGradGuard no_grad;
  std::map<std::string, at::Tensor> source;
  for (const auto& [name, tensor] : nn::state_dict(t)) source[name] = tensor;
  for (auto& p : cn->named_parameters()) {
    const std::string& name = p.key();
    if (name.rfind("input_block.", 0) == 0 || name.rfind("controlnet_blocks.", 0) == 0) {
      p.value().zero_();
    } else {
      const auto it = source.find(name);  // embeddings and transformer_blocks.{i < num_layers} share the names
      if (it == source.end()) throw Error("controlnet: the transformer has no tensor " + name);
      p.value().copy_(it->second);
    }
  }
  return cn;
}

std::string controlnet_config_for(const SanaTransformerConfig& t, int num_layers) {
  nlohmann::json j = {{"_class_name", "SanaControlNetModel"},
                      {"in_channels", t.in_channels},
                      {"out_channels", t.out_channels},
                      {"num_attention_heads", t.num_attention_heads},
                      {"attention_head_dim", t.attention_head_dim},
                      {"num_layers", num_layers},
                      {"num_cross_attention_heads", t.num_cross_attention_heads},
                      {"cross_attention_head_dim", t.cross_attention_head_dim},
                      {"cross_attention_dim", t.cross_attention_dim},
                      {"caption_channels", t.caption_channels},
                      {"mlp_ratio", t.mlp_ratio},
                      {"dropout", t.dropout},
                      {"attention_bias", t.attention_bias},
                      {"sample_size", t.sample_size},
                      {"patch_size", t.patch_size},
                      {"norm_elementwise_affine", t.norm_elementwise_affine},
                      {"norm_eps", t.norm_eps},
                      {"interpolation_scale", nullptr}};
  if (t.qk_norm) j["qk_norm"] = *t.qk_norm;
  if (t.guidance_embeds) {
    j["guidance_embeds"] = true;
    j["guidance_embeds_scale"] = t.guidance_embeds_scale;
  }
  return j.dump(2) + "\n";
}

}  // namespace sana
