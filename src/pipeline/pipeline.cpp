// Pipeline components, the shared prompt encoding entry and the folder -> pipeline loader (pipeline.h).
#include "sana/pipeline/pipeline.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "sana/error.h"
#include "sana/io/config.h"
#include "sana/io/lora_file.h"
#include "sana/pipeline/prompt_encoding.h"
#include "sana/pipeline/sana.h"
#include "sana/pipeline/sana_sprint.h"
#include "sana/runtime.h"

namespace fs = std::filesystem;

namespace sana {
namespace {

void require_dir(const fs::path& p, const std::string& what) {
  if (!fs::is_directory(p))
    throw Error("model directory " + p.parent_path().string() + " has no " + p.filename().string() + "/ (" + what + ")");
}

// model_index.json of a pipeline folder that lists and holds the five components (vae/ only when no other VAE is
// given).
ModelIndex open_pipeline_folder(const std::string& dir, bool needs_vae = true) {
  const fs::path root(dir);
  if (!fs::is_directory(root)) throw Error("model directory " + dir + " does not exist");
  if (!fs::exists(root / "model_index.json"))
    throw Error("model directory " + dir + " has no model_index.json (is it a diffusers pipeline folder?)");
  ModelIndex index = load_model_index((root / "model_index.json").string());
  for (const char* part : {"tokenizer", "text_encoder", "transformer", "vae", "scheduler"})
    if (!index.components.count(part))
      throw Error("model directory " + dir + ": model_index.json lists no '" + std::string(part) + "' component");
  require_dir(root / "tokenizer", "Gemma tokenizer");
  require_dir(root / "text_encoder", "Gemma2Model");
  require_dir(root / "transformer", "SanaTransformer2DModel");
  if (needs_vae) require_dir(root / "vae", "AutoencoderDC");
  require_dir(root / "scheduler", "scheduler config");
  return index;
}

// The AutoencoderDC config of an explicitly given VAE folder; errors name the flag's folder.
AutoencoderDCConfig vae_folder_config(const std::string& vae_dir) {
  if (!fs::is_directory(vae_dir)) throw Error("vae: " + vae_dir + " is not a directory");
  const fs::path config = fs::path(vae_dir) / "config.json";
  if (!fs::exists(config)) throw Error("vae: " + vae_dir + " has no config.json (an AutoencoderDC folder)");
  return load_autoencoder_dc_config(config.string());
}

}  // namespace

void check_vae_fits(const AutoencoderDCConfig& vae, const std::string& vae_dir, const std::string& pipeline_dir) {
  const fs::path root(pipeline_dir);
  const auto transformer = load_sana_transformer_config((root / "transformer" / "config.json").string());
  const std::string what = "vae " + vae_dir + ": ";
  const std::string theirs = " of " + pipeline_dir;
  if (vae.latent_channels != transformer.in_channels || vae.latent_channels != transformer.out_channels)
    throw Error(what + "has " + std::to_string(vae.latent_channels) + " latent channels, but the transformer" + theirs +
                " reads " + std::to_string(transformer.in_channels) + " and writes " +
                std::to_string(transformer.out_channels) + " (another latent space)");
  const fs::path own_config = root / "vae" / "config.json";
  if (!fs::exists(own_config)) return;
  const auto own = load_autoencoder_dc_config(own_config.string());
  if (vae.spatial_factor() != own.spatial_factor())
    throw Error(what + "compresses by " + std::to_string(vae.spatial_factor()) + "x, the VAE" + theirs + " by " +
                std::to_string(own.spatial_factor()) + "x (another latent space)");
  if (vae.scaling_factor != own.scaling_factor)
    throw Error(what + "has scaling_factor " + c10::str(vae.scaling_factor) + ", the VAE" + theirs + " " +
                c10::str(own.scaling_factor) + " (another latent space)");
}

PipelineComponents PipelineComponents::from_pretrained(const std::string& dir, const at::Device& device,
                                                       at::ScalarType dtype, const std::string& vae_dir,
                                                       std::optional<at::ScalarType> vae_dtype) {
  const ModelIndex index = open_pipeline_folder(dir, vae_dir.empty());
  // Configs first: a VAE that does not fit is refused before any weights are read.
  if (!vae_dir.empty()) check_vae_fits(vae_folder_config(vae_dir), vae_dir, dir);
  const fs::path root(dir);
  const auto options = at::TensorOptions().dtype(dtype).device(device);
  PipelineComponents c;
  c.device = device;
  c.tokenizer = std::make_shared<GemmaTokenizer>(GemmaTokenizer::from_pretrained((root / "tokenizer").string()));
  c.text_encoder = Gemma2Model::from_pretrained((root / "text_encoder").string(), options);
  c.transformer = SanaTransformer2DModel::from_pretrained((root / "transformer").string(), options);
  c.vae = AutoencoderDC::from_pretrained(vae_dir.empty() ? (root / "vae").string() : vae_dir,
                                         options.dtype(vae_dtype.value_or(dtype)));
  if (index.components.count("controlnet")) {
    require_dir(root / "controlnet", "SanaControlNetModel");
    c.attach_controlnet((root / "controlnet").string(), dtype);
  }
  if (fs::is_directory(root / "vae_tiny"))
    c.attach_tiny_vae((root / "vae_tiny").string(), vae_dtype.value_or(dtype));
  return c;
}

void PipelineComponents::attach_tiny_vae(const std::string& dir, at::ScalarType dtype) {
  auto tiny = AutoencoderTiny::from_pretrained(dir, at::TensorOptions().dtype(dtype).device(device));
  const AutoencoderTinyConfig& t = tiny->config();
  const std::string what = "tiny decoder " + dir + ": ";
  if (t.latent_channels != vae->config().latent_channels)
    throw Error(what + "reads " + std::to_string(t.latent_channels) + " latent channels, the VAE has " +
                std::to_string(vae->config().latent_channels) + " (another latent space)");
  if (t.spatial_factor() != vae_scale_factor())
    throw Error(what + "upsamples by " + std::to_string(t.spatial_factor()) + "x, the VAE by " +
                std::to_string(vae_scale_factor()) + "x");
  tiny_vae = std::move(tiny);
}

void PipelineComponents::attach_controlnet(const std::string& dir, at::ScalarType dtype) {
  if (!fs::is_directory(dir)) throw Error("controlnet: " + dir + " is not a directory");
  const std::string config = (fs::path(dir) / "config.json").string();
  if (!fs::exists(config)) throw Error("controlnet: " + dir + " has no config.json (a SanaControlNetModel folder)");
  check_controlnet_fits(load_sana_controlnet_config(config), transformer->config(), "controlnet " + dir);
  controlnet = SanaControlNetModel::from_pretrained(dir, at::TensorOptions().dtype(dtype).device(device));
}

LoraSpec parse_lora_spec(const std::string& text, const std::string& field) {
  LoraSpec spec{text, 1};
  if (const size_t colon = text.rfind(':'); colon != std::string::npos) {
    const std::string tail = text.substr(colon + 1);
    char* end = nullptr;
    const double scale = std::strtod(tail.c_str(), &end);
    if (!tail.empty() && end && *end == '\0') spec = {text.substr(0, colon), scale};
  }
  if (spec.path.empty()) throw Error(field + ": '" + text + "' names no file (FILE or FILE:SCALE)");
  check_lora_scale(spec.scale, spec.path, field);
  return spec;
}

void check_lora_scale(double scale, const std::string& lora, const std::string& field) {
  if (!std::isfinite(scale) || std::abs(scale) > 10)
    throw Error(field + ": the scale of " + lora + " must be between -10 and 10, got " + c10::str(scale));
}

nn::LoraReport PipelineComponents::apply_lora(const LoraSpec& spec, bool side) {
  std::vector<std::pair<std::string, std::set<std::string>>> modules;
  std::vector<std::pair<std::string, nn::Module*>> targets = {{"transformer", transformer.get()}};
  if (controlnet) targets.push_back({"controlnet", controlnet.get()});
  for (const auto& [name, module] : targets) {
    std::set<std::string> names;
    for (const auto& [n, layer] : nn::weighted_layers(*module)) names.insert(n);
    modules.push_back({name, std::move(names)});
  }
  const LoraFile file = read_lora_file(spec.path, modules);
  for (const LoraLayer& l : file.layers)
    if (l.component == "controlnet" && !controlnet)
      throw Error(spec.path + ": tensor " + l.tensor + " is for a ControlNet, and this pipeline has none");
  // Every layer of every component is checked before any is changed: a bad file leaves the model as it was.
  nn::LoraPlan plan;
  for (const auto& [name, module] : targets) {
    nn::LoraPlan part = nn::plan_lora(*module, file, name, spec.scale);
    plan.insert(plan.end(), part.begin(), part.end());
  }
  return nn::apply_lora(std::move(plan), side);
}

void PipelineComponents::remove_loras() {
  nn::remove_loras(*transformer);
  if (controlnet) nn::remove_loras(*controlnet);
}

nn::QuantizeReport PipelineComponents::quantize_int8(const nn::QuantizeSettings& settings) {
  nn::QuantizeReport total;
  if (settings.compute == nn::Int8Compute::none) return total;  // nothing to do, nothing to give back
  for (torch::nn::Module* m : std::initializer_list<torch::nn::Module*>{text_encoder.get(), transformer.get(),
                                                                       controlnet.get()}) {
    if (!m) continue;
    total += nn::quantize_int8(*m, settings);
  }
  release_free_memory();  // the floating weights' heap back to the system
  return total;
}

void PipelineComponents::release_text_encoder() {
  tokenizer.reset();
  text_encoder.reset();
  prefix_cache.reset();
  release_free_memory();
}

void Pipeline::embed_text(GenerateOptions& o, const TextEncoder& encode) const {
  if (o.prompt_embeds.defined()) return;
  if (o.prompts.empty()) throw Error("prompt: no prompt given");
  if (!encode) {
    std::tie(o.prompt_embeds, o.prompt_attention_mask) = encode_prompt(o.prompts, o.prompt);
    return;
  }
  std::vector<at::Tensor> embeds, masks;
  for (const std::string& p : o.prompts) {
    const auto [e, m] = encode(p, o.prompt);
    embeds.push_back(e), masks.push_back(m);
  }
  o.prompt_embeds = at::cat(embeds), o.prompt_attention_mask = at::cat(masks);
}

std::pair<at::Tensor, at::Tensor> Pipeline::encode_prompt(const std::vector<std::string>& prompts,
                                                          const PromptOptions& options) const {
  if (!components.tokenizer || !components.text_encoder)
    throw Error("this pipeline has no text encoder: pass prompt embeddings");
  return encode_prompt_with(*components.tokenizer, *components.text_encoder, prompts, options, components.device,
                            components.prefix_cache.get());
}

void require_finite(const at::Tensor& t, const std::string& stage) {
  if (t.defined() && !at::isfinite(t).all().item<bool>())
    throw Error(stage + ": the values became NaN or infinite (broken weights, config or settings)");
}

void StepFiniteness::check() const {
  if (flags_.empty()) return;
  const at::Tensor ok = at::stack(flags_).cpu();  // one read for all steps
  for (size_t i = 0; i < stages_.size(); ++i)
    if (!ok[i].item<bool>())
      throw Error(stages_[i] + ": the values became NaN or infinite (broken weights, config or settings)");
}

std::unique_ptr<Pipeline> load_pipeline(const std::string& dir, const at::Device& device, at::ScalarType dtype,
                                        const PipelineLoadOptions& load) {
  const nn::Int8Compute int8 = nn::parse_quantize(load.quantize);  // a bad name is refused before any work
  const ModelIndex index = open_pipeline_folder(dir, load.vae_dir.empty());
  // A Sprint transformer embeds the guidance scale; a flow teacher's does not and needs real CFG.
  const auto transformer_config = load_sana_transformer_config((fs::path(dir) / "transformer" / "config.json").string());
  if (!transformer_config.guidance_embeds && index.class_name != "SanaPipeline" &&
      index.class_name != "SanaControlNetPipeline")
    throw Error("model directory " + dir + ": the transformer has no guidance embedding, so this is a SANA flow "
                "model, but model_index.json names " + index.class_name + " instead of SanaPipeline");
  const std::string scheduler = (fs::path(dir) / "scheduler" / "scheduler_config.json").string();
  PipelineComponents c = PipelineComponents::from_pretrained(dir, device, dtype, load.vae_dir, load.vae_dtype);
  std::unique_ptr<Pipeline> pipe;
  if (transformer_config.guidance_embeds)
    pipe = std::make_unique<SanaSprintPipeline>(std::move(c), load_scm_scheduler_config(scheduler));
  else
    pipe = std::make_unique<SanaPipeline>(std::move(c), load_flow_scheduler_config(scheduler));
  if (!load.controlnet_dir.empty()) pipe->components.attach_controlnet(load.controlnet_dir, dtype);
  if (!load.tiny_vae_dir.empty())
    pipe->components.attach_tiny_vae(load.tiny_vae_dir, load.vae_dtype.value_or(dtype));
  for (const LoraSpec& lora : load.loras) pipe->components.apply_lora(lora);
  pipe->components.quantize_int8({int8, load.quantize_min_weights});
  return pipe;
}

}  // namespace sana
