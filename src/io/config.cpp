#include "sana/io/config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sana/error.h"

using json = nlohmann::json;

namespace sana {
namespace {

// Typed access to one config object with error messages that name the file and key.
class Fields {
 public:
  Fields(const json& j, std::string source) : j_(j), source_(std::move(source)) {}

  template <class T>
  void read(const char* key, T& value) const {
    if (!j_.contains(key) || j_[key].is_null()) return;  // keep the default
    value = convert<T>(key, j_[key]);
  }
  template <class T>
  void read(const char* key, std::optional<T>& value) const {
    if (!j_.contains(key) || j_[key].is_null()) {
      value.reset();
      return;
    }
    value = convert<T>(key, j_[key]);
  }
  template <class T>
  T require(const char* key) const {
    if (!j_.contains(key) || j_[key].is_null()) fail(key, "is required but missing");
    return convert<T>(key, j_[key]);
  }
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw Error("config " + source_ + ": key '" + key + "' " + what);
  }

 private:
  template <class T>
  T convert(const char* key, const json& v) const {
    if constexpr (std::is_same_v<T, bool>) {
      if (!v.is_boolean()) fail(key, "must be true or false, got " + v.dump());
      return v.get<bool>();
    } else if constexpr (std::is_integral_v<T>) {
      if (!v.is_number_integer()) fail(key, "must be an integer, got " + v.dump());
      return v.get<T>();
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!v.is_number()) fail(key, "must be a number, got " + v.dump());
      return v.get<T>();
    } else {
      if (!v.is_string()) fail(key, "must be a string, got " + v.dump());
      return v.get<std::string>();
    }
  }
  const json& j_;
  std::string source_;
};

json parse_object(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error("config " + source + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw Error("config " + source + ": top level is not a JSON object");
  return j;
}

}  // namespace

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {

// SanaTransformer2DModel and SanaControlNetModel read the same keys; `c` holds the class's defaults.
SanaTransformerConfig parse_sana_config(const std::string& text, const std::string& source, const std::string& cls_name,
                                        SanaTransformerConfig c) {
  const json j = parse_object(text, source);
  const Fields f(j, source);
  if (j.contains("_class_name")) {
    const auto cls = f.require<std::string>("_class_name");
    if (cls != cls_name) f.fail("_class_name", "is '" + cls + "', expected " + cls_name);
  }
  f.read("in_channels", c.in_channels);
  c.out_channels = c.in_channels;
  f.read("out_channels", c.out_channels);
  f.read("num_attention_heads", c.num_attention_heads);
  f.read("attention_head_dim", c.attention_head_dim);
  f.read("num_layers", c.num_layers);
  f.read("num_cross_attention_heads", c.num_cross_attention_heads);
  f.read("cross_attention_head_dim", c.cross_attention_head_dim);
  f.read("cross_attention_dim", c.cross_attention_dim);
  f.read("caption_channels", c.caption_channels);
  f.read("mlp_ratio", c.mlp_ratio);
  f.read("dropout", c.dropout);
  f.read("attention_bias", c.attention_bias);
  f.read("sample_size", c.sample_size);
  f.read("patch_size", c.patch_size);
  f.read("norm_elementwise_affine", c.norm_elementwise_affine);
  f.read("norm_eps", c.norm_eps);
  f.read("interpolation_scale", c.interpolation_scale);
  f.read("guidance_embeds", c.guidance_embeds);
  f.read("guidance_embeds_scale", c.guidance_embeds_scale);
  f.read("qk_norm", c.qk_norm);
  f.read("timestep_scale", c.timestep_scale);

  auto positive = [&](const char* key, int v) {
    if (v <= 0) f.fail(key, "must be positive, got " + std::to_string(v));
  };
  positive("in_channels", c.in_channels);
  positive("out_channels", c.out_channels);
  positive("num_attention_heads", c.num_attention_heads);
  positive("attention_head_dim", c.attention_head_dim);
  positive("num_layers", c.num_layers);
  positive("num_cross_attention_heads", c.num_cross_attention_heads);
  positive("cross_attention_head_dim", c.cross_attention_head_dim);
  positive("cross_attention_dim", c.cross_attention_dim);
  positive("caption_channels", c.caption_channels);
  positive("patch_size", c.patch_size);
  if (c.qk_norm && *c.qk_norm != "rms_norm_across_heads")
    f.fail("qk_norm", "is '" + *c.qk_norm + "'; supported: null or \"rms_norm_across_heads\"");
  return c;
}

}  // namespace

SanaTransformerConfig parse_sana_transformer_config(const std::string& text, const std::string& source) {
  return parse_sana_config(text, source, "SanaTransformer2DModel", {});
}

SanaTransformerConfig parse_sana_controlnet_config(const std::string& text, const std::string& source) {
  SanaTransformerConfig defaults;
  defaults.num_layers = 7;  // diffusers' SanaControlNetModel default: a copy of the first 7 blocks
  return parse_sana_config(text, source, "SanaControlNetModel", defaults);
}

SanaTransformerConfig load_sana_controlnet_config(const std::string& path) {
  return parse_sana_controlnet_config(read_text_file(path), path);
}

SanaTransformerConfig load_sana_transformer_config(const std::string& path) {
  return parse_sana_transformer_config(read_text_file(path), path);
}

AutoencoderDCConfig load_autoencoder_dc_config(const std::string& path) {
  const json j = parse_object(read_text_file(path), path);
  const Fields f(j, path);
  AutoencoderDCConfig c;
  if (j.contains("_class_name") && f.require<std::string>("_class_name") != "AutoencoderDC")
    f.fail("_class_name", "is '" + j["_class_name"].get<std::string>() + "', expected AutoencoderDC");
  f.read("in_channels", c.in_channels);
  f.read("latent_channels", c.latent_channels);
  f.read("attention_head_dim", c.attention_head_dim);
  auto int_list = [&](const char* key, std::vector<int>& v) {
    if (!j.contains(key) || j[key].is_null()) return;
    if (!j[key].is_array()) f.fail(key, "must be a list of integers");
    v.clear();
    for (const auto& e : j[key]) {
      if (!e.is_number_integer()) f.fail(key, "must be a list of integers");
      v.push_back(e.get<int>());
    }
  };
  auto scales = [&](const char* key, std::vector<std::vector<int>>& v) {
    if (!j.contains(key) || j[key].is_null()) return;
    if (!j[key].is_array()) f.fail(key, "must be a list of lists of kernel sizes");
    v.clear();
    for (const auto& e : j[key]) {
      if (!e.is_array()) f.fail(key, "must be a list of lists of kernel sizes");
      std::vector<int> ks;
      for (const auto& k : e) {
        if (!k.is_number_integer()) f.fail(key, "kernel sizes must be integers");
        ks.push_back(k.get<int>());
      }
      v.push_back(ks);
    }
  };
  // A string applies to every stage; a list gives one value per stage.
  auto per_stage = [&](const char* key, std::vector<std::string>& v, const std::string& dflt, size_t stages) {
    v.assign(stages, dflt);
    if (!j.contains(key) || j[key].is_null()) return;
    const json& e = j[key];
    if (e.is_string()) {
      v.assign(stages, e.get<std::string>());
    } else if (e.is_array() && e.size() == stages) {
      for (size_t i = 0; i < stages; ++i) {
        if (!e[i].is_string()) f.fail(key, "must be a string or a list of strings");
        v[i] = e[i].get<std::string>();
      }
    } else {
      f.fail(key, "must be a string or a list of " + std::to_string(stages) + " strings");
    }
  };
  int_list("encoder_block_out_channels", c.encoder_block_out_channels);
  int_list("decoder_block_out_channels", c.decoder_block_out_channels);
  int_list("encoder_layers_per_block", c.encoder_layers_per_block);
  int_list("decoder_layers_per_block", c.decoder_layers_per_block);
  scales("encoder_qkv_multiscales", c.encoder_qkv_multiscales);
  scales("decoder_qkv_multiscales", c.decoder_qkv_multiscales);
  const size_t enc = c.encoder_block_out_channels.size(), dec = c.decoder_block_out_channels.size();
  per_stage("encoder_block_types", c.encoder_block_types, "ResBlock", enc);
  per_stage("decoder_block_types", c.decoder_block_types, "ResBlock", dec);
  per_stage("decoder_norm_types", c.decoder_norm_types, "rms_norm", dec);
  per_stage("decoder_act_fns", c.decoder_act_fns, "silu", dec);
  f.read("upsample_block_type", c.upsample_block_type);
  f.read("downsample_block_type", c.downsample_block_type);
  f.read("encoder_out_shortcut", c.encoder_out_shortcut);
  f.read("decoder_in_shortcut", c.decoder_in_shortcut);
  f.read("decoder_conv_act_fn", c.decoder_conv_act_fn);
  f.read("scaling_factor", c.scaling_factor);

  if (c.encoder_layers_per_block.size() != enc || c.encoder_qkv_multiscales.size() != enc)
    f.fail("encoder_layers_per_block", "and encoder_qkv_multiscales need one entry per encoder stage");
  if (c.decoder_layers_per_block.size() != dec || c.decoder_qkv_multiscales.size() != dec)
    f.fail("decoder_layers_per_block", "and decoder_qkv_multiscales need one entry per decoder stage");
  for (const auto& t : c.encoder_block_types)
    if (t != "ResBlock" && t != "EfficientViTBlock") f.fail("encoder_block_types", "has unknown block '" + t + "'");
  for (const auto& t : c.decoder_block_types)
    if (t != "ResBlock" && t != "EfficientViTBlock") f.fail("decoder_block_types", "has unknown block '" + t + "'");
  for (const auto& t : c.decoder_norm_types)
    if (t != "rms_norm") f.fail("decoder_norm_types", "'" + t + "' is not supported (only rms_norm)");
  for (const auto& t : c.decoder_act_fns)
    if (t != "silu" && t != "relu" && t != "gelu") f.fail("decoder_act_fns", "'" + t + "' is not supported");
  if (c.decoder_conv_act_fn != "relu" && c.decoder_conv_act_fn != "silu")
    f.fail("decoder_conv_act_fn", "'" + c.decoder_conv_act_fn + "' is not supported");
  if (c.scaling_factor <= 0) f.fail("scaling_factor", "must be positive");
  return c;
}

Gemma2Config load_gemma2_config(const std::string& path) {
  const json j = parse_object(read_text_file(path), path);
  const Fields f(j, path);
  Gemma2Config c;
  if (j.contains("model_type") && f.require<std::string>("model_type") != "gemma2")
    f.fail("model_type", "is '" + j["model_type"].get<std::string>() + "', expected gemma2");
  f.read("vocab_size", c.vocab_size);
  f.read("hidden_size", c.hidden_size);
  f.read("intermediate_size", c.intermediate_size);
  f.read("num_hidden_layers", c.num_hidden_layers);
  f.read("num_attention_heads", c.num_attention_heads);
  f.read("num_key_value_heads", c.num_key_value_heads);
  f.read("head_dim", c.head_dim);
  f.read("hidden_activation", c.hidden_activation);
  f.read("max_position_embeddings", c.max_position_embeddings);
  f.read("rms_norm_eps", c.rms_norm_eps);
  f.read("rope_theta", c.rope_theta);
  f.read("attention_bias", c.attention_bias);
  f.read("query_pre_attn_scalar", c.query_pre_attn_scalar);
  // null is meaningful for these two: no sliding window / no soft-capping.
  if (j.contains("sliding_window")) f.read("sliding_window", c.sliding_window);
  if (j.contains("attn_logit_softcapping")) f.read("attn_logit_softcapping", c.attn_logit_softcapping);
  f.read("pad_token_id", c.pad_token_id);
  f.read("eos_token_id", c.eos_token_id);
  f.read("bos_token_id", c.bos_token_id);
  f.read("torch_dtype", c.torch_dtype);
  if (c.num_key_value_heads <= 0 || c.num_attention_heads % c.num_key_value_heads != 0)
    f.fail("num_key_value_heads", "must divide num_attention_heads");
  if (c.hidden_activation != "gelu_pytorch_tanh" && c.hidden_activation != "gelu")
    f.fail("hidden_activation", "is '" + c.hidden_activation + "'; supported: gelu_pytorch_tanh, gelu");
  return c;
}

SCMSchedulerConfig load_scm_scheduler_config(const std::string& path) {
  const json j = parse_object(read_text_file(path), path);
  const Fields f(j, path);
  SCMSchedulerConfig c;
  f.read("num_train_timesteps", c.num_train_timesteps);
  f.read("prediction_type", c.prediction_type);
  f.read("sigma_data", c.sigma_data);
  if (c.prediction_type != "trigflow")
    f.fail("prediction_type", "is '" + c.prediction_type + "'; SCMScheduler supports only \"trigflow\"");
  if (c.sigma_data <= 0) f.fail("sigma_data", "must be positive");
  return c;
}

ModelIndex load_model_index(const std::string& path) {
  const json j = parse_object(read_text_file(path), path);
  const Fields f(j, path);
  ModelIndex index;
  index.class_name = f.require<std::string>("_class_name");
  for (const auto& [key, value] : j.items()) {
    if (key.empty() || key[0] == '_') continue;
    // Components are ["library", "Class"]; other values (null, flags such as requires_safety_checker) are not.
    if (!value.is_array()) continue;
    if (value.size() != 2 || !value[0].is_string() || !value[1].is_string())
      f.fail(key, "must be [\"library\", \"ClassName\"], got " + value.dump());
    index.components[key] = {value[0].get<std::string>(), value[1].get<std::string>()};
  }
  return index;
}

}  // namespace sana
