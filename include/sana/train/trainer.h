#pragma once
// The training commands behind `sana-sprint train-vae | train-tiny-decoder | text-encoder | cache | train | distill |
// train-controlnet | train-lora`.
//
// Shared conventions (docs/ARCHITECTURE.md, "Training"; the run state is src/train/training_run.h):
//  * Determinism (sana/train/data.h): `--resume` reproduces the loss sequence of an uninterrupted run; a resume with
//    options that shape the run changed is refused, naming each difference.
//  * Data parallel: every process draws the noise of the whole global batch and keeps its own rows, so N processes
//    compute exactly what one process computes on the combined batch (up to the order of the gradient sum).
//  * Output folders are diffusers layouts; training state lives in <out>/training/ (checkpoint.safetensors,
//    log.jsonl, samples/, snapshots/), which the loaders ignore.
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "sana/train/data.h"
#include "sana/train/lm_pretrain.h"

namespace sana {

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
  int snapshot_every = 0;       // the exported folder as it would be now, every N steps, in
                                // <out>/training/snapshots/step-N/ (0: never) -- for scores over training
  bool resume = false;
  bool overwrite = false;       // allow writing into a folder that holds other files (they may be replaced)
  std::string device = "cpu", dtype = "fp32";
  std::string backend = "auto";  // c10d backend when WORLD_SIZE > 1
};

// ---- the commands --------------------------------------------------------------------------------------------------

// DC-AE by reconstruction (L1 + MSE in [-1, 1]) from an image-caption folder; `config` is an AutoencoderDC
// config.json. Writes <out>/config.json (scaling_factor = 1 / std of the latents) and the weights.
void train_vae(const std::string& data, const std::string& config, const TrainOptions& options);

// A tiny preview decoder (AutoencoderTiny, docs/DECODERS.md) distilled from the DC-AE decoder of `base` (a folder
// with vae/) on the latents of `cache`: L1 + MSE against the full decoder's image of each latent, the latents with
// Gaussian noise of a std drawn from U(0, latent_noise). `config` is an AutoencoderTiny config.json. Writes <out>/
// config.json (scaling_factor 1: it reads the transformer's latents) and the weights; put the folder in a model
// folder as vae_tiny/ for `generate --decoder tiny`.
struct TinyDecoderOptions {
  std::string cache, base, config;
  double latent_noise = 0.25;
};
void train_tiny_decoder(const TinyDecoderOptions& tiny, const TrainOptions& options);

// A LoRA for a flow teacher (`train-lora --objective flow`, docs/LORA.md): adapters of rank `rank` on the linear
// layers of the transformer blocks whose names end in one of `target_modules` (diffusers' Sana LoRA script's default:
// to_q, to_k, to_v), trained by the teacher's flow-matching loss with everything else frozen. Writes
// <out>/pytorch_lora_weights.safetensors in diffusers' PEFT layout (alpha in its lora_adapter_metadata).
struct LoraTrainOptions {
  std::string base, cache;  // the teacher's SanaPipeline folder; a latent cache of the concept's images
  std::string objective = "flow";
  int rank = 4;
  double alpha = 4;         // scale = alpha / rank
  std::vector<std::string> target_modules = {"to_q", "to_k", "to_v"};
  double logit_mean = 0.0, logit_std = 1.0;
  double caption_dropout = 0.1;
};
void train_lora(const LoraTrainOptions& lora, const TrainOptions& options);

// A SentencePiece tokenizer trained on the folder's captions and a Gemma-2 (`config`, vocab_size set to the
// tokenizer's), random or pretrained as a language model on the captions (`pretrain.steps` > 0; its log in
// <out>/text_encoder/training/log.jsonl), frozen from then on: <out>/tokenizer/tokenizer.model,
// <out>/text_encoder/{config.json, model.safetensors}.
void make_text_encoder(const std::string& data, const std::string& config, int vocab_size, uint64_t seed,
                       const std::string& out, bool overwrite = false, const LmPretrainOptions& pretrain = {});

// Flow-matching teacher (docs/ARCHITECTURE.md, "Flow matching"): v = eps - x0, logit-normal s, dense time s in
// [0, 1], caption dropout to the empty prompt's embedding. Writes a diffusers SanaPipeline folder (the transformer's
// timestep_scale is 0.001 so diffusers' flow schedulers' t in [0, 1000] reach the model as s).
struct FlowTrainOptions {
  std::string cache, base, config;  // latent cache, folder with tokenizer/ text_encoder/ vae/, transformer config
  double logit_mean = 0.0, logit_std = 1.0;
  double caption_dropout = 0.1;
};
void train_flow(const FlowTrainOptions& flow, const TrainOptions& options);

// SANA-Sprint distillation of a flow teacher (a SanaPipeline folder) into a one-step student (docs/ARCHITECTURE.md,
// "Distillation").
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
  double sigma_data = 0.5;                       // TrigFlow's data scale (the exported SCMScheduler's sigma_data)
  double guidance_embeds_scale = 0.1;            // the student config's: guidance reaches the embedder as w * 0.1
  double largest_timestep = 1.57080;             // max-time weighting's time: pi/2 as the reference rounds it
  // The middle time of the student's 2-step schedule: written to its generation_defaults.json (so `generate` and
  // `eval -m` use it when not given) and used by the sample grids. 1.3 is the reference's, chosen for 1024-px
  // latents; the best value for another student is measured, not derived (docs/TRAINING.md, "Distillation").
  double intermediate_timesteps = 1.3;
  // ControlNet distillation (`train-controlnet --objective distill`): when set, the teacher is the teacher with
  // this ControlNet folder, `student` is the Sprint pipeline folder whose transformer stays frozen, and what trains
  // (and is exported, as a ControlNet folder) is the student's ControlNet, started from the teacher's.
  std::string teacher_controlnet;
  std::string student;
  // LoRA distillation (`train-lora --objective distill`): when lora_rank > 0, `student` is a Sprint pipeline folder
  // whose weights stay frozen, and what trains (and is exported as pytorch_lora_weights.safetensors) is rank-lora_rank
  // adapters on its lora_targets; the teacher runs with teacher_loras fused ("FILE[:SCALE]": the flow LoRA whose
  // concept the student learns), so the target is the teacher with its LoRA.
  int lora_rank = 0;
  double lora_alpha = 4;
  std::vector<std::string> lora_targets = {"to_q", "to_k", "to_v"};
  std::vector<std::string> teacher_loras;
};
void distill(const DistillOptions& distill, const TrainOptions& options);

// A ControlNet for a frozen flow teacher by flow matching on (image, control, caption) triples
// (`train-controlnet --objective flow`; docs/ARCHITECTURE.md, "ControlNet"): the ControlNet starts as a copy of the
// teacher's first `num_layers` blocks with zero projections (so step 0 reproduces the teacher), and learns the
// teacher's flow loss with the control latents of a cache made from a folder with control images.
struct ControlNetFlowOptions {
  std::string base, cache;  // the teacher's SanaPipeline folder; a latent cache with control latents
  int num_layers = 0;       // ControlNet blocks (0: a quarter of the teacher's, rounded up)
  double logit_mean = 0.0, logit_std = 1.0;
  double caption_dropout = 0.1;
};
void train_controlnet_flow(const ControlNetFlowOptions& flow, const TrainOptions& options);

}  // namespace sana
