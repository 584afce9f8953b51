// A pipeline folder rewritten with int8 or 4-bit weights (quantize_folder.h).
#include "sana/pipeline/quantize_folder.h"

#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "sana/error.h"
#include "sana/io/config.h"
#include "sana/models/gemma2.h"
#include "sana/models/sana_controlnet.h"
#include "sana/models/sana_transformer.h"
#include "sana/nn/module_io.h"

namespace fs = std::filesystem;

namespace sana {
namespace {

// The components whose weights are rewritten, with their weight file's base name.
struct Quantized {
  const char* name;
  const char* weights;
};
constexpr Quantized kComponents[] = {
    {"text_encoder", "model"}, {"transformer", "diffusion_pytorch_model"}, {"controlnet", "diffusion_pytorch_model"}};

bool is_weight_file(const fs::path& p) {
  const std::string n = p.filename().string();
  auto ends = [&](const std::string& s) { return n.size() >= s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0; };
  return ends(".safetensors") || ends(".safetensors.index.json") || ends(".bin") || ends(".bin.index.json");
}

std::shared_ptr<torch::nn::Module> load_component(const std::string& name, const std::string& dir,
                                                  const at::TensorOptions& options) {
  if (name == "text_encoder") return Gemma2Model::from_pretrained(dir, options);
  if (name == "transformer") return SanaTransformer2DModel::from_pretrained(dir, options);
  return SanaControlNetModel::from_pretrained(dir, options);
}

// Everything of `in` except the weight files of the components that are rewritten.
void copy_all_but_weights(const fs::path& in, const fs::path& out) {
  fs::create_directories(out);
  for (const auto& entry : fs::directory_iterator(in)) {
    const fs::path to = out / entry.path().filename();
    bool rewritten = false;
    for (const auto& c : kComponents) rewritten |= entry.path().filename() == c.name;
    if (!rewritten) {
      fs::copy(entry.path(), to, fs::copy_options::recursive);
      continue;
    }
    fs::create_directories(to);
    for (const auto& file : fs::directory_iterator(entry.path()))
      if (!is_weight_file(file.path())) fs::copy(file.path(), to / file.path().filename(), fs::copy_options::recursive);
  }
}

}  // namespace

nn::QuantizeReport quantize_pipeline_folder(const std::string& in, const std::string& out,
                                            const QuantizeFolderOptions& options,
                                            const std::function<void(const std::string&)>& progress) {
  const fs::path root(in);
  if (!fs::exists(root / "model_index.json"))
    throw Error("quantize: " + in + " has no model_index.json (is it a diffusers pipeline folder?)");
  if (!options.replace && fs::exists(out) && !(fs::is_directory(out) && fs::is_empty(out)))
    throw Error("quantize: " + out + " exists and is not an empty folder");
  const ModelIndex index = load_model_index((root / "model_index.json").string());
  const fs::path target = fs::absolute(out).lexically_normal();
  const fs::path temporary = target.parent_path() / ("." + target.filename().string() + ".partial-" +
                                                     std::to_string(::getpid()));
  fs::remove_all(temporary);
  try {
    copy_all_but_weights(root, temporary);
    nn::QuantizeReport total;
    if (options.type != nn::Int8Compute::weights && options.type != nn::Int8Compute::q4)
      throw Error("quantize: the folder layouts are int8 and q4");
    const bool q4 = options.type == nn::Int8Compute::q4;
    const nlohmann::json about = {
        {"format", q4 ? "q4" : "int8"},
        {"scheme", q4 ? "symmetric 4-bit groups of " + std::to_string(nn::kQ4Group) +
                            " inputs, one fp32 scale (max|w| / 7) per group; values + 8 in nibbles, the even input in "
                            "the low nibble: weight uint8 [out, in / 2], weight_scale [out, in / " +
                            std::to_string(nn::kQ4Group) + "]"
                      : "symmetric, one scale per output channel: weight ~ weight * weight_scale"},
        {"min_weights", options.min_weights},
        {"software", "sana-sprint"}};
    for (const auto& c : kComponents) {
      if (!index.components.count(c.name) || !fs::is_directory(root / c.name)) continue;
      auto model = load_component(c.name, (root / c.name).string(), at::TensorOptions().dtype(options.dtype));
      const nn::QuantizeReport r = nn::quantize_int8(*model, {options.type, options.min_weights});
      nn::save_state_dict(*model, (temporary / c.name / (std::string(c.weights) + ".safetensors")).string(),
                          {{"format", "pt"}, {"quantization", about.dump()}});
      total += r;
      if (progress)
        progress(std::string(c.name) + ": " + std::to_string(r.layers) + " layers " + (q4 ? "q4, " : "int8, ") +
                 std::to_string(r.bytes_before >> 20) + " -> " + std::to_string(r.bytes_after >> 20) + " MiB");
    }
    if (fs::exists(target)) fs::remove_all(target);  // empty, or options.replace (checked above)
    fs::rename(temporary, target);
    return total;
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(temporary, ignored);
    throw;
  }
}

}  // namespace sana
