#pragma once
// SanaSprintPipeline: prompt -> image in 1-4 steps (ARCHITECTURE.md §6), reproducing diffusers' SanaSprintPipeline
// for the same seed: the initial latents are drawn first from one CPU generator, then one draw per sampler step.
#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sana/diffusion/flow_sampler.h"
#include "sana/diffusion/scm_scheduler.h"
#include "sana/models/dcae.h"
#include "sana/models/gemma2.h"
#include "sana/models/sana_transformer.h"
#include "sana/text/prompt.h"
#include "sana/text/tokenizer.h"

namespace sana {

struct GenerateOptions {
  std::vector<std::string> prompts;
  int num_images_per_prompt = 1;
  int height = 1024, width = 1024;
  SCMTimestepOptions schedule;          // steps 2 with intermediate 1.3 is the reference default
  double guidance_scale = 4.5;          // distilled guidance: embedded, one forward per step
  uint64_t seed = 0;
  PromptOptions prompt;
  // Generate at the nearest trained aspect-ratio bin (1024-px models only) and resize back, as diffusers does.
  bool resolution_binning = true;
  bool tiled_decode = false;
  TiledDecodeOptions tiling;
  // Flow-matching teachers (SanaPipeline folders) only: sampler steps and solver, real CFG against this prompt.
  FlowSampleOptions flow;
  std::string negative_prompt;
};

// What one call produced, with the intermediates the reference fixtures record.
struct GenerateResult {
  at::Tensor images;           // [B, 3, H, W] float32 in [0, 1]
  at::Tensor prompt_embeds;    // [B, L, caption_channels]
  at::Tensor prompt_attention_mask;
  at::Tensor timesteps;        // the schedule, ending in 0
  at::Tensor initial_noise;    // N(0, 1) draw (before * sigma_data)
  std::vector<at::Tensor> denoised;  // x0 after each step
  at::Tensor final_latents;    // x0 / sigma_data
  at::Tensor vae_decoded;      // raw decoder output
  int generated_height = 0, generated_width = 0;  // after binning
};

// Stage names and seconds, for progress output ("text encoder", "step 1/2", "vae decode", ...).
using ProgressFn = std::function<void(const std::string& stage, double seconds)>;

// Also runs diffusers SanaPipeline folders (flow-matching teachers, no guidance embedding): then generate() samples
// the flow ODE with classifier-free guidance (two evaluations per step), timestep = s * 1000 * timestep_scale.
class SanaSprintPipeline {
 public:
  // Loads a diffusers SanaSprintPipeline or SanaPipeline directory (model_index.json, tokenizer/, text_encoder/,
  // transformer/, vae/, scheduler/). Errors name the missing component.
  static SanaSprintPipeline from_pretrained(const std::string& dir, const at::Device& device, at::ScalarType dtype);

  GenerateResult generate(const GenerateOptions& options, const ProgressFn& progress = nullptr) const;

  // Tokenise + text encoder + SANA's token selection: {embeds [B, max_sequence_length, C], mask}.
  std::pair<at::Tensor, at::Tensor> encode_prompt(const std::vector<std::string>& prompts,
                                                  const PromptOptions& options) const;

  // Latent spatial factor (32 for the real DC-AE).
  int vae_scale_factor() const { return vae->config().spatial_factor(); }

 private:
  void generate_flow(const GenerateOptions& o, GenerateResult& r, const at::Tensor& embeds, const at::Tensor& mask,
                     bool binning, const std::function<void(const std::string&, double)>& report) const;
  void finish(const GenerateOptions& o, GenerateResult& r, bool binning,
              const std::function<void(const std::string&, double)>& report) const;

 public:

  std::shared_ptr<GemmaTokenizer> tokenizer;
  std::shared_ptr<Gemma2Model> text_encoder;
  std::shared_ptr<SanaTransformer2DModel> transformer;
  std::shared_ptr<AutoencoderDC> vae;
  SCMSchedulerConfig scheduler_config;
  bool flow_model = false;   // a SanaPipeline (teacher) folder
  double flow_shift = 1.0;   // its scheduler's shift / flow_shift
  at::Device device = at::kCPU;
};

// Tokenise + text encoder + SANA's token selection: {embeds [B, max_sequence_length, C], mask} on `device`.
std::pair<at::Tensor, at::Tensor> encode_prompt_with(const GemmaTokenizer& tokenizer, const Gemma2Model& text_encoder,
                                                     const std::vector<std::string>& prompts,
                                                     const PromptOptions& options, const at::Device& device);

// Error unless height and width are positive multiples of the VAE factor (checkable before any model is loaded).
void check_image_size(int height, int width, int vae_factor);

// The aspect-ratio bin of the 1024-px models closest to height/width: {height, width}.
std::pair<int, int> closest_1024_bin(int height, int width);

}  // namespace sana
