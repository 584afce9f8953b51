// LoRA applied to a model's layers (lora.h).
#include "sana/nn/lora.h"

#include "sana/error.h"

namespace sana::nn {
namespace {

void collect(Module& m, const std::string& prefix, std::map<std::string, WeightedLayer*>& out) {
  if (auto* w = dynamic_cast<WeightedLayer*>(&m)) out[prefix] = w;
  for (const auto& item : m.named_children())
    collect(*item.value(), prefix.empty() ? item.key() : prefix + "." + item.key(), out);
}

// Error unless `l` fits `layer`: down [r, in(, kh, kw)] and up [out, r(, 1, 1)] for weight [out, in(, kh, kw)].
void check_fits(const LoraLayer& l, const WeightedLayer& layer, const std::string& path) {
  const std::vector<int64_t> shape = layer.weight_shape();
  const at::IntArrayRef w = shape;
  const auto* conv = dynamic_cast<const Conv2d*>(&layer);
  std::string why;
  if (conv && conv->groups != 1) why = "is a grouped convolution (groups " + std::to_string(conv->groups) + ")";
  else if (l.up.size(0) != w[0]) why = "has " + std::to_string(w[0]) + " outputs";
  else if (l.down.numel() / l.rank() != c10::multiply_integers(w) / w[0])
    why = "takes " + c10::str(w.slice(1)) + " per output";
  else if (l.up.numel() != w[0] * l.rank()) why = "needs up [out, r]";
  if (!why.empty())
    throw Error(path + ": tensor " + l.tensor + " (" + c10::str(l.down.sizes()) + ", up " + c10::str(l.up.sizes()) +
                "): the layer " + l.module + " " + why + " (weight " + c10::str(w) + "); is the LoRA for another model?");
}

}  // namespace

std::map<std::string, WeightedLayer*> weighted_layers(Module& root) {
  std::map<std::string, WeightedLayer*> out;
  collect(root, "", out);
  return out;
}

LoraPlan plan_lora(Module& root, const LoraFile& file, const std::string& component, double scale) {
  const auto layers = weighted_layers(root);
  LoraPlan todo;
  for (const LoraLayer& l : file.layers) {
    if (l.component != component) continue;
    const auto it = layers.find(l.module);
    if (it == layers.end())
      throw Error(file.path + ": tensor " + l.tensor + ": the " + component + " has no layer " + l.module +
                  " (is the LoRA for another model?)");
    check_fits(l, *it->second, file.path);
    const auto on = it->second->weight.device();
    todo.push_back({it->second, LoraDelta{l.down.to(on), l.up.to(on), scale * l.alpha / l.rank()}});
  }
  return todo;
}

LoraReport apply_lora(LoraPlan plan, bool side) {
  LoraReport report;
  for (auto& [layer, delta] : plan) {
    if (side || layer->is_int8()) {
      layer->lora.push_back(std::move(delta));
      ++report.side;
    } else {
      layer->fuse_lora(delta);
      ++report.fused;
    }
  }
  return report;
}

void remove_loras(Module& root) {
  for (auto& [name, layer] : weighted_layers(root)) {
    layer->unfuse_lora();
    layer->lora.clear();
  }
}

}  // namespace sana::nn
