#include "sana/io/config.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
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
      // Checked, not wrapped: 4294967302 is not 6.
      if (!v.is_number_integer()) fail(key, "must be an integer, got " + v.dump());
      const bool fits = v.is_number_unsigned()
                            ? v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max())
                            : v.get<int64_t>() >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
                                  v.get<int64_t>() <= static_cast<int64_t>(std::numeric_limits<T>::max());
      if (!fits) fail(key, "is " + v.dump() + ", out of range");
      return static_cast<T>(v.get<int64_t>());
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!v.is_number()) fail(key, "must be a number, got " + v.dump());
      const T x = v.get<T>();
      if (!std::isfinite(x)) fail(key, "must be a finite number, got " + v.dump());
      return x;
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

// A list of integers (kept as the default when absent or null).
void read_int_list(const json& j, const Fields& f, const char* key, std::vector<int>& v) {
  if (!j.contains(key) || j[key].is_null()) return;
  if (!j[key].is_array()) f.fail(key, "must be a list of integers");
  v.clear();
  for (const auto& e : j[key]) {
    if (!e.is_number_integer() || e.get<int64_t>() < -(1 << 30) || e.get<int64_t>() > (1 << 30))
      f.fail(key, "must be a list of integers");
    v.push_back(static_cast<int>(e.get<int64_t>()));
  }
}

// Dimensions that would divide by zero, shift by an undefined amount or allocate without bound.
void check_autoencoder_dims(const AutoencoderDCConfig& c, const Fields& f) {
  auto in_range = [&](const char* key, int v, int lo, int hi) {
    if (v < lo || v > hi)
      f.fail(key, "has " + std::to_string(v) + ", expected " + std::to_string(lo) + ".." + std::to_string(hi));
  };
  in_range("in_channels", c.in_channels, 1, 64);
  in_range("latent_channels", c.latent_channels, 1, 4096);
  in_range("attention_head_dim", c.attention_head_dim, 1, 4096);
  for (const auto* list : {&c.encoder_block_out_channels, &c.decoder_block_out_channels}) {
    const char* key = list == &c.encoder_block_out_channels ? "encoder_block_out_channels" : "decoder_block_out_channels";
    in_range(key, static_cast<int>(list->size()), 1, 12);  // 2^11: a factor far above DC-AE's 32
    for (int ch : *list) in_range(key, ch, 1, 1 << 15);
  }
  for (const auto* list : {&c.encoder_layers_per_block, &c.decoder_layers_per_block})
    for (int n : *list) in_range(list == &c.encoder_layers_per_block ? "encoder_layers_per_block" : "decoder_layers_per_block", n, 0, 64);
  for (const auto* scales : {&c.encoder_qkv_multiscales, &c.decoder_qkv_multiscales})
    for (const auto& ks : *scales)
      for (int k : ks) in_range("qkv_multiscales", k, 1, 31);
}

}  // namespace

std::string read_text_file(const std::string& path, uint64_t max_bytes) {
  // Only regular files: a named pipe or a device would block or never end.
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) throw Error("cannot read " + path + ": no such file");
  if (!std::filesystem::is_regular_file(status)) throw Error("cannot read " + path + ": not a regular file");
  const uint64_t size = std::filesystem::file_size(path, ec);
  if (!ec && size > max_bytes)
    throw Error("cannot read " + path + ": " + std::to_string(size) + " bytes, more than the limit of " +
                std::to_string(max_bytes));
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
  positive("sample_size", c.sample_size);
  // Bounds far above any real model, below what would overflow a size computation or exhaust memory silently.
  auto at_most = [&](const char* key, int v, int limit) {
    if (v > limit) f.fail(key, "is " + std::to_string(v) + ", more than the limit of " + std::to_string(limit));
  };
  at_most("num_layers", c.num_layers, 1024);
  for (const auto& [key, v] : {std::pair<const char*, int>{"in_channels", c.in_channels}, {"out_channels", c.out_channels},
                               {"caption_channels", c.caption_channels}, {"cross_attention_dim", c.cross_attention_dim}})
    at_most(key, v, 1 << 16);
  at_most("patch_size", c.patch_size, 64);
  if (static_cast<int64_t>(c.num_attention_heads) * c.attention_head_dim > (1 << 16))
    f.fail("num_attention_heads", "times attention_head_dim is more than the limit of 65536");
  if (static_cast<int64_t>(c.num_cross_attention_heads) * c.cross_attention_head_dim > (1 << 16))
    f.fail("num_cross_attention_heads", "times cross_attention_head_dim is more than the limit of 65536");
  if (!(c.mlp_ratio > 0) || c.mlp_ratio > 64 || c.ff_hidden() < 1)
    f.fail("mlp_ratio", "must be positive and at most 64 (and give at least one hidden channel)");
  if (!(c.norm_eps > 0)) f.fail("norm_eps", "must be positive");
  if (!(c.dropout >= 0 && c.dropout < 1)) f.fail("dropout", "must be in [0, 1)");
  if (!(c.timestep_scale > 0)) f.fail("timestep_scale", "must be positive");
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
  auto int_list = [&](const char* key, std::vector<int>& v) { read_int_list(j, f, key, v); };
  auto scales = [&](const char* key, std::vector<std::vector<int>>& v) {
    if (!j.contains(key) || j[key].is_null()) return;
    if (!j[key].is_array()) f.fail(key, "must be a list of lists of kernel sizes");
    v.clear();
    for (const auto& e : j[key]) {
      if (!e.is_array()) f.fail(key, "must be a list of lists of kernel sizes");
      std::vector<int> ks;
      for (const auto& k : e) {
        if (!k.is_number_integer() || k.get<int64_t>() < 0 || k.get<int64_t>() > 1024)
          f.fail(key, "kernel sizes must be integers in 1..31");
        ks.push_back(static_cast<int>(k.get<int64_t>()));
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
  if (!(c.scaling_factor >= 1e-6 && c.scaling_factor <= 1e6)) f.fail("scaling_factor", "must be in [1e-6, 1e6]");
  check_autoencoder_dims(c, f);
  return c;
}

int AutoencoderTinyConfig::spatial_factor() const {
  int f = 1;
  for (size_t i = 1; i < decoder_block_out_channels.size(); ++i) f *= upsampling_scaling_factor;
  return f;
}

AutoencoderTinyConfig load_autoencoder_tiny_config(const std::string& path) {
  const json j = parse_object(read_text_file(path), path);
  const Fields f(j, path);
  AutoencoderTinyConfig c;
  if (j.contains("_class_name") && f.require<std::string>("_class_name") != "AutoencoderTiny")
    f.fail("_class_name", "is '" + j["_class_name"].get<std::string>() + "', expected AutoencoderTiny");
  f.read("out_channels", c.out_channels);
  f.read("latent_channels", c.latent_channels);
  read_int_list(j, f, "decoder_block_out_channels", c.decoder_block_out_channels);
  read_int_list(j, f, "num_decoder_blocks", c.num_decoder_blocks);
  f.read("upsampling_scaling_factor", c.upsampling_scaling_factor);
  f.read("act_fn", c.act_fn);
  f.read("upsample_fn", c.upsample_fn);
  f.read("scaling_factor", c.scaling_factor);
  auto in_range = [&](const char* key, int v, int lo, int hi) {
    if (v < lo || v > hi)
      f.fail(key, "has " + std::to_string(v) + ", expected " + std::to_string(lo) + ".." + std::to_string(hi));
  };
  in_range("out_channels", c.out_channels, 1, 64);
  in_range("latent_channels", c.latent_channels, 1, 4096);
  in_range("upsampling_scaling_factor", c.upsampling_scaling_factor, 1, 8);
  const size_t stages = c.decoder_block_out_channels.size();
  in_range("decoder_block_out_channels", static_cast<int>(stages), 1, 8);
  for (int ch : c.decoder_block_out_channels) in_range("decoder_block_out_channels", ch, 1, 1 << 14);
  if (c.num_decoder_blocks.size() != stages)
    f.fail("num_decoder_blocks", "needs one entry per decoder stage (" + std::to_string(stages) + ")");
  for (int n : c.num_decoder_blocks) in_range("num_decoder_blocks", n, 0, 64);
  if (c.spatial_factor() > 64) f.fail("upsampling_scaling_factor", "gives a factor above 64");
  if (c.act_fn != "relu") f.fail("act_fn", "'" + c.act_fn + "' is not supported (only relu)");
  if (c.upsample_fn != "nearest") f.fail("upsample_fn", "'" + c.upsample_fn + "' is not supported (only nearest)");
  if (j.contains("use_midblock_gn") && f.require<bool>("use_midblock_gn"))
    f.fail("use_midblock_gn", "is true; the group-normed middle block is not supported");
  if (!(c.scaling_factor >= 1e-6 && c.scaling_factor <= 1e6)) f.fail("scaling_factor", "must be in [1e-6, 1e6]");
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
  // null is meaningful for these: no sliding window / no soft-capping.
  if (j.contains("sliding_window")) f.read("sliding_window", c.sliding_window);
  if (j.contains("attn_logit_softcapping")) f.read("attn_logit_softcapping", c.attn_logit_softcapping);
  if (j.contains("final_logit_softcapping")) f.read("final_logit_softcapping", c.final_logit_softcapping);
  f.read("pad_token_id", c.pad_token_id);
  f.read("eos_token_id", c.eos_token_id);
  f.read("bos_token_id", c.bos_token_id);
  f.read("torch_dtype", c.torch_dtype);
  auto in_range = [&](const char* key, int v, int lo, int hi) {
    if (v < lo || v > hi)
      f.fail(key, "has " + std::to_string(v) + ", expected " + std::to_string(lo) + ".." + std::to_string(hi));
  };
  in_range("vocab_size", c.vocab_size, 1, 1 << 24);
  in_range("hidden_size", c.hidden_size, 1, 1 << 16);
  in_range("intermediate_size", c.intermediate_size, 1, 1 << 18);
  in_range("num_hidden_layers", c.num_hidden_layers, 1, 1024);
  in_range("num_attention_heads", c.num_attention_heads, 1, 1024);
  in_range("head_dim", c.head_dim, 1, 4096);
  in_range("max_position_embeddings", c.max_position_embeddings, 1, 1 << 20);
  if (c.num_key_value_heads <= 0 || c.num_attention_heads % c.num_key_value_heads != 0)
    f.fail("num_key_value_heads", "must divide num_attention_heads");
  if (!(c.rms_norm_eps > 0)) f.fail("rms_norm_eps", "must be positive");
  if (!(c.rope_theta > 0)) f.fail("rope_theta", "must be positive");
  if (!(c.query_pre_attn_scalar > 0)) f.fail("query_pre_attn_scalar", "must be positive");
  if (c.sliding_window && *c.sliding_window < 1) f.fail("sliding_window", "must be positive or null");
  if (c.attn_logit_softcapping && !(*c.attn_logit_softcapping > 0))
    f.fail("attn_logit_softcapping", "must be positive or null");
  if (c.final_logit_softcapping && !(*c.final_logit_softcapping > 0))
    f.fail("final_logit_softcapping", "must be positive or null");
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
  if (!(c.sigma_data >= 1e-6 && c.sigma_data <= 1e6)) f.fail("sigma_data", "must be in [1e-6, 1e6]");
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
