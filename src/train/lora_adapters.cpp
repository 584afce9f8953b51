// LoRA adapters being trained (lora_adapters.h).
#include "train/lora_adapters.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "sana/error.h"
#include "sana/io/safetensors.h"
#include "sana/nn/lora.h"
#include "sana/train/data.h"

namespace fs = std::filesystem;

namespace sana::detail {
namespace {

bool targeted(const std::string& module, const std::vector<std::string>& targets) {
  for (const std::string& t : targets)
    if (module == t || (module.size() > t.size() && module.compare(module.size() - t.size() - 1, std::string::npos,
                                                                   "." + t) == 0))
      return true;
  return false;
}

}  // namespace

void check_lora_shape(const LoraShape& l) {
  if (l.rank < 1 || l.rank > 1024) throw Error("--rank must be between 1 and 1024, got " + std::to_string(l.rank));
  if (!(std::isfinite(l.alpha) && l.alpha > 0)) throw Error("--alpha must be a positive number");
  if (l.target_modules.empty()) throw Error("--target-modules names no layer");
}

NamedTensors add_lora_adapters(SanaTransformer2DModel& model, const LoraShape& l, uint64_t seed,
                               const at::TensorOptions& opts) {
  NamedTensors params;
  at::Generator gen = step_generator(seed, -1, streams::kLoraInit);
  for (const auto& [name, layer] : nn::weighted_layers(model)) {
    if (name.rfind("transformer_blocks.", 0) != 0 || !targeted(name, l.target_modules)) continue;
    if (!dynamic_cast<nn::Linear*>(layer))
      throw Error("--target-modules: " + name + " is not a linear layer (LoRA training supports linear layers)");
    if (layer->is_int8()) throw Error("--base: " + name + " holds quantized weights; train a LoRA on a floating folder");
    const auto shape = layer->weight_shape();
    const double bound = 1.0 / std::sqrt(static_cast<double>(shape[1]));
    at::Tensor down = ((at::rand({l.rank, shape[1]}, gen) * 2 - 1) * bound).to(opts).set_requires_grad(true);
    at::Tensor up = at::zeros({shape[0], l.rank}, opts).set_requires_grad(true);
    layer->lora.push_back({down, up, l.alpha / l.rank});
    params.emplace_back("transformer." + name + ".lora_A.weight", down);
    params.emplace_back("transformer." + name + ".lora_B.weight", up);
  }
  if (params.empty())
    throw Error("--target-modules: no linear layer of the transformer blocks ends in any of the names given");
  return params;
}

void export_lora(const NamedTensors& adapters, const LoraShape& l, const std::string& out) {
  NamedTensors tensors;
  for (const auto& [name, t] : adapters) tensors.emplace_back(name, t.detach().to(at::kFloat).cpu().contiguous());
  const nlohmann::json config = {{"transformer.r", l.rank}, {"transformer.lora_alpha", l.alpha},
                                 {"transformer.target_modules", l.target_modules}};
  fs::create_directories(out);
  save_safetensors((fs::path(out) / "pytorch_lora_weights.safetensors").string(), tensors,
                   {{"format", "pt"}, {"lora_adapter_metadata", config.dump()}});
}

}  // namespace sana::detail
