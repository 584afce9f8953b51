#pragma once
// The training commands behind `sana-sprint train-vae | text-encoder | cache | train | distill`.
//
// Shared conventions (trainer.cpp):
//  * Determinism by construction: every random draw of step k comes from a CPU generator seeded with (seed, k), and
//    the batch of step k is a pure function of (seed, k) (one seeded permutation per epoch). A checkpoint therefore
//    needs only the weights, the optimizer state and k to continue exactly; `--resume` reproduces the loss sequence of
//    an uninterrupted run.
//  * Data parallel: every process draws the noise of the whole global batch and keeps its own rows, so N processes
//    compute exactly what one process computes on the combined batch (up to the order of the gradient sum).
//  * Output folders are diffusers layouts; training state lives in <out>/training/ (checkpoint.safetensors,
//    log.jsonl, samples/), which the loaders ignore.
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sana/text/prompt.h"

namespace sana {

class DataParallel;

// Options every training command shares.
struct TrainOptions {
  std::string out;              // output folder
  int64_t steps = 1000;         // optimizer steps (for distill: G + D iterations, as the reference counts)
  int batch_size = 32;          // global batch (split over the data-parallel processes)
  double lr = 1e-4;
  std::string optimizer = "adamw";  // adamw | came (the reference's)
  int warmup_steps = 0;         // linear learning-rate warm-up
  double weight_decay = 0.0;
  double grad_clip = 1.0;       // global gradient-norm clip; non-finite norms skip the step
  double ema_decay = 0.0;       // 0: no EMA; otherwise the exported weights are the EMA weights
  uint64_t seed = 0;
  int log_every = 10;           // progress line every N steps (the JSONL log gets every step)
  int checkpoint_every = 500;
  int sample_every = 0;         // sample grid every N steps (0: only at the end; < 0: never)
  bool resume = false;
  std::string device = "cpu", dtype = "fp32";
  std::string backend = "auto";  // c10d backend when WORLD_SIZE > 1
};

// ---- data ---------------------------------------------------------------------------------------------------------

// An image-caption folder: NAME.png with NAME.txt beside it (sorted by name).
struct ImageCaptionFolder {
  std::vector<std::string> images, captions;
  static ImageCaptionFolder open(const std::string& dir);
};

// Index of the j-th sample of step k for a dataset of n samples: one seeded permutation per epoch.
int64_t sample_index(uint64_t seed, int64_t step, int64_t batch_size, int64_t j, int64_t n);

// A CPU generator for step `step` of a run seeded with `seed` (splitmix64 of both).
at::Generator step_generator(uint64_t seed, int64_t step, uint64_t stream = 0);

// Precomputed training inputs (the reference trains on precomputed VAE features as well):
// <dir>/cache_config.json, shard-NNNNN.safetensors with latents [n, C, h, w] (VAE latent * scaling_factor),
// prompt_embeds [n, L, C_text], prompt_attention_mask [n, L]; null.safetensors with the empty prompt's embedding
// and mask (the unconditional input for classifier-free guidance); captions.txt, one caption per line.
struct LatentCache {
  at::Tensor latents, prompt_embeds, prompt_attention_mask;  // all samples, CPU
  at::Tensor null_embeds, null_mask;                         // [L, C_text], [L]
  std::vector<std::string> captions;
  PromptOptions prompt;                                      // how the captions were encoded
  double scaling_factor = 1.0;
  int image_size = 0;

  static LatentCache open(const std::string& dir);
  int64_t size() const { return latents.size(0); }
};

struct CacheOptions {
  std::string data, base, out;  // image-caption folder, folder with tokenizer/ text_encoder/ vae/, output
  int batch_size = 64;
  int shard_size = 8192;
  PromptOptions prompt;
};
void build_latent_cache(const CacheOptions& options);

// ---- the commands --------------------------------------------------------------------------------------------------

// DC-AE by reconstruction (L1 + MSE in [-1, 1]) from an image-caption folder; `config` is an AutoencoderDC
// config.json. Writes <out>/config.json (scaling_factor = 1 / std of the latents) and the weights.
void train_vae(const std::string& data, const std::string& config, const TrainOptions& options);

// A SentencePiece tokenizer trained on the folder's captions and a randomly initialised, frozen Gemma-2 (`config`,
// vocab_size set to the tokenizer's): <out>/tokenizer/tokenizer.model, <out>/text_encoder/{config.json,
// model.safetensors}.
void make_text_encoder(const std::string& data, const std::string& config, int vocab_size, uint64_t seed,
                       const std::string& out);

// Flow-matching teacher (ALGORITHM.md §1.2, §2): v = eps - x0, logit-normal s, dense time s in [0, 1], caption
// dropout to the empty prompt's embedding. Writes a diffusers SanaPipeline folder (the transformer's
// timestep_scale is 0.001 so diffusers' flow schedulers' t in [0, 1000] reach the model as s).
struct FlowTrainOptions {
  std::string cache, base, config;  // latent cache, folder with tokenizer/ text_encoder/ vae/, transformer config
  double logit_mean = 0.0, logit_std = 1.0;
  double caption_dropout = 0.1;
};
void train_flow(const FlowTrainOptions& flow, const TrainOptions& options);

// SANA-Sprint distillation of a flow teacher (a SanaPipeline folder) into a one-step student (ALGORITHM.md §4-6).
struct DistillOptions {
  std::string teacher, cache;
  std::string loss = "hybrid";                  // scm | ladd | hybrid
  std::vector<double> cfg_scales = {4.0, 4.5, 5.0};
  double p_mean = 0.2, p_std = 1.6;              // sCM time law
  double d_p_mean = -0.6, d_p_std = 1.0;         // discriminator time law
  int tangent_warmup = 4000;                     // in iterations (G and D count, as the reference)
  double adv_weight = 0.5;                       // total G loss = sCM + adv_weight * adversarial
  std::vector<int> head_block_ids;               // empty: a spread over the teacher's depth
  double largest_timestep_prob = 0.5;            // max-time weighting
  bool misaligned_pairs = true;
  double lr_d = 0.0;                             // discriminator learning rate (0: the same as G)
};
void distill(const DistillOptions& distill, const TrainOptions& options);

}  // namespace sana
