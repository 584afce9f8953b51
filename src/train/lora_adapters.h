#pragma once
// LoRA adapters being trained (docs/LORA.md, "Training"), shared by train-lora's flow objective and the LoRA mode of
// distillation: trainable down/up pairs on the side paths of chosen linear layers, and the export as diffusers writes
// a LoRA (pytorch_lora_weights.safetensors, PEFT names under "transformer.", lora_adapter_metadata).
#include <string>
#include <vector>

#include "sana/models/sana_transformer.h"
#include "train/gradients.h"

namespace sana::detail {

struct LoraShape {
  int rank = 4;
  double alpha = 4;  // scale = alpha / rank
  std::vector<std::string> target_modules = {"to_q", "to_k", "to_v"};
};

// Error naming the flag unless rank, alpha and targets are usable.
void check_lora_shape(const LoraShape& l);

// Adapters on the linear layers of the transformer blocks whose names end in one of the targets: down drawn like
// PEFT's lora_A (uniform, bound 1/sqrt(in)) from the run's seed, up zero (so the model is unchanged at step 0).
// Returned as trainable tensors named as diffusers saves them ("transformer.<module>.lora_A.weight" = down,
// "...lora_B.weight" = up), already on the layers' side paths.
NamedTensors add_lora_adapters(SanaTransformer2DModel& model, const LoraShape& l, uint64_t seed,
                               const at::TensorOptions& opts);

// Writes <out>/pytorch_lora_weights.safetensors: the adapters in fp32 with the metadata diffusers reads.
void export_lora(const NamedTensors& adapters, const LoraShape& l, const std::string& out);

}  // namespace sana::detail
