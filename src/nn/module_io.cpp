#include "sana/nn/module_io.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <sstream>

#include "sana/error.h"
#include "sana/nn/layers.h"

namespace sana::nn {
namespace {

std::string shape_str(at::IntArrayRef shape) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << "]";
  return s.str();
}

// "a, b, c (and 12 more)" so a wrong checkpoint does not flood the terminal.
std::string name_list(const std::vector<std::string>& names) {
  constexpr size_t kShown = 8;
  std::string out;
  for (size_t i = 0; i < names.size() && i < kShown; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > kShown) out += " (and " + std::to_string(names.size() - kShown) + " more)";
  return out;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// An int8 checkpoint (docs/QUANTIZATION.md) stores a layer as an int8 `weight` with a `weight_scale` beside it, a q4
// checkpoint as a uint8 `weight` (two 4-bit values per byte) with its group scales: such layers are readied to
// receive them (int8 weight-only products, --quantize w8a8 can switch them later; q4 dequantized per call).
void prepare_int8_layers(torch::nn::Module& module, const Checkpoint& ckpt, const std::string& prefix) {
  std::vector<std::pair<std::string, torch::nn::Module*>> all{{"", &module}};
  for (const auto& item : module.named_modules("", /*include_self=*/false)) all.emplace_back(item.key(), item.value().get());
  for (const auto& [name, m] : all) {
    auto* layer = dynamic_cast<WeightedLayer*>(m);
    const std::string stored = prefix + (name.empty() ? "" : name + ".") + "weight";
    if (!layer || layer->is_int8() || !ckpt.contains(stored + "_scale") || !ckpt.contains(stored)) continue;
    if (ckpt.info(stored).dtype == at::kChar) layer->prepare_int8(Int8Compute::weights);
    if (ckpt.info(stored).dtype == at::kByte) layer->prepare_int8(Int8Compute::q4);
  }
}

}  // namespace

std::vector<std::pair<std::string, at::Tensor>> state_dict(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) out.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers(/*recurse=*/true)) out.emplace_back(b.key(), b.value());
  return out;
}

void load_state_dict(torch::nn::Module& module, const Checkpoint& ckpt, const std::string& what,
                     const LoadOptions& options) {
  prepare_int8_layers(module, ckpt, options.prefix);
  auto tensors = state_dict(module);
  std::vector<std::string> missing, unexpected, mismatched;
  std::map<std::string, bool> known;
  for (const auto& [name, t] : tensors) {
    const std::string stored = options.prefix + name;
    known[stored] = true;
    if (!ckpt.contains(stored)) {
      missing.push_back(stored);
      continue;
    }
    const auto& info = ckpt.info(stored);
    if (at::IntArrayRef(info.shape) != t.sizes())
      mismatched.push_back(stored + " (checkpoint " + shape_str(info.shape) + ", model " + shape_str(t.sizes()) + ")");
  }
  auto ignored = [&](const std::string& name) {
    for (const auto& p : options.ignore)
      if (name.rfind(p, 0) == 0) return true;
    return false;
  };
  for (const auto& name : ckpt.names())
    if (!known.count(name) && !ignored(name)) unexpected.push_back(name);

  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::string msg = "checkpoint " + ckpt.path() + " does not match the " + what + ":";
    if (!missing.empty()) msg += " missing " + std::to_string(missing.size()) + " tensors: " + name_list(missing) + ";";
    if (!unexpected.empty())
      msg += " unexpected " + std::to_string(unexpected.size()) + " tensors: " + name_list(unexpected) + ";";
    if (!mismatched.empty())
      msg += " " + std::to_string(mismatched.size()) + " shape mismatches: " + name_list(mismatched) + ";";
    msg.pop_back();
    throw Error(msg);
  }

  at::NoGradGuard no_grad;
  for (auto& [name, t] : tensors) {
    at::Tensor src = ckpt.get(options.prefix + name);
    // Same dtype on CPU: the parameter becomes a view of the mapped file (no copy). Otherwise a converted copy, and
    // the file's pages of this tensor are let go at once (an fp32 file loaded as bf16 is never resident whole).
    if (src.scalar_type() == t.scalar_type() && src.device() == t.device()) {
      t.set_data(src);
    } else {
      t.set_data(src.to(t.options()));
      if (src.is_cpu() && src.use_count() == 1) {
        src.reset();
        ckpt.release(options.prefix + name);
      }
    }
  }
}

void save_state_dict(const torch::nn::Module& module, const std::string& path,
                     const std::map<std::string, std::string>& metadata) {
  save_safetensors(path, state_dict(module), metadata);
}

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters(/*recurse=*/true)) n += p.numel();
  return n;
}

void init_random(torch::nn::Module& module, uint64_t seed) {
  at::NoGradGuard no_grad;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& p : module.named_parameters(/*recurse=*/true)) {
    const std::string& name = p.key();
    at::Tensor& t = p.value();
    at::Tensor v = at::empty(t.sizes(), at::TensorOptions().dtype(at::kFloat));
    if (ends_with(name, "scale_shift_table")) {
      v.normal_(0.0, 0.2, gen);
    } else if (t.dim() >= 2) {
      const double fan_in = static_cast<double>(t.numel() / t.size(0));
      v.normal_(0.0, 1.0 / std::sqrt(fan_in), gen);
    } else if (ends_with(name, "weight")) {
      v.normal_(1.0, 0.1, gen);
    } else {
      v.normal_(0.0, 0.05, gen);
    }
    t.copy_(v);
  }
}

}  // namespace sana::nn
