#include "sana/pipeline/sana_sprint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "sana/diffusion/trigflow.h"
#include "sana/error.h"

namespace fs = std::filesystem;

namespace sana {
namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// diffusers ASPECT_RATIO_1024_BIN: height/width ratio -> (height, width).
const std::vector<std::pair<double, std::pair<int, int>>>& bins_1024() {
  static const std::vector<std::pair<double, std::pair<int, int>>> bins = {
      {0.25, {512, 2048}},  {0.28, {512, 1856}},  {0.32, {576, 1792}},  {0.33, {576, 1728}}, {0.35, {576, 1664}},
      {0.4, {640, 1600}},   {0.42, {640, 1536}},  {0.48, {704, 1472}},  {0.5, {704, 1408}},  {0.52, {704, 1344}},
      {0.57, {768, 1344}},  {0.6, {768, 1280}},   {0.68, {832, 1216}},  {0.72, {832, 1152}}, {0.78, {896, 1152}},
      {0.82, {896, 1088}},  {0.88, {960, 1088}},  {0.94, {960, 1024}},  {1.0, {1024, 1024}}, {1.07, {1024, 960}},
      {1.13, {1088, 960}},  {1.21, {1088, 896}},  {1.29, {1152, 896}},  {1.38, {1152, 832}}, {1.46, {1216, 832}},
      {1.67, {1280, 768}},  {1.75, {1344, 768}},  {2.0, {1408, 704}},   {2.09, {1472, 704}}, {2.4, {1536, 640}},
      {2.5, {1600, 640}},   {3.0, {1728, 576}},   {4.0, {2048, 512}}};
  return bins;
}

void require_dir(const fs::path& p, const std::string& what) {
  if (!fs::is_directory(p))
    throw Error("model directory " + p.parent_path().string() + " has no " + p.filename().string() + "/ (" + what + ")");
}

}  // namespace

void check_image_size(int height, int width, int f) {
  if (height <= 0 || width <= 0 || height % f != 0 || width % f != 0)
    throw Error("--height/--width: " + std::to_string(height) + "x" + std::to_string(width) +
                " must be positive multiples of the VAE factor " + std::to_string(f));
}

std::pair<int, int> closest_1024_bin(int height, int width) {
  const double ratio = static_cast<double>(height) / width;
  const auto* best = &bins_1024().front();
  for (const auto& b : bins_1024())
    if (std::abs(b.first - ratio) < std::abs(best->first - ratio)) best = &b;
  return best->second;
}

SanaSprintPipeline SanaSprintPipeline::from_pretrained(const std::string& dir, const at::Device& device,
                                                       at::ScalarType dtype) {
  const fs::path root(dir);
  if (!fs::is_directory(root)) throw Error("model directory " + dir + " does not exist");
  if (!fs::exists(root / "model_index.json"))
    throw Error("model directory " + dir + " has no model_index.json (is it a diffusers pipeline folder?)");
  const ModelIndex index = load_model_index((root / "model_index.json").string());
  for (const char* part : {"tokenizer", "text_encoder", "transformer", "vae", "scheduler"})
    if (!index.components.count(part))
      throw Error("model directory " + dir + ": model_index.json lists no '" + std::string(part) + "' component");
  require_dir(root / "tokenizer", "Gemma tokenizer");
  require_dir(root / "text_encoder", "Gemma2Model");
  require_dir(root / "transformer", "SanaTransformer2DModel");
  require_dir(root / "vae", "AutoencoderDC");
  require_dir(root / "scheduler", "scheduler config");

  const auto options = at::TensorOptions().dtype(dtype).device(device);
  SanaSprintPipeline p;
  p.device = device;
  p.tokenizer = std::make_shared<GemmaTokenizer>(GemmaTokenizer::from_pretrained((root / "tokenizer").string()));
  p.text_encoder = Gemma2Model::from_pretrained((root / "text_encoder").string(), options);
  p.transformer = SanaTransformer2DModel::from_pretrained((root / "transformer").string(), options);
  p.vae = AutoencoderDC::from_pretrained((root / "vae").string(), options);
  const std::string sched_path = (root / "scheduler" / "scheduler_config.json").string();
  p.flow_model = !p.transformer->config().guidance_embeds;
  if (!p.flow_model) {
    p.scheduler_config = load_scm_scheduler_config(sched_path);
    return p;
  }
  // A SANA flow-matching model (diffusers SanaPipeline): FlowMatchEulerDiscreteScheduler ("shift") or
  // DPMSolverMultistepScheduler ("flow_shift") config.
  if (index.class_name != "SanaPipeline")
    throw Error("model directory " + dir + ": the transformer has no guidance embedding, so this is a SANA flow model, "
                "but model_index.json names " + index.class_name + " instead of SanaPipeline");
  const auto j = nlohmann::json::parse(read_text_file(sched_path), nullptr, false);
  if (!j.is_object()) throw Error(sched_path + ": not a JSON object");
  for (const char* key : {"shift", "flow_shift"})
    if (j.contains(key) && j[key].is_number()) p.flow_shift = j[key].get<double>();
  return p;
}

std::pair<at::Tensor, at::Tensor> SanaSprintPipeline::encode_prompt(const std::vector<std::string>& prompts,
                                                                    const PromptOptions& options) const {
  return encode_prompt_with(*tokenizer, *text_encoder, prompts, options, device);
}

std::pair<at::Tensor, at::Tensor> encode_prompt_with(const GemmaTokenizer& tokenizer, const Gemma2Model& text_encoder,
                                                     const std::vector<std::string>& prompts,
                                                     const PromptOptions& options, const at::Device& device) {
  const TokenizedPrompts tok = tokenize_prompts(tokenizer, prompts, options);
  const at::Tensor hidden = text_encoder.forward(tok.input_ids.to(device), tok.attention_mask.to(device));
  const at::Tensor index = tok.select_index.to(device);
  return {hidden.index_select(1, index), tok.attention_mask.to(device).index_select(1, index)};
}

GenerateResult SanaSprintPipeline::generate(const GenerateOptions& o, const ProgressFn& progress) const {
  c10::InferenceMode inference;
  auto report = [&](const std::string& stage, double t0) {
    if (progress) progress(stage, now() - t0);
  };
  const int f = vae_scale_factor();
  check_image_size(o.height, o.width, f);
  if (o.num_images_per_prompt < 1) throw Error("--batch-count must be at least 1");

  GenerateResult r;
  // 1. Resolution binning: the 1024-px models were trained on fixed aspect-ratio bins.
  r.generated_height = o.height;
  r.generated_width = o.width;
  const bool binning = o.resolution_binning && transformer->config().sample_size == 32 && f == 32;
  if (binning) std::tie(r.generated_height, r.generated_width) = closest_1024_bin(o.height, o.width);

  // 2. Prompt embeddings, repeated per image (prompt-major order).
  double t0 = now();
  auto [embeds, mask] = encode_prompt(o.prompts, o.prompt);
  if (o.num_images_per_prompt > 1) {
    embeds = embeds.repeat_interleave(o.num_images_per_prompt, 0);
    mask = mask.repeat_interleave(o.num_images_per_prompt, 0);
  }
  r.prompt_embeds = embeds;
  r.prompt_attention_mask = mask;
  report("text encoder", t0);

  if (flow_model) {
    generate_flow(o, r, embeds, mask, binning, report);
    return r;
  }

  // 3. Schedule; 4. initial noise, drawn first from the one CPU generator of the call.
  SCMScheduler scheduler(scheduler_config);
  r.timesteps = scheduler.set_timesteps(o.schedule);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const int64_t B = embeds.size(0);
  const double sigma_d = scheduler_config.sigma_data;
  r.initial_noise = at::randn({B, transformer->config().in_channels, r.generated_height / f, r.generated_width / f},
                              gen, at::TensorOptions().dtype(at::kFloat));
  at::Tensor x = r.initial_noise.to(device) * sigma_d;

  // 5. Guidance in the embeddings' dtype, then * guidance_embeds_scale (4.5 -> 0.45; bf16 rounds it).
  const at::Tensor guidance =
      at::full({B}, o.guidance_scale, at::TensorOptions().dtype(at::kFloat).device(device)).to(embeds.scalar_type()) *
      transformer->config().guidance_embeds_scale;

  // 6. Steps: F from the TrigFlow view of the backbone, x0 = cos s x - sin s sigma_d F, fresh noise each step.
  const SanaTrigFlow model(transformer);
  SanaTransformerInputs cond;
  cond.encoder_hidden_states = embeds;
  cond.encoder_attention_mask = mask;
  cond.guidance = guidance;
  at::Tensor x0;
  const int n = scheduler.num_steps();
  for (int i = 0; i < n; ++i) {
    t0 = now();
    // The reference rounds the time to the embeddings' dtype before the time map.
    const at::Tensor t = r.timesteps[i].expand({B}).to(device).to(embeds.scalar_type()).to(at::kFloat);
    const at::Tensor F = model.forward(x / sigma_d, t, cond);
    std::tie(x, x0) = scheduler.step(F.to(at::kFloat) * sigma_d, i, x, gen);
    r.denoised.push_back(x0);
    report("step " + std::to_string(i + 1) + "/" + std::to_string(n), t0);
  }

  // 7. Decode x0 / sigma_d / scaling_factor (in finish).
  r.final_latents = x0 / sigma_d;
  finish(o, r, binning, report);
  return r;
}

void SanaSprintPipeline::generate_flow(const GenerateOptions& o, GenerateResult& r, const at::Tensor& embeds,
                                       const at::Tensor& mask, bool binning,
                                       const std::function<void(const std::string&, double)>& report) const {
  // Teacher sampling as diffusers' SanaPipeline: real CFG against the negative prompt, latents ~ N(0, 1) first.
  double t0 = now();
  const int64_t B = embeds.size(0);
  auto [neg, neg_mask] = encode_prompt({o.negative_prompt}, o.prompt);
  report("text encoder (negative prompt)", t0);
  const at::Tensor embeds2 = at::cat({neg.expand({B, -1, -1}), embeds});
  const at::Tensor mask2 = at::cat({neg_mask.expand({B, -1}), mask});
  const int f = vae_scale_factor();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  r.initial_noise = at::randn({B, transformer->config().in_channels, r.generated_height / f, r.generated_width / f},
                              gen, at::TensorOptions().dtype(at::kFloat));
  const double scale = 1000.0 * transformer->config().timestep_scale;  // scheduler t = 1000 s, times timestep_scale
  const auto velocity = [&](const at::Tensor& x, const at::Tensor& s, const at::Tensor& e, const at::Tensor& m) {
    SanaTransformerInputs in;
    in.hidden_states = x.to(transformer->dtype());
    in.encoder_hidden_states = e, in.encoder_attention_mask = m;
    in.timestep = (s * scale).to(e.scalar_type());
    return transformer->forward(in).to(at::kFloat);
  };
  const FlowVelocityFn v = classifier_free_guidance(
      [&](const at::Tensor& x, const at::Tensor& s) { return velocity(x, s, embeds2, mask2); },
      [&](const at::Tensor& x, const at::Tensor& s) { return velocity(x, s, embeds, mask); }, o.guidance_scale);
  FlowSampleOptions so = o.flow;
  so.shift = flow_shift;
  r.timesteps = flow_timesteps(so.steps, so.shift);
  t0 = now();
  const at::Tensor x0 = sample_flow(v, r.initial_noise.to(device), so, [&](int i, double) {
    report("step " + std::to_string(i + 1) + "/" + std::to_string(so.steps), t0);
    t0 = now();
  });
  r.denoised.push_back(x0);
  r.final_latents = x0;
  finish(o, r, binning, report);
}

void SanaSprintPipeline::finish(const GenerateOptions& o, GenerateResult& r, bool binning,
                                const std::function<void(const std::string&, double)>& report) const {
  // Decode final_latents / scaling_factor; back from the bin: scale to cover, then centre-crop; [-1, 1] -> [0, 1].
  const double t0 = now();
  const at::Tensor z = r.final_latents.to(vae->dtype()) / vae->config().scaling_factor;
  r.vae_decoded = (o.tiled_decode ? vae->decode_tiled(z, o.tiling) : vae->decode(z)).to(at::kFloat);
  report("vae decode", t0);
  at::Tensor image = r.vae_decoded;
  if (binning && (r.generated_height != o.height || r.generated_width != o.width)) {
    const double scale = std::max(static_cast<double>(o.height) / r.generated_height,
                                  static_cast<double>(o.width) / r.generated_width);
    const int64_t rh = static_cast<int64_t>(r.generated_height * scale), rw = static_cast<int64_t>(r.generated_width * scale);
    image = at::upsample_bilinear2d(image, {rh, rw}, /*align_corners=*/false);
    image = image.narrow(2, (rh - o.height) / 2, o.height).narrow(3, (rw - o.width) / 2, o.width);
  }
  r.images = (image / 2 + 0.5).clamp(0, 1).cpu();
}

}  // namespace sana
