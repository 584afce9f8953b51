// `sana-sprint eval`: ShapesEval over a folder of images with their descriptions, or over a model's images of a fixed
// prompt set (with the same generation flags as `generate`).
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>

#include "commands.h"
#include "generation_flags.h"
#include "sana/error.h"
#include "sana/io/atomic_file.h"
#include "sana/io/config.h"
#include "sana/io/image.h"
#include "sana/pipeline/pipeline.h"
#include "sana/runtime.h"
#include "sana/shapes/control_eval.h"
#include "sana/shapes/eval.h"
#include "sana/shapes/object_eval.h"
#include "sana/shapes/world.h"

namespace fs = std::filesystem;

namespace sana::cli {
namespace {

struct EvalCommand {
  std::string images, json_out, out, reference;
  GenerationParams params;
  std::unique_ptr<GenerationFlags> flags;
  int64_t prompts = 300;
  uint64_t prompt_seed = 20260101;  // the eval prompt stream (the training data uses other seeds)
  std::string shapes;               // the prompt set's shapes; empty = the base world's four
  std::string scene;                // a description file: its one prompt at seeds seed .. seed + prompts - 1
  bool vae_roundtrip = false;       // score the VAE's reconstructions of the true scenes instead (an upper bound)
  bool control = false;             // generate with each scene's scribble as the ControlNet's control image
  bool overwrite = false;           // write into a non-empty -o folder, replacing its NNNNNNN.png/.json
};

// Every result of an `eval -m` run.
struct EvalTotals {
  shapes::EvalReport report;
  shapes::ObjectReport objects;
  shapes::ControlReport control;
  double seconds = 0, psnr_sum = 0;
};

std::string stem_of(int64_t i) {
  char stem[32];
  std::snprintf(stem, sizeof(stem), "%07lld", static_cast<long long>(i));
  return stem;
}

double psnr(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes())
    throw Error("--reference: images of " + c10::str(b.sizes()) + " against generated " + c10::str(a.sizes()));
  const double mse = (a - b).pow(2).mean().item<double>();
  return 10 * std::log10(1.0 / std::max(mse, 1e-12));
}

int run_eval_folder(const EvalCommand& c) {
  if (!fs::is_directory(c.images)) throw Error("--images: " + c.images + " is not a directory");
  std::vector<fs::path> pngs;
  for (const auto& e : fs::directory_iterator(c.images))
    if (e.path().extension() == ".png") pngs.push_back(e.path());
  std::sort(pngs.begin(), pngs.end());
  if (pngs.empty()) throw Error("eval: no .png images in " + c.images);
  const auto readable = shapes::readable_shapes(shapes::parse_shapes(c.shapes));
  shapes::EvalReport report;
  shapes::ObjectReport objects;
  for (const auto& png : pngs) {
    fs::path desc = png;
    desc.replace_extension(".json");
    if (!fs::exists(desc)) throw Error("eval: " + png.string() + " has no description " + desc.string());
    shapes::Scene scene;
    try {
      scene = shapes::Scene::from_json(read_text_file(desc.string()));
    } catch (const Error& e) {
      throw Error(desc.string() + ": " + e.what());
    }
    const auto found = shapes::detect(load_png(png.string()), readable);
    shapes::add_result(report, scene, shapes::check(scene, found));
    objects.add(scene, found);
  }
  std::cout << report.to_markdown() << "\n" << objects.to_markdown();
  if (!c.json_out.empty()) {
    auto j = nlohmann::json::parse(report.to_json());
    j["objects"] = nlohmann::json::parse(objects.to_json());
    write_file_atomic(c.json_out, j.dump(2) + "\n");
  }
  note("scored " + std::to_string(pngs.size()) + " images: overall " + c10::str(report.overall()));
  return 0;
}

// The VAE's reconstruction of the true scene (the ceiling every model is under).
at::Tensor vae_roundtrip(const Pipeline& pipe, const shapes::Scene& scene, int size) {
  c10::InferenceMode guard;
  const AutoencoderDC& vae = *pipe.components.vae;
  const at::Tensor x = (shapes::render(scene, size).unsqueeze(0) * 2 - 1).to(pipe.components.device, vae.dtype());
  return (vae.decode(vae.encode(x)).to(at::kFloat).cpu()[0] / 2 + 0.5).clamp(0, 1);
}

void write_eval_json(const EvalCommand& c, const EvalTotals& t, double ms, double psnr_mean) {
  auto j = nlohmann::json::parse(t.report.to_json());
  j["objects"] = nlohmann::json::parse(t.objects.to_json());
  j["control"] = c.control;
  j["control_iou"] = t.control.iou();
  j["control_color_accuracy"] = t.control.color_accuracy();
  j["ms_per_image"] = ms;
  j["model"] = c.params.model;
  j["steps"] = c.params.steps;
  j["guidance"] = c.params.guidance;
  j["prompts"] = c.prompts;
  j["prompt_seed"] = c.prompt_seed;
  if (!c.reference.empty()) j["psnr_vs_reference"] = psnr_mean;
  write_file_atomic(c.json_out, j.dump(2) + "\n");
}

// One scene's image: the VAE's round trip of the true scene, or the model's image of its caption (with --control, of
// its scribble too, `control`). Timed from here: drawing the scribble is the user's part.
at::Tensor image_for(const EvalCommand& c, const Pipeline& pipe, const shapes::Scene& scene, const at::Tensor& control) {
  const GenerationParams& p = c.params;
  if (c.vae_roundtrip) return vae_roundtrip(pipe, scene, p.height);
  GenerateOptions o = to_generate_options(p);
  o.control_image = control;
  return pipe.generate(o).images[0];
}

// Writes image i and its description, scores the 8-bit image as written (what `eval --images` would read back).
void score_image(const EvalCommand& c, const std::vector<shapes::Shape>& palette, int64_t i, const shapes::Scene& scene,
                 const at::Tensor& image, EvalTotals& t) {
  const fs::path base = fs::path(c.out) / stem_of(i);
  save_png(base.string() + ".png", image);
  write_file_atomic(base.string() + ".json", scene.to_json() + "\n");
  const at::Tensor saved = load_png(base.string() + ".png");
  const auto found = shapes::detect(saved, shapes::readable_shapes(palette));
  shapes::add_result(t.report, scene, shapes::check(scene, found));
  t.objects.add(scene, found);
  t.control.add(shapes::control_score(scene, saved));
  if (!c.reference.empty()) {
    const fs::path ref = fs::path(c.reference) / (stem_of(i) + ".png");
    if (!fs::exists(ref)) throw Error("--reference: " + ref.string() + " does not exist");
    t.psnr_sum += psnr(saved, load_png(ref.string()));
  }
}

int run_eval_model(EvalCommand& c) {
  GenerationParams& p = c.params;
  if (c.out.empty()) throw Error("eval -m: -o/--out (folder for the generated images) is required");
  if (c.prompts < 1) throw Error("--prompts must be at least 1");
  std::error_code ec;
  if (!c.overwrite && fs::is_directory(c.out, ec) && !fs::is_empty(c.out, ec))
    throw Error("-o/--out: " + c.out + " is not empty; give --overwrite to replace the images in it, or another folder");
  auto palette = shapes::parse_shapes(c.shapes);
  shapes::Scene fixed;
  if (!c.scene.empty()) {
    try {
      fixed = shapes::Scene::from_json(read_text_file(c.scene));
    } catch (const Error& e) {
      throw Error("--scene: " + c.scene + ": " + e.what());
    }
    for (const auto& o : fixed.objects) palette.push_back(o.shape);  // its shapes are read
  }
  const auto scene_at = [&](int64_t i) { return c.scene.empty() ? shapes::scene_for(c.prompt_seed, i, palette) : fixed; };
  p.prompt = scene_at(0).caption;  // each image's own prompt; validated like the others
  prepare_generation(p, *c.flags);
  resolve_seed(p);
  note("loading " + p.model);
  std::string how;
  const at::ScalarType dtype = load_dtype(p, &how);
  if (!how.empty()) note(how);
  const auto pipe = load_pipeline(p.model, parse_device(p.device), dtype, load_options(p));
  if (c.control && !pipe->components.controlnet)
    throw Error("--control: " + p.model + " has no ControlNet (give --controlnet DIR)");
  fs::create_directories(c.out);
  EvalTotals t;
  const int64_t base_seed = p.seed;
  for (int64_t i = 0; i < c.prompts; ++i) {
    const auto scene = scene_at(i);
    p.prompt = scene.caption;
    p.seed = base_seed + i;
    // The scribble: 2-pixel outlines at 64 px.
    const at::Tensor control = c.control ? shapes::render_scribble(scene, p.height, 2.0 * p.height / 64) : at::Tensor();
    const double t0 = now();
    const at::Tensor image = image_for(c, *pipe, scene, control);
    t.seconds += now() - t0;
    score_image(c, palette, i, scene, image, t);
    if ((i + 1) % 50 == 0 || i + 1 == c.prompts)
      note("eval: " + std::to_string(i + 1) + "/" + std::to_string(c.prompts) + " images, overall so far " +
           c10::str(t.report.overall()));
  }
  p.seed = base_seed;
  std::cout << t.report.to_markdown() << "\n" << t.objects.to_markdown() << "\n" << t.control.to_markdown();
  const double ms = 1000 * t.seconds / c.prompts;
  std::cout << "\nms per image (batch 1, text encoder + sampling + decode): " << ms << "\n";
  if (!c.reference.empty()) std::cout << "PSNR against " << c.reference << ": " << t.psnr_sum / c.prompts << " dB\n";
  if (!c.json_out.empty()) write_eval_json(c, t, ms, t.psnr_sum / c.prompts);
  return 0;
}

}  // namespace

Subcommand add_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "ShapesEval: score a folder of images, or a model on a fixed prompt set");
  auto c = std::make_shared<EvalCommand>();
  c->params.seed = 0;
  auto* images = cmd->add_option("--images", c->images, "folder of NNNNNNN.png with NNNNNNN.json descriptions");
  c->flags = std::make_unique<GenerationFlags>(cmd, c->params, FieldSet{"prompt", "batch_count", "control_image", "control_preprocess", "init_image", "strength"});
  images->excludes(c->flags->option("model"));
  cmd->add_option("--json", c->json_out, "also write the report as JSON here");
  cmd->add_option("-o,--out", c->out, "with -m: folder for the generated images (new or empty)");
  cmd->add_flag("--overwrite", c->overwrite, "with -m: write into a non-empty -o folder, replacing its images");
  cmd->add_option("--prompts", c->prompts, "with -m: size of the prompt set")->capture_default_str();
  cmd->add_option("--prompt-seed", c->prompt_seed, "with -m: seed of the prompt set (image i: seed + i)")->capture_default_str();
  cmd->add_option("--shapes", c->shapes,
                  "the prompt set's shapes, comma-separated (default: the base four; '--shapes diamond' scores the "
                  "concept shape; one shape leaves out the two-object categories); ShapesEval reads diamonds only "
                  "when they are listed here");
  cmd->add_option("--scene", c->scene,
                  "with -m: one description (.json, as make-dataset writes; a position scene may have a group of 1-3 "
                  "alike objects before the last) whose caption is generated at --prompts seeds instead of the "
                  "prompt set");
  cmd->add_flag("--vae-roundtrip", c->vae_roundtrip, "with -m: score the VAE's reconstructions of the true scenes");
  cmd->add_flag("--control", c->control,
                "with -m: generate with each scene's scribble as the control image (the model's ControlNet or "
                "--controlnet DIR); ControlEval is reported in every case");
  cmd->add_option("--reference", c->reference, "with -m: folder of images to compute PSNR against (same names)");
  return {cmd, [c] {
            if (!c->params.model.empty()) return run_eval_model(*c);
            if (c->images.empty()) throw Error("eval: give --images DIR or -m MODEL");
            return run_eval_folder(*c);
          }};
}

}  // namespace sana::cli
