// The training subcommands: train-vae, train-tiny-decoder, train-lora, text-encoder, cache, train (flow teacher),
// distill (Sprint student).
#include <filesystem>
#include <memory>

#include "commands.h"
#include "sana/error.h"
#include "sana/train/trainer.h"

namespace sana::cli {
namespace {

void add_train_options(CLI::App* app, TrainOptions& o) {
  app->add_option("-o,--out", o.out, "output folder")->required();
  app->add_option("--steps", o.steps, "optimizer steps")->capture_default_str();
  app->add_option("-b,--batch-size", o.batch_size, "global batch size")->capture_default_str()->check(CLI::PositiveNumber);
  app->add_option("--lr", o.lr, "learning rate")->capture_default_str();
  app->add_option("--optimizer", o.optimizer, "adamw | came (the reference's)")->capture_default_str();
  app->add_option("--warmup-steps", o.warmup_steps, "linear learning-rate warm-up")->capture_default_str();
  app->add_option("--weight-decay", o.weight_decay, "AdamW weight decay")->capture_default_str();
  app->add_option("--grad-clip", o.grad_clip, "gradient-norm clip (non-finite norms skip the step)")->capture_default_str();
  app->add_option("--ema", o.ema_decay, "EMA decay of the exported weights (0: off)")->capture_default_str();
  app->add_option("-s,--seed", o.seed, "seed of data order and noise")->capture_default_str();
  app->add_option("--log-every", o.log_every, "progress line every N steps")->capture_default_str()->check(CLI::PositiveNumber);
  app->add_option("--checkpoint-every", o.checkpoint_every, "checkpoint every N steps")->capture_default_str()
      ->check(CLI::PositiveNumber);
  app->add_option("--sample-every", o.sample_every, "sample grid every N steps (0: at the end only, -1: never)")
      ->capture_default_str();
  app->add_option("--snapshot-every", o.snapshot_every,
                  "every N steps, write the model as it would be exported now to <out>/training/snapshots/step-N/ "
                  "(0: never)")->capture_default_str()->check(CLI::NonNegativeNumber);
  app->add_flag("--resume", o.resume, "continue from <out>/training/checkpoint.safetensors");
  app->add_flag("--overwrite", o.overwrite, "write into an output folder that holds other files (replacing them)");
  app->add_option("--device", o.device, "cpu | cuda[:N]")->capture_default_str();
  app->add_option("--dtype", o.dtype, "fp32 | bf16 | fp16")->capture_default_str();
  app->add_option("--backend", o.backend, "c10d backend with WORLD_SIZE > 1: gloo | nccl | auto")->capture_default_str();
}

Subcommand add_train_vae(CLI::App& app) {
  struct Args {
    TrainOptions o;
    std::string data, config;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("train-vae", "train a DC-AE by reconstruction on an image-caption folder");
  cmd->add_option("--data", a->data, "image-caption folder")->required();
  cmd->add_option("--config", a->config, "AutoencoderDC config.json")->required();
  add_train_options(cmd, a->o);
  cmd->remove_option(cmd->get_option("--snapshot-every"));  // a VAE's snapshot is not a pipeline: no score to follow
  return {cmd, [a] {
    train_vae(a->data, a->config, a->o);
    return 0;
  }};
}

Subcommand add_train_tiny_decoder(CLI::App& app) {
  struct Args {
    TrainOptions o;
    TinyDecoderOptions t;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("train-tiny-decoder",
                                 "distil a tiny preview decoder (AutoencoderTiny) from a model's DC-AE decoder on a "
                                 "latent cache (docs/DECODERS.md)");
  cmd->add_option("--cache", a->t.cache, "latent cache (sana-sprint cache)")->required();
  cmd->add_option("--base", a->t.base, "model folder whose vae/ is the decoder to imitate")->required();
  cmd->add_option("--config", a->t.config, "AutoencoderTiny config.json (channels and blocks per stage)")->required();
  cmd->add_option("--latent-noise", a->t.latent_noise,
                  "latents get Gaussian noise of a std drawn from U(0, this): robustness to sampled latents")
      ->capture_default_str();
  add_train_options(cmd, a->o);
  cmd->remove_option(cmd->get_option("--snapshot-every"));  // a decoder's snapshot is not a pipeline: no score to follow
  return {cmd, [a] {
    train_tiny_decoder(a->t, a->o);
    return 0;
  }};
}

Subcommand add_text_encoder(CLI::App& app) {
  struct Args {
    std::string data, config, out;
    int vocab = 384;
    uint64_t seed = 0;
    bool overwrite = false;
    LmPretrainOptions pretrain;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("text-encoder",
                                 "train a SentencePiece tokenizer on captions and make a Gemma-2 text encoder (random, "
                                 "or pretrained as a language model on the captions), frozen for the later stages");
  cmd->add_option("--data", a->data, "image-caption folder (its .txt captions)")->required();
  cmd->add_option("--config", a->config, "Gemma2 config.json (vocab_size is set to the tokenizer's)")->required();
  cmd->add_option("--vocab-size", a->vocab, "SentencePiece vocabulary size (>= 260: byte fallback)")->capture_default_str();
  cmd->add_option("-s,--seed", a->seed, "seed of the random weights")->capture_default_str();
  cmd->add_option("-o,--out", a->out, "folder that gets tokenizer/ and text_encoder/")->required();
  cmd->add_flag("--overwrite", a->overwrite, "replace tokenizer/ and text_encoder/ if the folder has them");
  cmd->add_option("--pretrain-steps", a->pretrain.steps,
                  "next-token pretraining steps on the captions (0: the encoder stays random)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--pretrain-lr", a->pretrain.lr, "pretraining learning rate (AdamW, warm-up then cosine to 1/10)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--pretrain-batch-size", a->pretrain.batch_size, "captions per pretraining step")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--max-sequence-length", a->pretrain.max_sequence_length,
                  "tokens per caption in pretraining, <bos> included (as the cache's)")
      ->capture_default_str()->check(CLI::Range(2, 4096));
  return {cmd, [a] {
    a->pretrain.seed = a->seed;
    make_text_encoder(a->data, a->config, a->vocab, a->seed, a->out, a->overwrite, a->pretrain);
    return 0;
  }};
}

Subcommand add_cache(CLI::App& app) {
  struct Args {
    CacheOptions o;
    bool chi = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("cache", "encode an image-caption folder once: VAE latents and text embeddings");
  cmd->add_option("--data", a->o.data, "image-caption folder")->required();
  cmd->add_option("--base", a->o.base, "folder with tokenizer/, text_encoder/, vae/")->required();
  cmd->add_option("-o,--out", a->o.out, "cache folder")->required();
  cmd->add_option("--max-sequence-length", a->o.prompt.max_sequence_length, "text tokens kept")->capture_default_str();
  cmd->add_flag("--chi", a->chi, "prepend the complex human instruction (the real models' setting)");
  cmd->add_option("-b,--batch-size", a->o.batch_size, "encoding batch")->capture_default_str();
  cmd->add_flag("--overwrite", a->o.overwrite, "write into a cache folder that holds other files");
  return {cmd, [a] {
            a->o.prompt.use_complex_human_instruction = a->chi;
            build_latent_cache(a->o);
            return 0;
          }};
}

Subcommand add_train_flow(CLI::App& app) {
  struct Args {
    TrainOptions o;
    FlowTrainOptions flow;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("train", "train a SANA teacher by flow matching on a latent cache");
  cmd->add_option("--cache", a->flow.cache, "latent cache (sana-sprint cache)")->required();
  cmd->add_option("--base", a->flow.base, "folder with tokenizer/, text_encoder/, vae/ (copied into the output)")
      ->required();
  cmd->add_option("--config", a->flow.config, "SanaTransformer2DModel config.json")->required();
  cmd->add_option("--logit-mean", a->flow.logit_mean, "logit-normal time law: mean")->capture_default_str();
  cmd->add_option("--logit-std", a->flow.logit_std, "logit-normal time law: std")->capture_default_str();
  cmd->add_option("--caption-dropout", a->flow.caption_dropout, "probability of the empty prompt (for CFG)")
      ->capture_default_str();
  add_train_options(cmd, a->o);
  return {cmd, [a] {
    train_flow(a->flow, a->o);
    return 0;
  }};
}

// The loss settings of `distill`, shared by `train-controlnet --objective distill`.
void add_distill_loss_options(CLI::App* cmd, DistillOptions& d, bool& no_misaligned) {
  cmd->add_option("--loss", d.loss, "scm | ladd | hybrid")->capture_default_str();
  cmd->add_option("--cfg-scales", d.cfg_scales, "teacher CFG scales, one drawn per sample")->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--tangent-warmup", d.tangent_warmup, "tangent warm-up iterations")->capture_default_str();
  cmd->add_option("--adv-weight", d.adv_weight, "weight of the adversarial loss in the G loss")->capture_default_str();
  cmd->add_option("--head-blocks", d.head_block_ids, "teacher blocks with discriminator heads (0-based)")
      ->delimiter(',');
  cmd->add_option("--largest-timestep-prob", d.largest_timestep_prob, "max-time weighting probability")
      ->capture_default_str();
  cmd->add_option("--lr-d", d.lr_d, "discriminator learning rate (0: --lr)")->capture_default_str();
  cmd->add_option("--p-mean", d.p_mean, "sCM time law: P_mean")->capture_default_str();
  cmd->add_option("--p-std", d.p_std, "sCM time law: P_std")->capture_default_str();
  cmd->add_flag("--no-misaligned-pairs", no_misaligned, "no rolled real pairs among the fakes");
}

// --steps of a trainer whose untrained start changes nothing (`what`: what step 0 would export).
void require_training_steps(const TrainOptions& o, const std::string& what) {
  if (o.steps < 1)
    throw Error("--steps must be at least 1, got " + std::to_string(o.steps) + " (at 0 the exported " + what +
                " would be its untrained start, which changes nothing)");
}

// `--objective` of train-controlnet and train-lora: true for "flow"; for "distill", `d` made ready to distil the part
// of the Sprint student `base` from --teacher on `cache`.
bool flow_objective(const std::string& objective, DistillOptions& d, const std::string& base, const std::string& cache,
                    bool no_misaligned) {
  if (objective == "flow") return true;
  if (objective != "distill") throw Error("--objective must be flow or distill, got '" + objective + "'");
  if (d.teacher.empty()) throw Error("--objective distill needs --teacher (the student's teacher folder)");
  d.student = base, d.cache = cache;
  d.misaligned_pairs = !no_misaligned;
  return false;
}

Subcommand add_distill(CLI::App& app) {
  struct Args {
    TrainOptions o;
    DistillOptions d;
    bool no_misaligned = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("distill", "distil a flow teacher into a 1-4 step SANA-Sprint student (sCM + LADD)");
  cmd->add_option("--teacher", a->d.teacher, "teacher SanaPipeline folder (sana-sprint train)")->required();
  cmd->add_option("--cache", a->d.cache, "latent cache")->required();
  add_distill_loss_options(cmd, a->d, a->no_misaligned);
  cmd->add_option("--intermediate-timesteps", a->d.intermediate_timesteps,
                  "the student's 2-step middle time, written to its generation defaults")
      ->capture_default_str();
  add_train_options(cmd, a->o);
  return {cmd, [a] {
            a->d.misaligned_pairs = !a->no_misaligned;
            distill(a->d, a->o);
            return 0;
          }};
}

Subcommand add_train_lora(CLI::App& app) {
  struct Args {
    TrainOptions o;
    LoraTrainOptions l;
    DistillOptions d;
    bool no_misaligned = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("train-lora",
                                 "train a LoRA: for a flow teacher by its flow-matching loss (--objective flow), or for "
                                 "a Sprint student by hybrid distillation from the teacher with its LoRA (--objective "
                                 "distill); writes pytorch_lora_weights.safetensors in diffusers' PEFT layout "
                                 "(docs/LORA.md)");
  cmd->add_option("--objective", a->l.objective, "flow (--base is a teacher) | distill (--base is a Sprint student)")
      ->capture_default_str();
  cmd->add_option("--base", a->l.base, "the frozen model's pipeline folder")->required();
  cmd->add_option("--cache", a->l.cache, "latent cache of the images the LoRA learns")->required();
  cmd->add_option("--rank", a->l.rank, "LoRA rank r")->capture_default_str();
  cmd->add_option("--alpha", a->l.alpha, "LoRA alpha (the update is scaled by alpha / r)")->capture_default_str();
  cmd->add_option("--target-modules", a->l.target_modules,
                  "linear layers of the transformer blocks that get adapters, by the end of their names "
                  "(to_q,to_k,to_v,to_out.0,attn2.to_q,ff.conv_inverted ...)")
      ->delimiter(',')->capture_default_str();
  cmd->add_option("--logit-mean", a->l.logit_mean, "flow: logit-normal time law mean")->capture_default_str();
  cmd->add_option("--logit-std", a->l.logit_std, "flow: logit-normal time law std")->capture_default_str();
  cmd->add_option("--caption-dropout", a->l.caption_dropout, "flow: probability of the empty prompt")
      ->capture_default_str();
  cmd->add_option("--teacher", a->d.teacher, "distill: the student's teacher (SanaPipeline folder)");
  cmd->add_option("--teacher-lora", a->d.teacher_loras,
                  "distill: FILE[:SCALE], a LoRA fused into the teacher (the concept the student's LoRA learns; "
                  "repeatable)");
  add_distill_loss_options(cmd, a->d, a->no_misaligned);
  add_train_options(cmd, a->o);
  return {cmd, [a] {
            require_training_steps(a->o, "LoRA");
            if (flow_objective(a->l.objective, a->d, a->l.base, a->l.cache, a->no_misaligned)) {
              train_lora(a->l, a->o);
              return 0;
            }
            a->d.lora_rank = a->l.rank;
            a->d.lora_alpha = a->l.alpha;
            a->d.lora_targets = a->l.target_modules;
            distill(a->d, a->o);
            return 0;
          }};
}

Subcommand add_train_controlnet(CLI::App& app) {
  struct Args {
    TrainOptions o;
    ControlNetFlowOptions flow;
    DistillOptions d;
    std::string objective = "flow";
    bool no_misaligned = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "train-controlnet",
      "train a ControlNet: for a flow teacher by flow matching (--objective flow), or for a Sprint student by hybrid "
      "distillation from the teacher and its ControlNet (--objective distill)");
  cmd->add_option("--objective", a->objective, "flow (--base is a teacher) | distill (--base is a Sprint student)")
      ->capture_default_str();
  cmd->add_option("--base", a->flow.base, "the frozen model's pipeline folder")->required();
  cmd->add_option("--cache", a->flow.cache, "latent cache with control latents (cache of a folder with NAME.control.png)")
      ->required();
  cmd->add_option("--num-layers", a->flow.num_layers, "flow: ControlNet blocks (0: a quarter of the teacher's)")
      ->capture_default_str();
  cmd->add_option("--logit-mean", a->flow.logit_mean, "flow: logit-normal time law mean")->capture_default_str();
  cmd->add_option("--logit-std", a->flow.logit_std, "flow: logit-normal time law std")->capture_default_str();
  cmd->add_option("--caption-dropout", a->flow.caption_dropout, "flow: probability of the empty prompt")
      ->capture_default_str();
  cmd->add_option("--teacher", a->d.teacher, "distill: the teacher's SanaPipeline folder");
  cmd->add_option("--teacher-controlnet", a->d.teacher_controlnet,
                  "distill: the teacher's ControlNet folder (default: <teacher>/controlnet)");
  add_distill_loss_options(cmd, a->d, a->no_misaligned);
  add_train_options(cmd, a->o);
  return {cmd, [a] {
            // The library exports a ControlNet at step 0 (its zero-projection start, which changes no image: tests
            // use that); from the command line that is a run that trained nothing.
            require_training_steps(a->o, "ControlNet");
            if (flow_objective(a->objective, a->d, a->flow.base, a->flow.cache, a->no_misaligned)) {
              train_controlnet_flow(a->flow, a->o);
              return 0;
            }
            if (a->d.teacher_controlnet.empty())
              a->d.teacher_controlnet = (std::filesystem::path(a->d.teacher) / "controlnet").string();
            distill(a->d, a->o);
            return 0;
          }};
}

}  // namespace

std::vector<Subcommand> add_training(CLI::App& app) {
  return {add_train_vae(app),   add_train_tiny_decoder(app), add_text_encoder(app),     add_cache(app),
          add_train_flow(app),  add_distill(app),            add_train_controlnet(app), add_train_lora(app)};
}

}  // namespace sana::cli
