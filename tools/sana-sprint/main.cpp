// sana-sprint: command line front end. Subcommands are thin layers over the library.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

#include "sana/error.h"
#include "sana/io/config.h"
#include "sana/io/image.h"
#include "sana/io/safetensors.h"
#include "sana/pipeline/sana_sprint.h"
#include "sana/runtime.h"
#include "sana/shapes/eval.h"
#include "sana/shapes/world.h"

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
  std::string model, prompt, output = "output.png", device = "cpu", dtype = "fp32";
  int steps = 2, width = 1024, height = 1024, batch = 1;
  int64_t seed = 42;
  double guidance = 4.5, max_timesteps = 1.57080, intermediate = 1.3;
  std::vector<double> timesteps;
  bool no_chi = false, no_binning = false, vae_tiling = false;
};

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

  t0 = now();
  const auto r = pipe.generate(o, [](const std::string& stage, double s) {
    note(stage + ": " + c10::str(std::round(s * 100) / 100) + " s");
  });
  std::ostringstream ts;
  for (int64_t i = 0; i < r.timesteps.size(0); ++i) ts << (i ? "," : "") << r.timesteps[i].item<float>();
  for (int64_t i = 0; i < r.images.size(0); ++i) {
    std::ostringstream params;
    params << a.prompt << "\nSteps: " << a.steps << ", Timesteps: " << ts.str() << ", Sampler: SCM, Seed: " << a.seed
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
  gen->add_option("-W,--width", g.width, "image width (multiple of the VAE factor, 32)")->capture_default_str();
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

  auto* eval = app.add_subcommand("eval", "ShapesEval: score images against their structured descriptions");
  std::string eval_images, eval_json;
  eval->add_option("--images", eval_images, "folder of NNNNNNN.png with NNNNNNN.json descriptions")->required();
  eval->add_option("--json", eval_json, "also write the report as JSON here");

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
    if (*gen) return run_generate(g);
    if (*make) return run_make_dataset(ds_out, ds_count, ds_size, ds_seed);
    if (*eval) return run_eval_folder(eval_images, eval_json);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sana-sprint: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
