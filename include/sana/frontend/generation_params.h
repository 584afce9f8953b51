#pragma once
// One set of generation parameters for every front end (docs/ARCHITECTURE.md, "Front ends"): the CLI's `generate`
// and `eval -m`, and the server. Each front end fills a GenerationParams from its own spelling (flags, JSON fields),
// then this module applies the model folder's generation_defaults.json to what the user did not give, validates,
// and turns the result into the pipeline's GenerateOptions and the PNG parameters text.
//
// Errors are ParamErrors naming the *field* ("steps"); a front end rewrites the field into its own spelling
// ("--steps", the JSON key) before showing the message.
#include <ATen/ATen.h>

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <set>
#include <string>
#include <vector>

#include "sana/error.h"
#include "sana/io/image.h"
#include "sana/nn/int8.h"
#include "sana/pipeline/options.h"
#include "sana/pipeline/pipeline.h"

namespace sana {

struct GenerationParams {
  std::string model;            // pipeline folder
  std::string prompt;
  std::string negative_prompt;  // flow teachers' CFG
  int width = 1024, height = 1024;
  int steps = 2;
  int64_t seed = 42;            // -1: a random seed (resolve_seed)
  double guidance = 4.5;
  int batch_count = 1;          // images of the prompt, in one batch
  int max_sequence_length = 300;
  double max_timesteps = 1.57080;         // Sprint schedule: first TrigFlow time
  double intermediate_timesteps = 1.3;    // Sprint schedule: middle time of 2 steps
  std::vector<double> timesteps;          // custom Sprint schedule, steps + 1 values ending in 0
  bool complex_human_instruction = true;  // prepend SANA's instruction to the prompt
  bool resolution_binning = true;
  bool vae_tiling = false;
  std::string sampler;          // flow teachers: "" (the folder's scheduler) | euler | dpm++2m
  std::string device = "cpu", dtype = "fp32";  // dtype: fp32 | bf16 | fp16 | auto (per stage, the faster)
  // ControlNet: the control image (a PNG, JPEG or WebP path on the command line, inline data in JSON APIs), how to prepare it, the
  // factor on its residuals, and a SanaControlNetModel folder to attach to a model that has none.
  std::string control_image;
  std::string control_preprocess = "none";  // none | invert (black strokes on white -> white on black) | canny
  double control_scale = 1.0;
  std::string controlnet;
  // An AutoencoderDC folder used instead of the model's vae/ (DC-AE-Lite: the same latent space, a faster decoder).
  std::string vae;
  // The decoder of this call: "full" (the VAE) | "tiny" (the preview decoder: the model's vae_tiny/, or `tiny_vae`).
  std::string decoder = "full";
  std::string tiny_vae;  // an AutoencoderTiny folder used instead of the model's vae_tiny/
  // int8 weights for the text encoder, transformer and ControlNet: "" | int8 (weight-only) | w8a8 (CPU int8 products).
  std::string quantize;
  int64_t quantize_min_weights = nn::kDefaultQuantizeMinWeights;  // layers with fewer weights stay as they are
  // LoRA files fused into the weights at load, "FILE" or "FILE:SCALE" (docs/LORA.md). Not a JSON field: a server
  // loads its model once.
  std::vector<std::string> lora;
  // img2img (Sprint models): the init image (same forms as control_image) and the share of the schedule it runs.
  std::string init_image;
  double strength = 0.6;
};

// Limits that validate() enforces (also what the server reports in its 400/413 answers).
struct GenerationLimits {
  static constexpr int max_side = 8192;
  static constexpr int max_steps = 1000;
  static constexpr int max_batch_count = 64;
  static constexpr int max_sequence_length = 2048;
  static constexpr size_t max_prompt_bytes = 20000;
  static constexpr double max_guidance = 100;
  static constexpr double max_control_scale = 10;
};

// An error in one field. what() is "<field>: <message>"; front ends build their own text from field() and message().
class ParamError : public Error {
 public:
  ParamError(std::string field, std::string message);
  const std::string& field() const { return field_; }
  const std::string& message() const { return message_; }

 private:
  std::string field_, message_;
};

using FieldSet = std::set<std::string>;

// Canonical field names, in declaration order.
const std::vector<std::string>& generation_param_fields();

// Sets every field present in the JSON object (canonical names, or the diffusers names num_inference_steps,
// guidance_scale, num_images_per_prompt, use_complex_human_instruction) except those in `skip`, with strict types:
// an integer field takes only integral numbers in range, a bool only true/false. Unknown keys are ParamErrors unless
// `allow_unknown`. Returns the canonical names it set.
FieldSet set_params_from_json(GenerationParams& params, const nlohmann::json& object, const FieldSet& skip = {},
                              bool allow_unknown = false);

// The model folder's generation_defaults.json (written by the trainers), applied to the fields not in `given`.
// A folder without the file changes nothing. Errors name the file and the key.
void apply_model_defaults(GenerationParams& params, const FieldSet& given);

// Checks every field against its rule and the limits; a ParamError names the first field at fault.
void validate(const GenerationParams& params);
// The size rule that needs the model: width and height multiples of the folder's VAE factor (read from
// vae/config.json, before any weights are loaded).
void validate_for_model(const GenerationParams& params);

// How `params` loads its pipeline: the ControlNet and VAE folders, LoRAs and quantization (load_pipeline's options),
// and with dtype "auto" the VAE's own dtype.
PipelineLoadOptions load_options(const GenerationParams& params);
// The pipeline's dtype (load_pipeline's): `dtype` parsed, or with "auto" the probe's choice for the text encoder and
// transformer (pipeline/dtype_auto.h). `how`, when given, gets the probe's one-line account ("" without auto).
at::ScalarType load_dtype(const GenerationParams& params, std::string* how = nullptr);

// Replaces a seed of -1 with a random one; returns the seed.
int64_t resolve_seed(GenerationParams& params);

// The pipeline call for `params` (seed already resolved). Control and init images are loaded and prepared here:
// `allow_files` lets their sources be file paths (the CLI); otherwise they must be inline data. Input images with a
// side over `max_image_side` are refused before they are decoded (a server's bound on memory per request).
GenerateOptions to_generate_options(const GenerationParams& params, bool allow_files = true,
                                    int max_image_side = kMaxImageSide);
// The same with the control and init images already decoded ([3, H, W] in [0, 1]; undefined: none), as an embedding
// program hands them over (the C API): the params' control_image and init_image sources are not read.
GenerateOptions to_generate_options(const GenerationParams& params, const at::Tensor& control_image,
                                    const at::Tensor& init_image);
// The control image as the ControlNet expects it, white strokes on black: `preprocess` none | invert (a canvas
// drawing, black on white, turned around) | canny (the edges of a photo).
at::Tensor prepare_control_image(const at::Tensor& image, const std::string& preprocess);

// The PNG "parameters" text of image `index` of a call (A1111's layout: the prompt, then "Key: value, ...").
std::string png_parameters(const GenerationParams& params, const std::string& sampler, const at::Tensor& timesteps,
                           int64_t index, const std::string& software);

}  // namespace sana
