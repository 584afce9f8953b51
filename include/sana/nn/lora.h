#pragma once
// LoRA on a model's layers (docs/LORA.md): the layers of a LoRA file (io/lora_file.h) applied to the WeightedLayers
// they name, fused into the weights (exact unfuse: the replaced weights are kept) or on the side path (int8 weights).
#include <map>
#include <string>
#include <vector>

#include "sana/io/lora_file.h"
#include "sana/nn/layers.h"

namespace sana::nn {

// Every WeightedLayer (Linear, Conv2d) under `root`, by its name in state_dict() minus ".weight".
std::map<std::string, WeightedLayer*> weighted_layers(Module& root);

struct LoraReport {
  int fused = 0, side = 0;  // layers changed each way
};

// The LoRA layers of `component` matched to the layers of `root` they change, with `scale` (the user's; each layer's
// alpha / rank on top), checked but not applied. Errors name the file and the tensor: a module the model lacks, a
// shape that does not fit, a grouped convolution.
using LoraPlan = std::vector<std::pair<WeightedLayer*, LoraDelta>>;
LoraPlan plan_lora(Module& root, const LoraFile& file, const std::string& component, double scale);
// Applies a plan: fused into floating weights, on the side path where the weight is quantized or `side` is asked for.
LoraReport apply_lora(LoraPlan plan, bool side = false);

// Undoes every LoRA under `root`: fused weights restored bit for bit, side paths cleared.
void remove_loras(Module& root);

}  // namespace sana::nn
