#pragma once
// diffusers / transformers config files parsed into typed structs.
// Defaults are the reference class defaults; unknown keys are ignored; a key of the wrong JSON type, or a missing
// required key, is an Error naming the file and the key.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sana {

// diffusers SanaTransformer2DModel (transformer/config.json).
struct SanaTransformerConfig {
  int in_channels = 32;
  int out_channels = 32;  // null in the file means in_channels
  int num_attention_heads = 70;
  int attention_head_dim = 32;
  int num_layers = 20;
  int num_cross_attention_heads = 20;
  int cross_attention_head_dim = 112;
  int cross_attention_dim = 2240;
  int caption_channels = 2304;
  double mlp_ratio = 2.5;
  double dropout = 0.0;
  bool attention_bias = false;
  int sample_size = 32;
  int patch_size = 1;
  bool norm_elementwise_affine = false;
  double norm_eps = 1e-6;
  std::optional<double> interpolation_scale;  // non-null selects a sin-cos positional embedding
  bool guidance_embeds = false;                // SANA-Sprint: timestep + guidance embedding
  double guidance_embeds_scale = 0.1;          // applied by the pipeline, not the model
  std::optional<std::string> qk_norm;          // "rms_norm_across_heads" (SANA-Sprint) or none
  double timestep_scale = 1.0;                 // read by the teacher pipeline only

  int inner_dim() const { return num_attention_heads * attention_head_dim; }
  int cross_inner_dim() const { return num_cross_attention_heads * cross_attention_head_dim; }
  int ff_hidden() const { return static_cast<int>(mlp_ratio * inner_dim()); }  // int() truncation as in Python
};

// diffusers AutoencoderDC (vae/config.json). Per-stage lists; a single string in the file applies to all stages.
struct AutoencoderDCConfig {
  int in_channels = 3;
  int latent_channels = 32;
  int attention_head_dim = 32;
  std::vector<std::string> encoder_block_types;  // default "ResBlock" for every stage
  std::vector<std::string> decoder_block_types;
  std::vector<int> encoder_block_out_channels = {128, 256, 512, 512, 1024, 1024};
  std::vector<int> decoder_block_out_channels = {128, 256, 512, 512, 1024, 1024};
  std::vector<int> encoder_layers_per_block = {2, 2, 2, 3, 3, 3};
  std::vector<int> decoder_layers_per_block = {3, 3, 3, 3, 3, 3};
  std::vector<std::vector<int>> encoder_qkv_multiscales = {{}, {}, {}, {5}, {5}, {5}};
  std::vector<std::vector<int>> decoder_qkv_multiscales = {{}, {}, {}, {5}, {5}, {5}};
  std::string upsample_block_type = "pixel_shuffle";    // "interpolate": nearest x2 + conv
  std::string downsample_block_type = "pixel_unshuffle";  // anything else: stride-2 conv
  std::vector<std::string> decoder_norm_types;  // default "rms_norm"
  std::vector<std::string> decoder_act_fns;     // default "silu"
  bool encoder_out_shortcut = true;
  bool decoder_in_shortcut = true;
  std::string decoder_conv_act_fn = "relu";
  double scaling_factor = 1.0;

  // Spatial compression factor: 2^(stages - 1).
  int spatial_factor() const { return 1 << (static_cast<int>(decoder_block_out_channels.size()) - 1); }
};

// diffusers AutoencoderTiny (TAESD; docs/DECODERS.md): only the decoder is read. Stage i runs num_decoder_blocks[i]
// blocks of decoder_block_out_channels[i] channels, then (except the last) an upsampling and a 3x3 convolution to
// stage i+1's channels. With equal channels that is diffusers' DecoderTiny; with falling ones (256, 128, 64, ...) it
// is madebyollin's F32 decoder of TAESANA, which diffusers' class cannot express.
struct AutoencoderTinyConfig {
  int out_channels = 3;
  int latent_channels = 4;
  std::vector<int> decoder_block_out_channels = {64, 64, 64, 64};
  std::vector<int> num_decoder_blocks = {3, 3, 3, 1};
  int upsampling_scaling_factor = 2;
  std::string act_fn = "relu";
  std::string upsample_fn = "nearest";
  double scaling_factor = 1.0;  // 1: it decodes the latents the transformer works in, as TAESD does

  // Spatial factor: upsampling_scaling_factor^(stages - 1).
  int spatial_factor() const;
};

// transformers Gemma2Config (text_encoder/config.json). Defaults: Gemma2Config() = gemma-2-2b.
struct Gemma2Config {
  int vocab_size = 256000;
  int hidden_size = 2304;
  int intermediate_size = 9216;
  int num_hidden_layers = 26;
  int num_attention_heads = 8;
  int num_key_value_heads = 4;
  int head_dim = 256;
  std::string hidden_activation = "gelu_pytorch_tanh";
  int max_position_embeddings = 8192;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool attention_bias = false;
  double query_pre_attn_scalar = 256;
  std::optional<int> sliding_window = 4096;            // on the even layers
  std::optional<double> attn_logit_softcapping = 50.0;
  std::optional<double> final_logit_softcapping = 30.0;  // the causal-LM head's (Gemma2ForCausalLM); not the encoder's
  int pad_token_id = 0, eos_token_id = 1, bos_token_id = 2;
  std::string torch_dtype = "float32";
};

// diffusers SCMScheduler (scheduler/scheduler_config.json).
struct SCMSchedulerConfig {
  int num_train_timesteps = 1000;
  std::string prediction_type = "trigflow";
  double sigma_data = 0.5;
};

// model_index.json: pipeline class and, per component folder, (library, class).
struct ModelIndex {
  std::string class_name;
  std::map<std::string, std::pair<std::string, std::string>> components;
};

SanaTransformerConfig parse_sana_transformer_config(const std::string& json_text, const std::string& source);
SanaTransformerConfig load_sana_transformer_config(const std::string& path);
// diffusers SanaControlNetModel (controlnet/config.json): the transformer's keys, num_layers 7 by default. diffusers'
// class has no qk_norm or guidance_embeds keys; ours reads them, so a ControlNet can copy a Sprint student's blocks.
SanaTransformerConfig parse_sana_controlnet_config(const std::string& json_text, const std::string& source);
SanaTransformerConfig load_sana_controlnet_config(const std::string& path);
Gemma2Config load_gemma2_config(const std::string& path);
AutoencoderDCConfig load_autoencoder_dc_config(const std::string& path);
AutoencoderTinyConfig load_autoencoder_tiny_config(const std::string& path);
SCMSchedulerConfig load_scm_scheduler_config(const std::string& path);
ModelIndex load_model_index(const std::string& path);

// Reads a whole file (text or bytes): regular files only (a named pipe or device is an Error, not a hang), at most
// `max_bytes`. Errors name the file.
std::string read_text_file(const std::string& path, uint64_t max_bytes = uint64_t{1} << 30);

}  // namespace sana
