#pragma once
// The pipelines' common ground (docs/ARCHITECTURE.md, "Pipelines"): the components a pipeline folder holds, the
// interface every pipeline implements, and the loader that picks the pipeline a folder's model_index.json names.
//
//   SanaSprintPipeline  (sana_sprint.h)  the 1-4 step student: SCM sampler, embedded guidance; img2img
//   SanaPipeline        (sana.h)         the flow-matching teacher: flow-ODE solver, real classifier-free guidance
// Both run a ControlNet when the components hold one and the call gives a control image.
//
// A pipeline is built from loaded folders (from_pretrained) or from components already in memory (the trainers'
// sample grids hand it the model they are training, and prompt embeddings instead of a text encoder).
#include <ATen/ATen.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sana/models/autoencoder_tiny.h"
#include "sana/models/dcae.h"
#include "sana/models/gemma2.h"
#include "sana/models/sana_controlnet.h"
#include "sana/models/sana_transformer.h"
#include "sana/nn/lora.h"
#include "sana/nn/quantize.h"
#include "sana/pipeline/options.h"
#include "sana/pipeline/prefix_cache.h"
#include "sana/text/tokenizer.h"

namespace sana {

// A LoRA file and the factor on it (docs/LORA.md).
struct LoraSpec {
  std::string path;
  double scale = 1;
  bool operator==(const LoraSpec& o) const { return path == o.path && scale == o.scale; }
  bool operator!=(const LoraSpec& o) const { return !(*this == o); }
};
// "FILE" or "FILE:SCALE" (SCALE a number; a path that itself holds ':' needs the explicit ":1"). Error naming `field`.
LoraSpec parse_lora_spec(const std::string& text, const std::string& field = "lora");
// Error naming `field` unless |scale| <= 10 (beyond that a LoRA only breaks the image).
void check_lora_scale(double scale, const std::string& lora, const std::string& field);

struct PipelineComponents {
  std::shared_ptr<GemmaTokenizer> tokenizer;   // may be null when every call passes prompt embeddings
  std::shared_ptr<Gemma2Model> text_encoder;   // likewise
  std::shared_ptr<SanaTransformer2DModel> transformer;
  std::shared_ptr<AutoencoderDC> vae;
  std::shared_ptr<SanaControlNetModel> controlnet;  // optional
  std::shared_ptr<AutoencoderTiny> tiny_vae;        // optional preview decoder (GenerateOptions::tiny_decode)
  at::Device device = at::kCPU;
  // The text encoder's instruction prefix, computed once and shared by every call (prefix_cache.h).
  std::shared_ptr<TextEncoderPrefixCache> prefix_cache = std::make_shared<TextEncoderPrefixCache>();

  // Loads tokenizer/, text_encoder/, transformer/ and vae/ of a diffusers pipeline folder, and controlnet/ when
  // model_index.json lists it, and the tiny preview decoder vae_tiny/ when the folder has one (model_index.json does
  // not list it: diffusers would not know what to do with it); errors name the missing folder. A non-empty `vae_dir`
  // (an AutoencoderDC folder, as diffusers' `vae=` argument) is loaded instead of vae/, after check_vae_fits.
  // `vae_dtype` (default: `dtype`) is the VAE's own dtype (--dtype auto may choose one per stage).
  static PipelineComponents from_pretrained(const std::string& dir, const at::Device& device, at::ScalarType dtype,
                                            const std::string& vae_dir = "",
                                            std::optional<at::ScalarType> vae_dtype = std::nullopt);

  // Loads a SanaControlNetModel folder (config.json + weights) as this pipeline's ControlNet, after checking that
  // it fits the transformer (errors name the folder and the mismatch).
  void attach_controlnet(const std::string& dir, at::ScalarType dtype);

  // Loads an AutoencoderTiny folder as the preview decoder, after checking that it decodes this pipeline's latents
  // (latent channels and spatial factor of the VAE); errors name the folder and the mismatch.
  void attach_tiny_vae(const std::string& dir, at::ScalarType dtype);

  // Drops the tokenizer, the text encoder and its prefix cache and hands the freed memory back to the system
  // (release_free_memory), for a process that makes one call: the text encoder is most of the weights (Gemma-2-2B
  // is 4.9 of the 0.6B pipeline's 6.3 GiB in bf16) and is not needed once the call's text is embedded
  // (Pipeline::embed_text). Later calls must then pass prompt embeddings.
  void release_text_encoder();

  // Makes the large matrix weights of the text encoder, the transformer and the ControlNet int8 (nn/quantize.h);
  // the VAE keeps its dtype. Returns the sum over the components.
  nn::QuantizeReport quantize_int8(const nn::QuantizeSettings& settings);

  // Applies a LoRA file (io/lora_file.h) to the transformer and, for its controlnet tensors, the ControlNet: fused
  // into floating weights, on the side path for int8 ones or when `side` (nn/lora.h). Errors name the file and the
  // tensor, and leave the weights as they were.
  nn::LoraReport apply_lora(const LoraSpec& spec, bool side = false);
  // Undoes every LoRA: fused weights restored bit for bit, side paths cleared.
  void remove_loras();

  // Latent spatial factor (32 for the real DC-AE).
  int vae_scale_factor() const { return vae->config().spatial_factor(); }
};

class Pipeline {
 public:
  explicit Pipeline(PipelineComponents components) : components(std::move(components)) {}
  virtual ~Pipeline() = default;

  virtual GenerateResult generate(const GenerateOptions& options, const ProgressFn& progress = nullptr) const = 0;

  // diffusers' pipeline class name ("SanaSprintPipeline", "SanaPipeline").
  virtual std::string class_name() const = 0;
  // How `options` is sampled, for the PNG parameters text ("SCM", "dpm++2m + CFG").
  virtual std::string sampler_name(const GenerateOptions& options) const = 0;

  // What the pipeline does, for front ends to ask (rather than read its transformer's config).
  struct Capabilities {
    bool classifier_free_guidance = false;  // a second pass with a negative prompt (teachers); Sprint embeds guidance
    bool init_image = false;                // img2img
    std::vector<std::string> samplers;      // its samplers by GenerateOptions::sampler's names
  };
  virtual Capabilities capabilities() const = 0;

  // A caller's text encoder: one prompt and its options -> {embeds [1, L, C], mask [1, L]} (e.g. a cache in front of
  // encode_prompt, as the server's).
  using TextEncoder = std::function<std::pair<at::Tensor, at::Tensor>(const std::string&, const PromptOptions&)>;
  // Runs the text encoder for `options` now and stores what it gives in them (prompt_embeds and its mask; a teacher
  // with classifier-free guidance also its negative prompt's, by its own rule), so that a one-call process can release
  // the text encoder before the transformer and the decoder run, and a server can cache embeddings. Generating from
  // the filled options gives the same images. `encode` replaces encode_prompt when given.
  virtual void embed_text(GenerateOptions& options, const TextEncoder& encode = nullptr) const;

  // Tokenise + text encoder + SANA's token selection: {embeds [B, max_sequence_length, C], mask}.
  std::pair<at::Tensor, at::Tensor> encode_prompt(const std::vector<std::string>& prompts,
                                                  const PromptOptions& options) const;

  PipelineComponents components;
};

// Error naming `stage` ("text encoder", "step 2/4", "vae decode") when `t` holds a NaN or an infinity: broken
// weights or settings give an error, not a black image.
void require_finite(const at::Tensor& t, const std::string& stage);

// The same for the sampling loop's steps without reading a value back to the host inside a step (which would stall a
// GPU every step): each step's flag stays on the device, and check() reads them all after the loop, naming the first
// step that went wrong.
class StepFiniteness {
 public:
  void add(const at::Tensor& t, std::string stage) {
    flags_.push_back(at::isfinite(t).all());
    stages_.push_back(std::move(stage));
  }
  void check() const;

 private:
  std::vector<at::Tensor> flags_;
  std::vector<std::string> stages_;
};

// Error unless the AutoencoderDC config `vae` (folder `vae_dir`) encodes the latent space of `pipeline_dir`: as many
// latent channels as its transformer reads and writes, and, when the folder has its own vae/, the same spatial factor
// and scaling factor (DC-AE-Lite shares DC-AE's encoder and latent space, so it passes; a VAE of another space would
// decode noise). Reads configs only.
void check_vae_fits(const AutoencoderDCConfig& vae, const std::string& vae_dir, const std::string& pipeline_dir);

// What load_pipeline attaches or swaps besides the folder's own components.
struct PipelineLoadOptions {
  std::string controlnet_dir;  // a SanaControlNetModel folder to attach
  std::string vae_dir;         // an AutoencoderDC folder used instead of the folder's vae/ (DC-AE-Lite, ...)
  std::string tiny_vae_dir;    // an AutoencoderTiny folder used instead of the folder's vae_tiny/
  std::optional<at::ScalarType> vae_dtype;  // the VAE's and tiny decoder's dtype when not the pipeline's
  std::string quantize;        // "" | int8 | w8a8: PipelineComponents::quantize_int8 after loading
  int64_t quantize_min_weights = nn::QuantizeSettings{}.min_weights;
  std::vector<LoraSpec> loras;  // fused before quantizing (on the side path when the folder's weights are int8)
};

// The pipeline of a diffusers folder: SanaSprintPipeline / SanaSprintImg2ImgPipeline for a Sprint transformer (it
// has a guidance embedding), SanaPipeline / SanaControlNetPipeline for a teacher's; a `controlnet` component is
// loaded with it, and `load.controlnet_dir` (a SanaControlNetModel folder) attaches one; `load.vae_dir` replaces the
// VAE; `load.loras` are applied; `load.quantize` makes the weights int8. Errors name the missing file, folder or component.
std::unique_ptr<Pipeline> load_pipeline(const std::string& dir, const at::Device& device, at::ScalarType dtype,
                                        const PipelineLoadOptions& load = {});

}  // namespace sana
