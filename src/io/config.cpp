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

SanaTransformerConfig parse_sana_transformer_config(const std::string& text, const std::string& source) {
  const json j = parse_object(text, source);
  const Fields f(j, source);
  SanaTransformerConfig c;
  if (j.contains("_class_name")) {
    const auto cls = f.require<std::string>("_class_name");
    if (cls != "SanaTransformer2DModel") f.fail("_class_name", "is '" + cls + "', expected SanaTransformer2DModel");
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

SanaTransformerConfig load_sana_transformer_config(const std::string& path) {
  return parse_sana_transformer_config(read_text_file(path), path);
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
