#pragma once
// What the trainers write for their users: diffusers pipeline folders and PNG sample grids.
#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <optional>
#include <string>

#include "sana/models/sana_controlnet.h"
#include "sana/train/data.h"

namespace sana::detail {

// Writes a diffusers pipeline folder: model_index.json (`pipeline_class`, the five components), transformer/
// (config text + the module's weights), scheduler/scheduler_config.json, tokenizer/ text_encoder/ vae/ copied from
// `components_from`, and generation_defaults.json (the cache's size and text settings, `steps`, `guidance`, and a
// Sprint student's 2-step middle time when given).
void export_pipeline(const std::string& out, const std::string& pipeline_class, const std::string& scheduler_config_json,
                     const torch::nn::Module& transformer, const std::string& transformer_config_json,
                     const std::string& components_from, const LatentCache& cache, int steps, double guidance,
                     std::optional<double> intermediate_timesteps = std::nullopt);

// Writes a SanaControlNetModel folder: config.json and diffusion_pytorch_model.safetensors.
void export_controlnet(const SanaControlNetModel& controlnet, const std::string& out);

// Copies a component folder (tokenizer/, text_encoder/, vae/) from one pipeline folder to another.
void copy_component(const std::string& from_dir, const std::string& to_dir, const std::string& name);

// [N, 3, H, W] in [0, 1] -> one PNG grid with `cols` columns.
void save_grid(const std::string& path, const at::Tensor& images, int cols);

}  // namespace sana::detail
