// Student, adaptive-weight head and discriminator heads of the distillation (distill_models.h).
#include "train/distill_models.h"

#include <ATen/core/grad_mode.h>
#include <cmath>
#include <map>

#include "sana/error.h"
#include "sana/io/config.h"
#include "sana/nn/module_io.h"

namespace sana::detail {
namespace {

// A diffusers teacher keeps its timestep MLP under AdaLayerNormSingle ("time_embed.emb.timestep_embedder"); the
// Sprint student, with a guidance embedder beside it, directly under "time_embed".
std::string teacher_name(const std::string& student_name) {
  const std::string sprint = "time_embed.timestep_embedder.";
  if (student_name.rfind(sprint, 0) == 0) return "time_embed.emb.timestep_embedder." + student_name.substr(sprint.size());
  return student_name;
}

std::map<std::string, at::Tensor> named(const torch::nn::Module& m) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [k, v] : nn::state_dict(m)) out[k] = v;
  return out;
}

// Every tensor of `to` from its counterpart in `from` (or, failing that, in `fallback`); the guidance embedder fresh:
// linear_1 small random, the rest zero, so its output (added to the time embedding) is zero until training moves it.
void copy_into_sprint_model(const torch::nn::Module& from, const torch::nn::Module* fallback, torch::nn::Module& to,
                            uint64_t seed) {
  at::NoGradGuard no_grad;
  const auto source = named(from);
  const auto second = fallback ? named(*fallback) : std::map<std::string, at::Tensor>{};
  at::Generator gen = step_generator(seed, -1, streams::kGuidanceInit);
  for (const auto& p : to.named_parameters()) {
    const std::string& name = p.key();
    if (name.rfind("time_embed.guidance_embedder.", 0) == 0) {
      if (name == "time_embed.guidance_embedder.linear_1.weight")
        p.value().copy_(at::randn(p.value().sizes(), gen) * 0.02);
      else
        p.value().zero_();
      continue;
    }
    auto it = source.find(teacher_name(name));
    if (it == source.end()) {
      it = second.find(name);
      if (it == second.end()) throw Error("distill: the teacher has no tensor for the student's " + name);
    }
    p.value().copy_(it->second);
  }
}

}  // namespace

Student make_student(const SanaTransformer2DModel& teacher, nlohmann::json config, const DistillOptions& d,
                     uint64_t seed, const at::TensorOptions& options) {
  Student s;
  config["guidance_embeds"] = true;
  config["guidance_embeds_scale"] = d.guidance_embeds_scale;
  s.config = config;
  s.transformer = std::make_shared<SanaTransformer2DModel>(
      parse_sana_transformer_config(config.dump(), "student config"), options);
  copy_into_sprint_model(teacher, nullptr, *s.transformer, seed);
  return s;
}

std::shared_ptr<nn::Linear> make_logvar_head(int64_t D, uint64_t seed, const at::TensorOptions& options) {
  auto head = std::make_shared<nn::Linear>(D, 1, true, options);
  at::NoGradGuard no_grad;
  at::Generator gen = step_generator(seed, -1, streams::kLogvarInit);
  const double bound = std::sqrt(6.0 / (D + 1));  // xavier_uniform, as the reference
  head->weight.copy_(at::rand({1, D}, gen) * 2 * bound - bound);
  head->bias.zero_();
  return head;
}

std::shared_ptr<SanaControlNetModel> make_student_controlnet(const SanaControlNetModel& teacher_cn,
                                                             const SanaTransformer2DModel& student, uint64_t seed) {
  const auto options = at::TensorOptions().dtype(student.dtype()).device(student.device());
  const int L = teacher_cn.config().num_layers;
  auto cn = std::make_shared<SanaControlNetModel>(
      parse_sana_controlnet_config(controlnet_config_for(student.config(), L), "student controlnet"), options);
  copy_into_sprint_model(teacher_cn, &student, *cn, seed);
  return cn;
}

std::vector<int> head_blocks(const DistillOptions& d, int L) {
  std::vector<int> ids = d.head_block_ids;
  if (ids.empty())
    for (int k : {L / 4, L / 2, 3 * L / 4, L - 1})
      if (ids.empty() || ids.back() < k) ids.push_back(k);
  for (int id : ids)
    if (id < 0 || id >= L)
      throw Error("--head-blocks: block " + std::to_string(id) + " outside 0.." + std::to_string(L - 1));
  return ids;
}

std::shared_ptr<LADDDiscriminatorHeads> make_heads(int64_t dim, const std::vector<int>& blocks, uint64_t seed,
                                                   const at::TensorOptions& options) {
  auto heads = std::make_shared<LADDDiscriminatorHeads>(dim, blocks, options);
  at::NoGradGuard no_grad;
  at::Generator gen = step_generator(seed, -1, streams::kDiscriminatorInit);
  for (auto& p : heads->named_parameters())
    if (p.key().find("weight_orig") != std::string::npos)
      p.value().copy_(at::randn(p.value().sizes(), gen) / std::sqrt(static_cast<double>(p.value()[0].numel())));
  for (auto& b : heads->named_buffers()) {
    const at::Tensor r = at::randn(b.value().sizes(), gen);
    b.value().copy_(r / r.norm().clamp_min(1e-12));
  }
  return heads;
}

}  // namespace sana::detail
