// Command-line flags of the generation parameters (generation_flags.h).
#include "generation_flags.h"

#include <filesystem>

namespace sana::cli {

GenerationFlags::GenerationFlags(CLI::App* app, GenerationParams& p, const FieldSet& exclude) {
  const auto add = [&](const std::string& field, CLI::Option* option) {
    options_.emplace_back(field, option);
  };
  const auto want = [&](const char* field) { return !exclude.count(field); };
  if (want("model"))
    add("model", app->add_option("-m,--model", p.model,
                                 "diffusers pipeline folder: SanaSprintPipeline or SanaPipeline (default: the shipped "
                                 "shapes student)"));
  if (want("prompt")) add("prompt", app->add_option("-p,--prompt", p.prompt, "the prompt")->required());
  if (want("negative_prompt"))
    add("negative_prompt", app->add_option("--negative-prompt", p.negative_prompt,
                                           "flow teachers: the CFG negative prompt")->capture_default_str());
  if (want("steps"))
    add("steps", app->add_option("--steps", p.steps, "sampling steps (Sprint 1-4; teachers: flow-ODE steps)")
                     ->capture_default_str());
  if (want("seed"))
    add("seed", app->add_option("-s,--seed", p.seed, "seed of the CPU generator (-1: random)")->capture_default_str());
  if (want("width"))
    add("width", app->add_option("-W,--width", p.width,
                                 "image width (a multiple of the VAE factor: 32 for the real DC-AE, 8 for the shapes "
                                 "models)")->capture_default_str());
  if (want("height")) add("height", app->add_option("-H,--height", p.height, "image height")->capture_default_str());
  if (want("guidance"))
    add("guidance", app->add_option("--guidance", p.guidance,
                                    "guidance scale (Sprint: embedded, no extra pass; teachers: real CFG)")
                        ->capture_default_str());
  if (want("batch_count"))
    add("batch_count",
        app->add_option("-b,--batch-count", p.batch_count, "images for the prompt, in one batch")->capture_default_str());
  if (want("device")) add("device", app->add_option("--device", p.device, "cpu | cuda[:N]")->capture_default_str());
  if (want("dtype")) add("dtype", app->add_option("--dtype", p.dtype,
                                                  "fp32 | bf16 | fp16 | auto (per stage the faster of fp32 and bf16, "
                                                  "measured once per machine)")->capture_default_str());
  if (want("max_timesteps"))
    add("max_timesteps", app->add_option("--max-timesteps", p.max_timesteps, "first TrigFlow time")
                             ->capture_default_str());
  if (want("intermediate_timesteps"))
    add("intermediate_timesteps", app->add_option("--intermediate-timesteps", p.intermediate_timesteps,
                                                  "middle time of the 2-step schedule")->capture_default_str());
  if (want("timesteps"))
    add("timesteps", app->add_option("--timesteps", p.timesteps,
                                     "custom schedule: steps+1 decreasing values ending in 0")->delimiter(','));
  if (want("complex_human_instruction"))
    add("complex_human_instruction",
        app->add_flag_callback("--no-chi", [&p] { p.complex_human_instruction = false; },
                               "do not prepend the complex human instruction to the prompt"));
  if (want("resolution_binning"))
    add("resolution_binning",
        app->add_flag_callback("--no-resolution-binning", [&p] { p.resolution_binning = false; },
                               "generate at exactly -W x -H (1024-px models bin by default)"));
  if (want("vae_tiling"))
    add("vae_tiling", app->add_flag("--vae-tiling", p.vae_tiling,
                                    "decode in overlapping tiles (less memory for large images)"));
  if (want("max_sequence_length"))
    add("max_sequence_length", app->add_option("--max-sequence-length", p.max_sequence_length,
                                               "text tokens kept after the encoder")->capture_default_str());
  if (want("sampler"))
    add("sampler", app->add_option("--sampler", p.sampler,
                                   "flow teachers: euler | dpm++2m (default: the folder's scheduler)"));
  if (want("control_image"))
    add("control_image", app->add_option("--control-image", p.control_image,
                                         "ControlNet: the control PNG, JPEG or WebP (white scribbles on black; resized to the output "
                                         "size)"));
  if (want("control_scale"))
    add("control_scale", app->add_option("--control-scale", p.control_scale, "ControlNet: factor on its residuals")
                             ->capture_default_str());
  if (want("control_preprocess"))
    add("control_preprocess",
        app->add_option("--control-preprocess", p.control_preprocess,
                        "none | invert (black strokes on white, as drawn on a canvas) | canny (edges of a photo)")
            ->capture_default_str());
  if (want("controlnet"))
    add("controlnet", app->add_option("--controlnet", p.controlnet,
                                      "attach this SanaControlNetModel folder (default: the model's controlnet/)"));
  if (want("vae"))
    add("vae", app->add_option("--vae", p.vae,
                               "use this AutoencoderDC folder instead of the model's vae/ (e.g. DC-AE-Lite; it must "
                               "share the model's latent space)"));
  if (want("decoder"))
    add("decoder", app->add_option("--decoder", p.decoder,
                                   "full (the VAE) | tiny (the preview decoder: the model's vae_tiny/ or --tiny-vae; "
                                   "a rough image at a small part of the cost)")
                       ->capture_default_str());
  if (want("tiny_vae"))
    add("tiny_vae", app->add_option("--tiny-vae", p.tiny_vae,
                                    "use this AutoencoderTiny folder as the tiny decoder instead of the model's "
                                    "vae_tiny/"));
  if (want("lora"))
    add("lora", app->add_option("--lora", p.lora,
                                "a LoRA .safetensors fused into the weights, FILE or FILE:SCALE (diffusers/PEFT or "
                                "kohya names; repeat for several)"));
  if (want("quantize"))
    add("quantize", app->add_option("--quantize", p.quantize,
                                    "int8 weights for the text encoder, transformer and ControlNet: int8 (weight-only, "
                                    "about half the memory of bf16) | w8a8 (also int8 products on the CPU: faster, "
                                    "less exact) | q4 (4-bit groups of 64, weight-only: about a quarter)")
                        ->check(CLI::IsMember({"", "none", "int8", "w8a8", "q4"})));
  if (want("quantize_min_weights"))
    add("quantize_min_weights",
        app->add_option("--quantize-min-weights", p.quantize_min_weights,
                        "--quantize leaves layers with fewer weights as they are (0: every matrix layer)")
            ->capture_default_str());
  if (want("init_image"))
    add("init_image", app->add_option("--init-image", p.init_image, "img2img (Sprint models): the init PNG, JPEG or WebP"));
  if (want("strength"))
    add("strength", app->add_option("--strength", p.strength,
                                    "img2img: share of the schedule to run, in whole steps (skips int(steps - steps x strength))")
                        ->capture_default_str());
}

FieldSet GenerationFlags::given() const {
  FieldSet out;
  for (const auto& [field, option] : options_)
    if (option->count() > 0) out.insert(field);
  return out;
}

CLI::Option* GenerationFlags::option(const std::string& field) const {
  for (const auto& [f, option] : options_)
    if (f == field) return option;
  return nullptr;
}

std::string GenerationFlags::flag(const std::string& field) const {
  const CLI::Option* o = option(field);
  if (!o) return field;
  std::string names;
  for (const auto& s : o->get_snames()) names += "-" + s + "/";
  return names + "--" + o->get_lnames().front();
}

Error GenerationFlags::rephrase(const ParamError& e) const { return Error(flag(e.field()) + ": " + e.message()); }

void prepare_generation(GenerationParams& p, const GenerationFlags& flags) {
  if (p.model.empty()) {
    p.model = SANA_DEFAULT_MODEL;
    if (!std::filesystem::exists(std::filesystem::path(p.model) / "model_index.json"))
      throw Error("no -m/--model given and the default model " + p.model +
                  " is not installed; pass -m with a diffusers SANA-Sprint directory");
  }
  try {
    apply_model_defaults(p, flags.given());
    validate(p);
    validate_for_model(p);
  } catch (const ParamError& e) {
    throw flags.rephrase(e);
  }
}

}  // namespace sana::cli
