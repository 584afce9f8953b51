// Training-state checkpoints (checkpoint.h).
#include "train/checkpoint.h"

#include <ATen/core/grad_mode.h>
#include <filesystem>

#include "sana/error.h"
#include "sana/io/safetensors.h"

namespace sana::detail {

void save_checkpoint(const std::string& path, int64_t step, const std::string& options_json,
                     const NamedTensors& tensors) {
  save_safetensors(path, tensors,
                   {{"step", std::to_string(step)}, {"options", options_json},
                    {"format", "sana-sprint training state"}});
}

CheckpointInfo read_checkpoint_info(const std::string& path) {
  if (!std::filesystem::exists(path)) throw Error("--resume: no checkpoint at " + path);
  const auto f = SafetensorsFile::open(path);
  const auto& meta = f->metadata();
  const auto it = meta.find("step");
  if (it == meta.end()) throw Error("--resume: " + path + " has no 'step' in its metadata");
  const std::string& s = it->second;
  if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos)
    throw Error("--resume: " + path + ": step '" + s + "' is not a non-negative integer");
  CheckpointInfo info;
  info.step = std::stoll(s);
  if (const auto o = meta.find("options"); o != meta.end()) info.options_json = o->second;
  return info;
}

void restore_tensors(const std::string& path, const std::string& prefix, const NamedTensors& targets) {
  const auto f = SafetensorsFile::open(path);
  at::NoGradGuard no_grad;
  for (const auto& [name, t] : targets) {
    if (!f->contains(prefix + name)) throw Error("--resume: " + path + " has no tensor " + prefix + name);
    const at::Tensor v = f->get(prefix + name);
    if (v.sizes() != t.sizes())
      throw Error("--resume: " + path + ": " + prefix + name + " has shape " + c10::str(v.sizes()) + ", expected " +
                  c10::str(t.sizes()));
    t.copy_(v);
  }
}

NamedTensors load_prefixed(const std::string& path, const std::string& prefix) {
  const auto f = SafetensorsFile::open(path);
  NamedTensors out;
  for (const auto& [name, info] : f->tensors())
    if (name.rfind(prefix, 0) == 0) out.emplace_back(name.substr(prefix.size()), f->get(name).clone());
  return out;
}

}  // namespace sana::detail
