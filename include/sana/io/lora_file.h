#pragma once
// LoRA files as other tools write them (docs/LORA.md), read into one form: per target layer its down/up matrices
// and alpha, under the diffusers module names of a pipeline component.
//
//   diffusers / PEFT   transformer.transformer_blocks.0.attn1.to_q.lora_A.weight, .lora_B.weight (also without the
//                      component prefix, or with PEFT's base_model.model.); alpha from the file's
//                      lora_adapter_metadata (lora_alpha, alpha_pattern, as diffusers' save_lora_weights writes it),
//                      else alpha = rank (diffusers' rule for files without it)
//   kohya / ComfyUI    lora_unet_transformer_blocks_0_attn1_to_q.lora_down.weight, .lora_up.weight, .alpha (also
//                      lora_transformer_..., and dotted module names with lora_down/lora_up)
#include <ATen/ATen.h>

#include <optional>
#include <set>
#include <string>
#include <vector>

namespace sana {

struct LoraLayer {
  std::string component;  // "transformer" | "controlnet"
  std::string module;     // diffusers name inside the component: "transformer_blocks.0.attn1.to_q"
  at::Tensor down, up;    // [r, in(, k, k)], [out, r(, 1, 1)] as stored
  double alpha = 0;       // scale = alpha / rank
  std::string tensor;     // the file's name of `down`, for errors
  int64_t rank() const { return down.size(0); }
};

struct LoraFile {
  std::string path;
  std::string format;  // "diffusers" | "kohya"
  std::vector<LoraLayer> layers;
};

// Reads a LoRA .safetensors file. `modules` lists, per component, the names a LoRA may target (kohya's underscore
// names are resolved against them). Errors name the file and the first offending tensor: an unknown naming, a
// down without its up, ranks that differ, a non-finite value.
LoraFile read_lora_file(const std::string& path,
                        const std::vector<std::pair<std::string, std::set<std::string>>>& modules);

}  // namespace sana
