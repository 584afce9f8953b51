#pragma once
// The arguments of one pipeline call and what it returns, shared by every pipeline (docs/ARCHITECTURE.md,
// "Pipelines"). The names follow the diffusers call arguments where one exists.
#include <ATen/ATen.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "sana/models/dcae.h"
#include "sana/text/prompt.h"

namespace sana {

struct GenerateOptions {
  // What to draw: the prompts, or (instead) precomputed embeddings [B, L, C] with their mask [B, L], which skips
  // the text encoder (the trainers' sample grids pass cached embeddings).
  std::vector<std::string> prompts;
  at::Tensor prompt_embeds, prompt_attention_mask;
  // Flow teachers only: the classifier-free guidance's negative prompt (no instruction prefix, as the reference), or
  // its precomputed embedding [1 or B, L, C] and mask.
  std::string negative_prompt;
  at::Tensor negative_prompt_embeds, negative_prompt_attention_mask;

  int num_images_per_prompt = 1;
  int height = 1024, width = 1024;
  int steps = 2;                 // sampler steps (Sprint: 1-4; teachers: flow-ODE steps)
  double guidance_scale = 4.5;   // Sprint: embedded guidance (one pass); teachers: real CFG (two passes)
  uint64_t seed = 0;             // of the one CPU generator of the call
  PromptOptions prompt;
  // Generate at the nearest trained aspect-ratio bin (1024-px models only) and resize back, as diffusers does.
  bool resolution_binning = true;
  bool tiled_decode = false;
  TiledDecodeOptions tiling;
  // Decode with the components' tiny preview decoder (AutoencoderTiny) instead of the VAE: a rough image at a small
  // fraction of the cost (docs/DECODERS.md). Tiling does not apply to it.
  bool tiny_decode = false;

  // Sprint (SCM) schedule: [max_timesteps, (intermediate_timesteps,) ..., 0]; `timesteps` replaces it entirely.
  double max_timesteps = 1.57080;
  std::optional<double> intermediate_timesteps;  // 2 steps only (the reference default is 1.3)
  std::vector<double> timesteps;

  // Flow teachers: "euler" | "dpm++2m"; empty: the solver of the folder's scheduler.
  std::string sampler;

  // ControlNet (a pipeline with a controlnet component): the control image [3, H, W] or [B, 3, H, W] in [0, 1]
  // (resized to the output size as diffusers does) and the factor on its residuals. No image: no ControlNet pass.
  at::Tensor control_image;
  at::Tensor control_latents;  // or, instead, the control image's latent * scaling_factor [B, C, h, w] (a cache's)
  double controlnet_conditioning_scale = 1.0;

  // img2img (Sprint pipelines): the init image [3, H, W] in [0, 1], and the share of the schedule to run: the first
  // int(steps - steps * strength) steps are skipped (diffusers' rule: strength acts in whole steps).
  at::Tensor image;
  double strength = 0.6;

  // Keep every step's model input, timestep, output and ControlNet residuals in the result (checks, debugging).
  bool record_steps = false;

  // Called where the call can pause without changing its result: before each denoising step and before the decode.
  // The server runs waiting live frames here, so a live frame waits for at most one step of a long job; it may also
  // throw to stop the call (cancellation).
  std::function<void()> pause_point;
};

// What one call produced, with the intermediates the reference fixtures record.
struct GenerateResult {
  at::Tensor images;           // [B, 3, H, W] float32 in [0, 1]
  at::Tensor prompt_embeds;    // [B, L, caption_channels]
  at::Tensor prompt_attention_mask;
  at::Tensor timesteps;        // the schedule, ending in 0
  at::Tensor initial_noise;    // N(0, 1) draw (before * sigma_data)
  std::vector<at::Tensor> denoised;  // x0 after each step
  at::Tensor final_latents;    // the latent handed to the decoder, before / scaling_factor
  at::Tensor vae_decoded;      // raw decoder output
  int generated_height = 0, generated_width = 0;  // after binning

  at::Tensor vae_encode_input;  // the preprocessed control or init image handed to the encoder ([-1, 1])
  at::Tensor control_latents;   // what the ControlNet receives (latent * scaling_factor), per model row
  at::Tensor image_latents;     // img2img: the init image's latent * scaling_factor * sigma_data

  // With record_steps: per step, what the transformer saw and returned (for teachers: both CFG halves, before
  // the guidance combination).
  struct Step {
    at::Tensor model_input, timestep, model_output;
    std::vector<at::Tensor> controlnet_block_samples;
  };
  std::vector<Step> steps;
};

// img2img: the index of the first step that runs, int(steps - steps * strength) as diffusers computes it (defined
// with the Sprint pipeline). Error ("strength: ...") when that leaves no step or strength is outside [0, 1].
int img2img_first_step(int steps, double strength);

// Stage names and seconds, for progress output ("text encoder", "step 1/2", "vae decode", ...).
using ProgressFn = std::function<void(const std::string& stage, double seconds)>;

}  // namespace sana
