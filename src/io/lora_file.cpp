// LoRA files in the diffusers/PEFT and kohya/ComfyUI namings (lora_file.h).
#include "sana/io/lora_file.h"

#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "sana/error.h"
#include "sana/io/safetensors.h"

namespace sana {
namespace {

using json = nlohmann::json;

enum class Kind { down, up, alpha };

struct Suffix {
  const char* text;
  Kind kind;
  const char* format;  // "" for both
};
const Suffix kSuffixes[] = {{".lora_A.weight", Kind::down, "diffusers"}, {".lora_B.weight", Kind::up, "diffusers"},
                            {".lora_down.weight", Kind::down, "kohya"},  {".lora_up.weight", Kind::up, "kohya"},
                            {".alpha", Kind::alpha, ""}};

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

struct Target {
  std::string component, module;
};

// The component and diffusers module name that a tensor's name (without its suffix) addresses.
Target target_of(std::string name, const std::map<std::string, std::map<std::string, std::string>>& underscored,
                 const std::string& path, const std::string& tensor) {
  if (starts_with(name, "base_model.model.")) name = name.substr(17);  // PEFT's own wrapper
  for (const auto& [prefix, component] : {std::pair<std::string, std::string>{"lora_unet_", "transformer"},
                                          {"lora_transformer_", "transformer"}, {"lora_controlnet_", "controlnet"}}) {
    if (!starts_with(name, prefix)) continue;
    const auto c = underscored.find(component);
    const std::string rest = name.substr(prefix.size());
    if (c != underscored.end())
      if (const auto it = c->second.find(rest); it != c->second.end()) return {component, it->second};
    throw Error(path + ": tensor " + tensor + ": '" + rest + "' names no layer of the " + component);
  }
  if (starts_with(name, "text_encoder.") || starts_with(name, "lora_te"))
    throw Error(path + ": tensor " + tensor + ": LoRAs for the text encoder are not supported (the transformer's "
                "and the ControlNet's are)");
  for (const char* component : {"transformer", "controlnet"})
    if (starts_with(name, std::string(component) + ".")) return {component, name.substr(std::string(component).size() + 1)};
  return {"transformer", name};
}

// alpha of `module` from diffusers' lora_adapter_metadata (a PEFT LoraConfig as JSON, its keys prefixed with the
// component in a pipeline's file): alpha_pattern's entry whose key ends the module name, else lora_alpha.
std::optional<double> metadata_alpha(const json& config, const std::string& component, const std::string& module) {
  if (!config.is_object()) return std::nullopt;
  const auto field = [&](const std::string& key) -> const json* {
    for (const std::string& k : {component + "." + key, key})
      if (config.contains(k)) return &config.at(k);
    return nullptr;
  };
  if (const json* pattern = field("alpha_pattern"); pattern && pattern->is_object())
    for (const auto& [key, value] : pattern->items())
      if ((module == key || (module.size() > key.size() && module.compare(module.size() - key.size() - 1, std::string::npos, "." + key) == 0)) &&
          value.is_number())
        return value.get<double>();
  if (const json* alpha = field("lora_alpha"); alpha && alpha->is_number()) return alpha->get<double>();
  return std::nullopt;
}

void check_tensor(const at::Tensor& t, const std::string& path, const std::string& name) {
  if (!at::isFloatingType(t.scalar_type())) throw Error(path + ": tensor " + name + " is not floating point");
  if (!at::isfinite(t).all().item<bool>()) throw Error(path + ": tensor " + name + " holds a NaN or an infinity");
}

}  // namespace

LoraFile read_lora_file(const std::string& path,
                        const std::vector<std::pair<std::string, std::set<std::string>>>& modules) {
  const auto file = SafetensorsFile::open(path);
  std::map<std::string, std::map<std::string, std::string>> underscored;  // component -> a_b_c -> a.b.c
  for (const auto& [component, names] : modules)
    for (const std::string& n : names) {
      std::string u = n;
      for (char& ch : u) ch = ch == '.' ? '_' : ch;
      underscored[component][u] = n;
    }
  json config;
  if (const auto it = file->metadata().find("lora_adapter_metadata"); it != file->metadata().end())
    config = json::parse(it->second, nullptr, /*allow_exceptions=*/false);

  struct Parts {
    at::Tensor down, up, alpha;
    std::string down_name, up_name;
  };
  std::map<std::pair<std::string, std::string>, Parts> parts;
  std::set<std::string> formats;
  for (const auto& [name, info] : file->tensors()) {
    const Suffix* suffix = nullptr;
    for (const Suffix& s : kSuffixes)
      if (name.size() > std::strlen(s.text) && name.compare(name.size() - std::strlen(s.text), std::string::npos, s.text) == 0)
        suffix = &s;
    if (!suffix)
      throw Error(path + ": tensor " + name + " is not a LoRA tensor (expected names ending in .lora_A.weight / "
                  ".lora_B.weight, or kohya's .lora_down.weight / .lora_up.weight / .alpha)");
    if (*suffix->format) formats.insert(suffix->format);
    const Target t = target_of(name.substr(0, name.size() - std::strlen(suffix->text)), underscored, path, name);
    Parts& p = parts[{t.component, t.module}];
    const at::Tensor value = file->get(name);
    check_tensor(value, path, name);
    if (suffix->kind == Kind::down) p.down = value, p.down_name = name;
    if (suffix->kind == Kind::up) p.up = value, p.up_name = name;
    if (suffix->kind == Kind::alpha) p.alpha = value;
  }
  if (parts.empty()) throw Error(path + ": holds no LoRA tensors");
  if (formats.size() > 1) throw Error(path + ": mixes diffusers (lora_A/lora_B) and kohya (lora_down/lora_up) names");

  LoraFile out{path, formats.empty() ? "diffusers" : *formats.begin(), {}};
  for (auto& [key, p] : parts) {
    const auto& [component, module] = key;
    if (!p.down.defined() || !p.up.defined())
      throw Error(path + ": tensor " + (p.down.defined() ? p.down_name : p.up_name) + " has no " +
                  (p.down.defined() ? "up (lora_B)" : "down (lora_A)") + " partner for " + module);
    if ((p.down.dim() != 2 && p.down.dim() != 4) || (p.up.dim() != 2 && p.up.dim() != 4) ||
        p.up.size(1) != p.down.size(0))
      throw Error(path + ": tensor " + p.down_name + ": shapes " + c10::str(p.down.sizes()) + " and " +
                  c10::str(p.up.sizes()) + " are not a rank-r pair [r, in], [out, r]");
    LoraLayer layer{component, module, p.down, p.up, 0, p.down_name};
    if (p.alpha.defined()) {
      if (p.alpha.numel() != 1) throw Error(path + ": tensor " + module + ".alpha must hold one number");
      layer.alpha = p.alpha.to(at::kDouble).item<double>();
    } else {
      layer.alpha = metadata_alpha(config, component, module).value_or(static_cast<double>(layer.rank()));
    }
    out.layers.push_back(std::move(layer));
  }
  return out;
}

}  // namespace sana
