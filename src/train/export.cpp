// Pipeline folders and sample grids (export.h).
#include "train/export.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "sana/error.h"
#include "sana/io/atomic_file.h"
#include "sana/io/image.h"
#include "sana/nn/module_io.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace sana::detail {
namespace {

// generation_defaults.json: the settings `sana-sprint generate` uses when a flag is not given.
void write_generation_defaults(const std::string& dir, const LatentCache& cache, int steps, double guidance,
                               std::optional<double> intermediate_timesteps) {
  json j;
  j["height"] = cache.image_size;
  j["width"] = cache.image_size;
  j["num_inference_steps"] = steps;
  j["guidance_scale"] = guidance;
  j["max_sequence_length"] = cache.prompt.max_sequence_length;
  j["use_complex_human_instruction"] = cache.prompt.use_complex_human_instruction;
  j["resolution_binning"] = false;
  if (intermediate_timesteps) j["intermediate_timesteps"] = *intermediate_timesteps;
  write_file_atomic((fs::path(dir) / "generation_defaults.json").string(), j.dump(2) + "\n");
}

}  // namespace

void export_pipeline(const std::string& out, const std::string& pipeline_class, const std::string& scheduler_config_json,
                     const torch::nn::Module& transformer, const std::string& transformer_config_json,
                     const std::string& components_from, const LatentCache& cache, int steps, double guidance,
                     std::optional<double> intermediate_timesteps) {
  const fs::path o(out);
  fs::create_directories(o / "transformer");
  write_file_atomic((o / "transformer" / "config.json").string(), transformer_config_json);
  nn::save_state_dict(transformer, (o / "transformer" / "diffusion_pytorch_model.safetensors").string(),
                      {{"format", "pt"}});
  write_file_atomic((o / "scheduler" / "scheduler_config.json").string(), scheduler_config_json);
  const std::string scheduler_class = json::parse(scheduler_config_json).value("_class_name", "");
  const json index = {{"_class_name", pipeline_class},
                      {"scheduler", {"diffusers", scheduler_class}},
                      {"text_encoder", {"transformers", "Gemma2Model"}},
                      {"tokenizer", {"transformers", "GemmaTokenizer"}},
                      {"transformer", {"diffusers", "SanaTransformer2DModel"}},
                      {"vae", {"diffusers", "AutoencoderDC"}}};
  write_file_atomic((o / "model_index.json").string(), index.dump(2) + "\n");
  for (const char* part : {"tokenizer", "text_encoder", "vae"}) copy_component(components_from, out, part);
  write_generation_defaults(out, cache, steps, guidance, intermediate_timesteps);
}

void export_controlnet(const SanaControlNetModel& cn, const std::string& out) {
  write_file_atomic((fs::path(out) / "config.json").string(), controlnet_config_for(cn.config(), cn.config().num_layers));
  nn::save_state_dict(cn, (fs::path(out) / "diffusion_pytorch_model.safetensors").string(), {{"format", "pt"}});
}

void copy_component(const std::string& from_dir, const std::string& to_dir, const std::string& name) {
  const fs::path from = fs::path(from_dir) / name, to = fs::path(to_dir) / name;
  if (!fs::is_directory(from)) throw Error(from_dir + " has no " + name + "/ folder");
  if (fs::equivalent(fs::path(from_dir), fs::path(to_dir))) return;
  const fs::path tmp = to.string() + ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  for (const auto& e : fs::directory_iterator(from))  // training state stays behind
    if (e.path().filename() != "training") fs::copy(e.path(), tmp / e.path().filename(), fs::copy_options::recursive);
  fs::remove_all(to);
  fs::rename(tmp, to);
}

void save_grid(const std::string& path, const at::Tensor& images, int cols) {
  const int64_t n = images.size(0), h = images.size(2), w = images.size(3);
  cols = static_cast<int>(std::min<int64_t>(cols, n));
  const int64_t rows = (n + cols - 1) / cols;
  at::Tensor grid = at::ones({3, rows * h + (rows + 1) * 2, cols * w + (cols + 1) * 2});
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = i / cols, c = i % cols;
    grid.narrow(1, 2 + r * (h + 2), h).narrow(2, 2 + c * (w + 2), w).copy_(images[i].to(at::kFloat).cpu());
  }
  fs::create_directories(fs::path(path).parent_path());
  save_png(path, grid);
}

}  // namespace sana::detail
