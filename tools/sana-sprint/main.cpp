// sana-sprint: command line front end. Subcommands are thin layers over the library.
#include <CLI/CLI.hpp>
#include <c10/core/InferenceMode.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <set>
#include <sstream>

#include "sana/error.h"
#include "sana/io/config.h"
#include "sana/io/image.h"
#include "sana/io/safetensors.h"
#include "sana/pipeline/sana_sprint.h"
#include "sana/runtime.h"
#include "sana/shapes/eval.h"
#include "sana/shapes/world.h"
#include "sana/train/trainer.h"
#include <nlohmann/json.hpp>

namespace fs = std::filesystem;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

void note(const std::string& msg) { std::fprintf(stderr, "[sana-sprint] %s\n", msg.c_str()); }

// ---- inspect ---------------------------------------------------------------------------------------------------
int run_inspect(const std::string& path) {
  auto open = [&]() {
    if (!fs::is_directory(path)) return sana::Checkpoint::open(path);
    for (const char* base : {"diffusion_pytorch_model", "model"})
      if (fs::exists(fs::path(path) / (std::string(base) + ".safetensors")) ||
          fs::exists(fs::path(path) / (std::string(base) + ".safetensors.index.json")))
        return sana::Checkpoint::open_in_directory(path, base);
    return sana::Checkpoint::open_in_directory(path, "diffusion_pytorch_model");
  };
  const sana::Checkpoint ckpt = open();
  int64_t total = 0;
  for (const auto& name : ckpt.names()) {
    const auto& info = ckpt.info(name);
    int64_t numel = 1;
    for (auto d : info.shape) numel *= d;
    total += numel;
    std::cout << name << "  " << sana::safetensors_dtype_name(info.dtype) << "  "
              << c10::str(at::IntArrayRef(info.shape)) << "\n";
  }
  for (const auto& [k, v] : ckpt.metadata()) std::cout << "metadata " << k << " = " << v << "\n";
  std::cout << ckpt.names().size() << " tensors, " << total << " elements\n";
  return 0;
}

// ---- generate --------------------------------------------------------------------------------------------------
struct GenerateArgs {
  std::string model, prompt, output = "output.png", device = "cpu", dtype = "fp32", negative_prompt, sampler = "euler";
  int steps = 2, width = 1024, height = 1024, batch = 1, max_sequence_length = 300;
  int64_t seed = 42;
  double guidance = 4.5, max_timesteps = 1.57080, intermediate = 1.3;
  std::vector<double> timesteps;
  bool no_chi = false, no_binning = false, vae_tiling = false;
  std::set<std::string> given;  // flags typed on the command line (others may come from generation_defaults.json)
};

// A model folder's generation_defaults.json (written by sana-sprint train / distill) fills the flags not given.
void apply_generation_defaults(GenerateArgs& a) {
  const fs::path p = fs::path(a.model) / "generation_defaults.json";
  if (!fs::exists(p)) return;
  const auto j = nlohmann::json::parse(sana::read_text_file(p.string()), nullptr, false);
  if (!j.is_object()) throw sana::Error(p.string() + ": not a JSON object");
  auto take = [&](const char* flag, const char* key, auto& value) {
    if (a.given.count(flag) || !j.contains(key)) return;
    try {
      value = j[key].get<std::decay_t<decltype(value)>>();
    } catch (const std::exception&) {
      throw sana::Error(p.string() + ": '" + key + "' has the wrong type");
    }
  };
  take("height", "height", a.height);
  take("width", "width", a.width);
  take("steps", "num_inference_steps", a.steps);
  take("guidance", "guidance_scale", a.guidance);
  take("max-sequence-length", "max_sequence_length", a.max_sequence_length);
  bool chi = !a.no_chi, binning = !a.no_binning;
  take("no-chi", "use_complex_human_instruction", chi);
  take("no-resolution-binning", "resolution_binning", binning);
  a.no_chi = !chi;
  a.no_binning = !binning;
}

std::string output_path(const std::string& output, int index, int count) {
  if (count == 1) return output;
  const fs::path p(output);
  return (p.parent_path() / (p.stem().string() + "_" + std::to_string(index + 1) + p.extension().string())).string();
}

int run_generate(GenerateArgs a) {
  if (a.model.empty()) {
    a.model = SANA_DEFAULT_MODEL;
    if (!fs::exists(fs::path(a.model) / "model_index.json"))
      throw sana::Error("no -m/--model given and the default model " + a.model +
                        " is not installed; pass -m with a diffusers SANA-Sprint directory");
  }
  apply_generation_defaults(a);
  if (a.prompt.empty()) throw sana::Error("-p/--prompt: an empty prompt");
  if (a.steps < 1) throw sana::Error("--steps must be at least 1, got " + std::to_string(a.steps));
  if (fs::path(a.output).extension() != ".png") throw sana::Error("-o/--output: " + a.output + " must end in .png");
  const at::Device device = sana::parse_device(a.device);
  const at::ScalarType dtype = sana::parse_dtype(a.dtype);

  // Size errors before minutes of loading: the VAE factor is in its config.
  if (const fs::path vae_cfg = fs::path(a.model) / "vae" / "config.json"; fs::exists(vae_cfg))
    sana::check_image_size(a.height, a.width, sana::load_autoencoder_dc_config(vae_cfg.string()).spatial_factor());

  double t0 = now();
  note("loading " + a.model + " (" + a.dtype + " on " + device.str() + ")");
  const auto pipe = sana::SanaSprintPipeline::from_pretrained(a.model, device, dtype);
  note("loaded in " + c10::str(std::round((now() - t0) * 10) / 10) + " s");

  sana::GenerateOptions o;
  o.prompts = {a.prompt};
  o.num_images_per_prompt = a.batch;
  o.height = a.height;
  o.width = a.width;
  o.guidance_scale = a.guidance;
  if (a.seed < 0) a.seed = std::random_device{}() & 0x7fffffff;
  o.seed = static_cast<uint64_t>(a.seed);
  o.schedule.steps = a.steps;
  o.schedule.max_timesteps = a.max_timesteps;
  if (a.steps == 2) o.schedule.intermediate_timesteps = a.intermediate;
  o.schedule.timesteps = a.timesteps;
  o.prompt.use_complex_human_instruction = !a.no_chi;
  o.resolution_binning = !a.no_binning;
  o.tiled_decode = a.vae_tiling;
  o.prompt.max_sequence_length = a.max_sequence_length;
  o.flow.steps = a.steps;
  o.flow.solver = a.sampler;
  o.negative_prompt = a.negative_prompt;

  t0 = now();
  const auto r = pipe.generate(o, [](const std::string& stage, double s) {
    note(stage + ": " + c10::str(std::round(s * 100) / 100) + " s");
  });
  std::ostringstream ts;
  for (int64_t i = 0; i < r.timesteps.size(0); ++i) ts << (i ? "," : "") << r.timesteps[i].item<float>();
  for (int64_t i = 0; i < r.images.size(0); ++i) {
    std::ostringstream params;
    params << a.prompt << "\nSteps: " << a.steps << ", Timesteps: " << ts.str() << ", Sampler: " << (pipe.flow_model ? a.sampler + " + CFG" : std::string("SCM")) << ", Seed: " << a.seed
           << ", Batch index: " << i << ", Size: " << a.width << "x" << a.height << ", Guidance: " << a.guidance
           << ", CHI: " << (a.no_chi ? "off" : "on") << ", Model: " << a.model << ", Dtype: " << a.dtype
           << ", Software: sana-sprint " << SANA_VERSION;
    const std::string path = output_path(a.output, static_cast<int>(i), static_cast<int>(r.images.size(0)));
    sana::save_png(path, r.images[i], {{"parameters", params.str()}});
    note("saved " + path);
  }
  note("generated " + std::to_string(r.images.size(0)) + " image(s) in " + c10::str(std::round((now() - t0) * 10) / 10) +
       " s (seed " + std::to_string(a.seed) + ")");
  return 0;
}

// ---- shapes make-dataset ----------------------------------------------------------------------------------------
int run_make_dataset(const std::string& out, int64_t count, int size, uint64_t seed) {
  if (count < 1) throw sana::Error("--count must be at least 1");
  if (size < 8) throw sana::Error("--size must be at least 8");
  fs::create_directories(out);
  const double t0 = now();
  for (int64_t i = 0; i < count; ++i) {
    const auto scene = sana::shapes::scene_for(seed, i);
    char stem[32];
    std::snprintf(stem, sizeof(stem), "%07lld", static_cast<long long>(i));
    const fs::path base = fs::path(out) / stem;
    // Caption and description first, image last: an image in the folder always has its text beside it.
    for (const auto& [ext, text] : {std::pair<std::string, std::string>{".txt", scene.caption + "\n"},
                                    std::pair<std::string, std::string>{".json", scene.to_json() + "\n"}}) {
      const std::string path = base.string() + ext, tmp = path + ".tmp";
      std::ofstream(tmp) << text;
      fs::rename(tmp, path);
    }
    sana::save_png(base.string() + ".png", sana::shapes::render(scene, size));
    if ((i + 1) % 1000 == 0 || i + 1 == count)
      note("wrote " + std::to_string(i + 1) + "/" + std::to_string(count) + " images (" +
           c10::str(std::round((now() - t0) * 10) / 10) + " s)");
  }
  return 0;
}

// ---- eval (a folder of images with their descriptions) -----------------------------------------------------------
int run_eval_folder(const std::string& dir, const std::string& json_out) {
  if (!fs::is_directory(dir)) throw sana::Error("--images: " + dir + " is not a directory");
  sana::shapes::EvalReport report;
  int64_t n = 0;
  std::vector<fs::path> images;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".png") images.push_back(e.path());
  std::sort(images.begin(), images.end());
  for (const auto& png : images) {
    fs::path desc = png;
    desc.replace_extension(".json");
    if (!fs::exists(desc)) throw sana::Error("eval: " + png.string() + " has no description " + desc.string());
    const auto scene = sana::shapes::Scene::from_json(sana::read_text_file(desc.string()));
    sana::shapes::add_result(report, scene, sana::shapes::check(scene, sana::shapes::detect(sana::load_png(png.string()))));
    ++n;
  }
  if (n == 0) throw sana::Error("eval: no .png images in " + dir);
  std::cout << report.to_markdown();
  if (!json_out.empty()) {
    const std::string tmp = json_out + ".tmp";
    std::ofstream(tmp) << report.to_json() << "\n";
    fs::rename(tmp, json_out);
  }
  note("scored " + std::to_string(n) + " images: overall " + c10::str(report.overall()));
  return 0;
}

// ---- eval --model: generate a fixed prompt set and score it --------------------------------------------------------
struct EvalModelArgs {
  GenerateArgs gen;   // model, steps, guidance, device, dtype, sizes
  std::string out, json_out, reference;
  int64_t prompts = 300;
  uint64_t prompt_seed = 20260101;  // the eval prompt stream (the training data uses other seeds)
  bool vae_roundtrip = false;       // score the VAE's reconstructions of the true scenes instead (an upper bound)
};

double psnr(const at::Tensor& a, const at::Tensor& b) {
  const double mse = (a - b).pow(2).mean().item<double>();
  return 10 * std::log10(1.0 / std::max(mse, 1e-12));
}

int run_eval_model(EvalModelArgs e) {
  GenerateArgs& a = e.gen;
  if (a.model.empty()) a.model = SANA_DEFAULT_MODEL;
  apply_generation_defaults(a);
  if (e.prompts < 1) throw sana::Error("--prompts must be at least 1");
  const at::Device device = sana::parse_device(a.device);
  note("loading " + a.model);
  const auto pipe = sana::SanaSprintPipeline::from_pretrained(a.model, device, sana::parse_dtype(a.dtype));
  fs::create_directories(e.out);
  sana::shapes::EvalReport report;
  double seconds = 0, psnr_sum = 0;
  int64_t psnr_n = 0;
  for (int64_t i = 0; i < e.prompts; ++i) {
    const auto scene = sana::shapes::scene_for(e.prompt_seed, i);
    sana::GenerateOptions o;
    o.prompts = {scene.caption};
    o.height = a.height, o.width = a.width, o.guidance_scale = a.guidance;
    o.seed = static_cast<uint64_t>(a.seed + i);
    o.schedule.steps = a.steps;
    o.schedule.max_timesteps = a.max_timesteps;
    if (a.steps == 2) o.schedule.intermediate_timesteps = a.intermediate;
    o.prompt.use_complex_human_instruction = !a.no_chi;
    o.prompt.max_sequence_length = a.max_sequence_length;
    o.resolution_binning = !a.no_binning;
    o.flow.steps = a.steps;
    o.flow.solver = a.sampler;
    const double t0 = now();
    at::Tensor image;
    if (e.vae_roundtrip) {
      c10::InferenceMode guard;
      const at::Tensor x = (sana::shapes::render(scene, a.height).unsqueeze(0) * 2 - 1).to(device, pipe.vae->dtype());
      image = (pipe.vae->decode(pipe.vae->encode(x)).to(at::kFloat).cpu()[0] / 2 + 0.5).clamp(0, 1);
    } else {
      image = pipe.generate(o).images[0];
    }
    seconds += now() - t0;
    char stem[32];
    std::snprintf(stem, sizeof(stem), "%07lld", static_cast<long long>(i));
    const fs::path base = fs::path(e.out) / stem;
    sana::save_png(base.string() + ".png", image);
    std::ofstream(base.string() + ".json") << scene.to_json() << "\n";
    // Score the 8-bit image as written (what `eval --images` would read back), not the float tensor.
    const at::Tensor saved = sana::load_png(base.string() + ".png");
    sana::shapes::add_result(report, scene, sana::shapes::check(scene, sana::shapes::detect(saved)));
    if (!e.reference.empty()) {
      const fs::path ref = fs::path(e.reference) / (std::string(stem) + ".png");
      if (!fs::exists(ref)) throw sana::Error("--reference: " + ref.string() + " does not exist");
      psnr_sum += psnr(saved, sana::load_png(ref.string()));
      ++psnr_n;
    }
    if ((i + 1) % 50 == 0 || i + 1 == e.prompts)
      note("eval: " + std::to_string(i + 1) + "/" + std::to_string(e.prompts) + " images, overall so far " +
           c10::str(report.overall()));
  }
  std::cout << report.to_markdown();
  const double ms = 1000 * seconds / e.prompts;
  std::cout << "\nms per image (batch 1, text encoder + sampling + decode): " << ms << "\n";
  if (psnr_n) std::cout << "PSNR against " << e.reference << ": " << psnr_sum / psnr_n << " dB\n";
  if (!e.json_out.empty()) {
    auto j = nlohmann::json::parse(report.to_json());
    j["ms_per_image"] = ms;
    j["model"] = a.model;
    j["steps"] = a.steps;
    j["guidance"] = a.guidance;
    j["prompts"] = e.prompts;
    j["prompt_seed"] = e.prompt_seed;
    if (psnr_n) j["psnr_vs_reference"] = psnr_sum / psnr_n;
    const std::string tmp = e.json_out + ".tmp";
    std::ofstream(tmp) << j.dump(2) << "\n";
    fs::rename(tmp, e.json_out);
  }
  return 0;
}

void add_train_options(CLI::App* app, sana::TrainOptions& o) {
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
  app->add_option("--sample-every", o.sample_every, "sample grid every N steps (0: at the end only, -1: never)")->capture_default_str();
  app->add_flag("--resume", o.resume, "continue from <out>/training/checkpoint.safetensors");
  app->add_option("--device", o.device, "cpu | cuda[:N]")->capture_default_str();
  app->add_option("--dtype", o.dtype, "fp32 | bf16 | fp16")->capture_default_str();
  app->add_option("--backend", o.backend, "c10d backend with WORLD_SIZE > 1: gloo | nccl | auto")->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sana-sprint: SANA-Sprint one-step text-to-image in C++ (LibTorch)"};
  app.require_subcommand(1);
  app.fallthrough();  // -t/--threads also after the subcommand, as stable-diffusion.cpp users type it
  int threads = 0;
  app.add_option("-t,--threads", threads, "CPU threads (default: all cores)")->check(CLI::NonNegativeNumber);

  auto* inspect = app.add_subcommand("inspect", "validate a safetensors checkpoint and list its tensors");
  std::string inspect_path;
  inspect->add_option("path", inspect_path, "a .safetensors file, a .safetensors.index.json, or a component folder")
      ->required();

  GenerateArgs g;
  auto* gen = app.add_subcommand("generate", "text to image");
  gen->add_option("-m,--model", g.model, "diffusers SanaSprintPipeline directory (default: the bundled model)");
  gen->add_option("-p,--prompt", g.prompt, "the prompt")->required();
  gen->add_option("-o,--output", g.output, "output PNG; with -b N, NAME_1.png ... NAME_N.png")->capture_default_str();
  gen->add_option("--steps", g.steps, "sampling steps (1-4 typical)")->capture_default_str();
  gen->add_option("-s,--seed", g.seed, "seed of the CPU generator (-1: random)")->capture_default_str();
  gen->add_option("-W,--width", g.width, "image width (a multiple of the VAE factor: 32 for the real DC-AE, 8 for the shapes models)")->capture_default_str();
  gen->add_option("-H,--height", g.height, "image height")->capture_default_str();
  gen->add_option("--guidance", g.guidance, "distilled guidance scale (embedded; no extra pass)")->capture_default_str();
  gen->add_option("-b,--batch-count", g.batch, "images for the prompt, in one batch")->capture_default_str()
      ->check(CLI::PositiveNumber);
  gen->add_option("--device", g.device, "cpu | cuda[:N]")->capture_default_str();
  gen->add_option("--dtype", g.dtype, "fp32 | bf16 | fp16")->capture_default_str();
  gen->add_option("--max-timesteps", g.max_timesteps, "first TrigFlow time")->capture_default_str();
  gen->add_option("--intermediate-timesteps", g.intermediate, "middle time of the 2-step schedule")
      ->capture_default_str();
  gen->add_option("--timesteps", g.timesteps, "custom schedule, steps+1 decreasing values ending in 0")->delimiter(',');
  gen->add_flag("--no-chi", g.no_chi, "do not prepend the complex human instruction to the prompt");
  gen->add_flag("--no-resolution-binning", g.no_binning, "generate at exactly -W x -H (1024-px models bin by default)");
  gen->add_flag("--vae-tiling", g.vae_tiling, "decode in overlapping tiles (less memory for large images)");
  gen->add_option("--max-sequence-length", g.max_sequence_length, "text tokens kept after the encoder")->capture_default_str();
  gen->add_option("--negative-prompt", g.negative_prompt, "flow teachers: the CFG negative prompt")->capture_default_str();
  gen->add_option("--sampler", g.sampler, "flow teachers: euler | dpm++2m")->capture_default_str();

  sana::TrainOptions vae_o;
  std::string vae_data, vae_config;
  auto* tvae = app.add_subcommand("train-vae", "train a DC-AE by reconstruction on an image-caption folder");
  tvae->add_option("--data", vae_data, "image-caption folder")->required();
  tvae->add_option("--config", vae_config, "AutoencoderDC config.json")->required();
  add_train_options(tvae, vae_o);

  std::string te_data, te_config, te_out;
  int te_vocab = 384;
  uint64_t te_seed = 0;
  auto* tenc = app.add_subcommand("text-encoder", "train a SentencePiece tokenizer on captions and make a random frozen Gemma-2");
  tenc->add_option("--data", te_data, "image-caption folder (its .txt captions)")->required();
  tenc->add_option("--config", te_config, "Gemma2 config.json (vocab_size is set to the tokenizer's)")->required();
  tenc->add_option("--vocab-size", te_vocab, "SentencePiece vocabulary size (>= 260: byte fallback)")->capture_default_str();
  tenc->add_option("-s,--seed", te_seed, "seed of the random weights")->capture_default_str();
  tenc->add_option("-o,--out", te_out, "folder that gets tokenizer/ and text_encoder/")->required();

  sana::CacheOptions cache_o;
  cache_o.prompt.use_complex_human_instruction = false;
  bool cache_chi = false;
  auto* cache = app.add_subcommand("cache", "encode an image-caption folder once: VAE latents and text embeddings");
  cache->add_option("--data", cache_o.data, "image-caption folder")->required();
  cache->add_option("--base", cache_o.base, "folder with tokenizer/, text_encoder/, vae/")->required();
  cache->add_option("-o,--out", cache_o.out, "cache folder")->required();
  cache->add_option("--max-sequence-length", cache_o.prompt.max_sequence_length, "text tokens kept")->capture_default_str();
  cache->add_flag("--chi", cache_chi, "prepend the complex human instruction (the real models' setting)");
  cache->add_option("-b,--batch-size", cache_o.batch_size, "encoding batch")->capture_default_str();

  sana::TrainOptions flow_o;
  sana::FlowTrainOptions flow;
  auto* train = app.add_subcommand("train", "train a SANA teacher by flow matching on a latent cache");
  train->add_option("--cache", flow.cache, "latent cache (sana-sprint cache)")->required();
  train->add_option("--base", flow.base, "folder with tokenizer/, text_encoder/, vae/ (copied into the output)")->required();
  train->add_option("--config", flow.config, "SanaTransformer2DModel config.json")->required();
  train->add_option("--logit-mean", flow.logit_mean, "logit-normal time law: mean")->capture_default_str();
  train->add_option("--logit-std", flow.logit_std, "logit-normal time law: std")->capture_default_str();
  train->add_option("--caption-dropout", flow.caption_dropout, "probability of the empty prompt (for CFG)")->capture_default_str();
  add_train_options(train, flow_o);

  sana::TrainOptions dist_o;
  sana::DistillOptions dist;
  bool no_misaligned = false;
  auto* distill = app.add_subcommand("distill", "distil a flow teacher into a 1-4 step SANA-Sprint student (sCM + LADD)");
  distill->add_option("--teacher", dist.teacher, "teacher SanaPipeline folder (sana-sprint train)")->required();
  distill->add_option("--cache", dist.cache, "latent cache")->required();
  distill->add_option("--loss", dist.loss, "scm | ladd | hybrid")->capture_default_str();
  distill->add_option("--cfg-scales", dist.cfg_scales, "teacher CFG scales, one drawn per sample")->delimiter(',')
      ->capture_default_str();
  distill->add_option("--tangent-warmup", dist.tangent_warmup, "tangent warm-up iterations")->capture_default_str();
  distill->add_option("--adv-weight", dist.adv_weight, "weight of the adversarial loss in the G loss")->capture_default_str();
  distill->add_option("--head-blocks", dist.head_block_ids, "teacher blocks with discriminator heads (0-based)")
      ->delimiter(',');
  distill->add_option("--largest-timestep-prob", dist.largest_timestep_prob, "max-time weighting probability")
      ->capture_default_str();
  distill->add_option("--lr-d", dist.lr_d, "discriminator learning rate (0: --lr)")->capture_default_str();
  distill->add_option("--p-mean", dist.p_mean, "sCM time law: P_mean")->capture_default_str();
  distill->add_option("--p-std", dist.p_std, "sCM time law: P_std")->capture_default_str();
  distill->add_flag("--no-misaligned-pairs", no_misaligned, "no rolled real pairs among the fakes");
  add_train_options(distill, dist_o);

  auto* shapes = app.add_subcommand("shapes", "the shapes world: synthetic training data");
  shapes->require_subcommand(1);
  auto* make = shapes->add_subcommand("make-dataset", "write N rendered scenes with captions (image-caption folder)");
  std::string ds_out;
  int64_t ds_count = 1000;
  int ds_size = 64;
  uint64_t ds_seed = 0;
  make->add_option("-o,--out", ds_out, "output folder (NNNNNNN.png, .txt caption, .json description)")->required();
  make->add_option("-n,--count", ds_count, "number of images")->capture_default_str();
  make->add_option("--size", ds_size, "image size in pixels")->capture_default_str();
  make->add_option("-s,--seed", ds_seed, "seed of the scene stream")->capture_default_str();

  auto* eval = app.add_subcommand("eval", "ShapesEval: score a folder of images, or a model on a fixed prompt set");
  std::string eval_images, eval_json;
  EvalModelArgs em;
  em.gen.seed = 0;
  auto* images_opt = eval->add_option("--images", eval_images, "folder of NNNNNNN.png with NNNNNNN.json descriptions");
  auto* model_opt = eval->add_option("-m,--model", em.gen.model, "generate the prompt set with this pipeline folder");
  images_opt->excludes(model_opt);
  eval->add_option("--json", eval_json, "also write the report as JSON here");
  eval->add_option("-o,--out", em.out, "with -m: folder for the generated images")->capture_default_str();
  eval->add_option("--prompts", em.prompts, "with -m: size of the prompt set")->capture_default_str();
  eval->add_option("--prompt-seed", em.prompt_seed, "with -m: seed of the prompt set")->capture_default_str();
  eval->add_option("-s,--seed", em.gen.seed, "with -m: image i uses seed + i")->capture_default_str();
  eval->add_option("--steps", em.gen.steps, "with -m: sampling steps");
  eval->add_option("--guidance", em.gen.guidance, "with -m: guidance scale");
  eval->add_option("--sampler", em.gen.sampler, "with -m, flow teachers: euler | dpm++2m")->capture_default_str();
  eval->add_flag("--vae-roundtrip", em.vae_roundtrip, "with -m: score the VAE's reconstructions of the true scenes");
  eval->add_option("--reference", em.reference, "with -m: folder of images to compute PSNR against (same names)");
  eval->add_option("--device", em.gen.device, "cpu | cuda[:N]")->capture_default_str();
  eval->add_option("--dtype", em.gen.dtype, "fp32 | bf16 | fp16")->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "sana-sprint: error: %s (see --help)\n", e.what());
    return 2;
  }
  try {
    sana::configure_runtime(threads);
    if (*inspect) return run_inspect(inspect_path);
    if (*gen) {
      for (const char* flag : {"height", "width", "steps", "guidance", "max-sequence-length", "no-chi",
                               "no-resolution-binning"})
        if (gen->get_option(std::string("--") + flag)->count()) g.given.insert(flag);
      return run_generate(g);
    }
    if (*tvae) {
      sana::train_vae(vae_data, vae_config, vae_o);
      return 0;
    }
    if (*tenc) {
      sana::make_text_encoder(te_data, te_config, te_vocab, te_seed, te_out);
      return 0;
    }
    if (*cache) {
      cache_o.prompt.use_complex_human_instruction = cache_chi;
      sana::build_latent_cache(cache_o);
      return 0;
    }
    if (*train) {
      sana::train_flow(flow, flow_o);
      return 0;
    }
    if (*distill) {
      dist.misaligned_pairs = !no_misaligned;
      sana::distill(dist, dist_o);
      return 0;
    }
    if (*eval && !em.gen.model.empty()) {
      for (const char* flag : {"steps", "guidance"})
        if (eval->get_option(std::string("--") + flag)->count()) em.gen.given.insert(flag);
      if (em.out.empty()) throw sana::Error("eval -m: -o/--out (folder for the generated images) is required");
      em.json_out = eval_json;
      return run_eval_model(em);
    }
    if (*eval && eval_images.empty()) throw sana::Error("eval: give --images DIR or -m MODEL");
    if (*make) return run_make_dataset(ds_out, ds_count, ds_size, ds_seed);
    if (*eval) return run_eval_folder(eval_images, eval_json);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sana-sprint: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
