// The generation parameters shared by every front end (generation_params.h).
#include "sana/frontend/generation_params.h"

#include <cmath>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <variant>

#include "sana/frontend/image_source.h"
#include "sana/io/config.h"
#include "sana/io/edges.h"
#include "sana/pipeline/dtype_auto.h"
#include "sana/runtime.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace sana {
namespace {

using P = GenerationParams;
using Member = std::variant<std::string P::*, int P::*, int64_t P::*, double P::*, bool P::*, std::vector<double> P::*>;

struct Field {
  const char* name;
  const char* alias;  // the diffusers call argument, where it differs
  Member member;
};

const std::vector<Field>& fields() {
  static const std::vector<Field> table = {
      {"model", "", &P::model},
      {"prompt", "", &P::prompt},
      {"negative_prompt", "", &P::negative_prompt},
      {"width", "", &P::width},
      {"height", "", &P::height},
      {"steps", "num_inference_steps", &P::steps},
      {"seed", "", &P::seed},
      {"guidance", "guidance_scale", &P::guidance},
      {"batch_count", "num_images_per_prompt", &P::batch_count},
      {"max_sequence_length", "", &P::max_sequence_length},
      {"max_timesteps", "", &P::max_timesteps},
      {"intermediate_timesteps", "", &P::intermediate_timesteps},
      {"timesteps", "", &P::timesteps},
      {"complex_human_instruction", "use_complex_human_instruction", &P::complex_human_instruction},
      {"resolution_binning", "", &P::resolution_binning},
      {"vae_tiling", "", &P::vae_tiling},
      {"sampler", "", &P::sampler},
      {"device", "", &P::device},
      {"dtype", "", &P::dtype},
      {"control_image", "", &P::control_image},
      {"control_preprocess", "", &P::control_preprocess},
      {"control_scale", "controlnet_conditioning_scale", &P::control_scale},
      {"controlnet", "", &P::controlnet},
      {"vae", "", &P::vae},
      {"decoder", "", &P::decoder},
      {"tiny_vae", "", &P::tiny_vae},
      {"quantize", "", &P::quantize},
      {"quantize_min_weights", "", &P::quantize_min_weights},
      {"init_image", "", &P::init_image},
      {"strength", "", &P::strength},
  };
  return table;
}

// An integral JSON number within [lo, hi]: 64 and 64.0 are, 64.7 and true are not.
int64_t integer_of(const json& v, const std::string& key, int64_t lo, int64_t hi) {
  if (v.is_number_integer()) {
    const bool fits = v.is_number_unsigned() ? v.get<uint64_t>() <= static_cast<uint64_t>(hi)
                                             : (v.get<int64_t>() >= lo && v.get<int64_t>() <= hi);
    if (!fits) throw ParamError(key, "is " + v.dump() + ", outside the integer range");
    return v.get<int64_t>();
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (d != std::floor(d)) throw ParamError(key, "must be a whole number, got " + v.dump());
    if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)))
      throw ParamError(key, "is " + v.dump() + ", outside the integer range");
    return static_cast<int64_t>(d);
  }
  throw ParamError(key, "must be an integer, got " + v.dump());
}

double number_of(const json& v, const std::string& key) {
  if (!v.is_number()) throw ParamError(key, "must be a number, got " + v.dump());
  return v.get<double>();
}

void set_field(P& p, const Field& f, const json& v, const std::string& key) {
  std::visit(
      [&](auto member) {
        using T = std::decay_t<decltype(p.*member)>;
        if constexpr (std::is_same_v<T, std::string>) {
          if (!v.is_string()) throw ParamError(key, "must be a string, got " + v.dump());
          p.*member = v.get<std::string>();
        } else if constexpr (std::is_same_v<T, bool>) {
          if (!v.is_boolean()) throw ParamError(key, "must be true or false, got " + v.dump());
          p.*member = v.get<bool>();
        } else if constexpr (std::is_same_v<T, int>) {
          p.*member = static_cast<int>(
              integer_of(v, key, std::numeric_limits<int>::min(), std::numeric_limits<int>::max()));
        } else if constexpr (std::is_same_v<T, int64_t>) {
          p.*member = integer_of(v, key, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
        } else if constexpr (std::is_same_v<T, double>) {
          p.*member = number_of(v, key);
        } else {
          if (!v.is_array()) throw ParamError(key, "must be a list of numbers, got " + v.dump());
          std::vector<double> values;
          for (const auto& x : v) values.push_back(number_of(x, key));
          p.*member = values;
        }
      },
      f.member);
}

void require(bool ok, const char* field, const std::string& message) {
  if (!ok) throw ParamError(field, message);
}

std::string num(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// Runs a runtime parser whose errors read "<field>: ..." and rethrows them as the field's ParamError.
template <typename Fn>
void check_parses(const char* field, Fn&& fn) {
  try {
    fn();
  } catch (const ParamError&) {
    throw;
  } catch (const Error& e) {
    std::string m = e.what();
    const std::string prefix = std::string(field) + ": ";
    if (m.rfind(prefix, 0) == 0) m = m.substr(prefix.size());
    throw ParamError(field, m);
  }
}

}  // namespace

ParamError::ParamError(std::string field, std::string message)
    : Error(field + ": " + message), field_(std::move(field)), message_(std::move(message)) {}

const std::vector<std::string>& generation_param_fields() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& f : fields()) n.push_back(f.name);
    return n;
  }();
  return names;
}

FieldSet set_params_from_json(P& p, const json& object, const FieldSet& skip, bool allow_unknown) {
  if (!object.is_object()) throw ParamError("(body)", "must be a JSON object");
  FieldSet set;
  for (const auto& [key, value] : object.items()) {
    const Field* field = nullptr;
    for (const auto& f : fields())
      if (key == f.name || (*f.alias && key == f.alias)) field = &f;
    if (!field) {
      if (allow_unknown) continue;
      throw ParamError(key, "is not a generation parameter");
    }
    if (skip.count(field->name)) continue;
    set_field(p, *field, value, key);
    set.insert(field->name);
  }
  return set;
}

void apply_model_defaults(P& p, const FieldSet& given) {
  const fs::path path = fs::path(p.model) / "generation_defaults.json";
  if (!fs::exists(path)) return;
  const json j = json::parse(read_text_file(path.string()), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) throw Error(path.string() + ": not a JSON object");
  FieldSet skip = given;
  // A model folder does not choose these.
  skip.insert({"model", "prompt", "device", "dtype", "control_image", "init_image", "controlnet", "vae", "tiny_vae",
               "quantize", "quantize_min_weights"});
  try {
    set_params_from_json(p, j, skip, /*allow_unknown=*/true);
  } catch (const ParamError& e) {
    throw Error(path.string() + ": '" + e.field() + "' " + e.message());
  }
}

void validate(const P& p) {
  using L = GenerationLimits;
  require(!p.prompt.empty(), "prompt", "is empty");
  require(p.prompt.size() <= L::max_prompt_bytes, "prompt",
          "is " + std::to_string(p.prompt.size()) + " bytes, more than the limit of " +
              std::to_string(L::max_prompt_bytes));
  for (const auto& [name, v] : {std::pair<const char*, int>{"width", p.width}, {"height", p.height}})
    require(v >= 1 && v <= L::max_side, name,
            "must be between 1 and " + std::to_string(L::max_side) + " pixels, got " + std::to_string(v));
  require(p.steps >= 1, "steps", "must be at least 1, got " + std::to_string(p.steps));
  require(p.steps <= L::max_steps, "steps",
          "must be at most " + std::to_string(L::max_steps) + ", got " + std::to_string(p.steps));
  require(p.batch_count >= 1 && p.batch_count <= L::max_batch_count, "batch_count",
          "must be between 1 and " + std::to_string(L::max_batch_count) + ", got " + std::to_string(p.batch_count));
  require(p.max_sequence_length >= 1 && p.max_sequence_length <= L::max_sequence_length, "max_sequence_length",
          "must be between 1 and " + std::to_string(L::max_sequence_length) + ", got " +
              std::to_string(p.max_sequence_length));
  require(std::isfinite(p.guidance) && p.guidance >= 0 && p.guidance <= L::max_guidance, "guidance",
          "must be between 0 and " + num(L::max_guidance) + ", got " + num(p.guidance));
  require(p.quantize_min_weights >= 0, "quantize_min_weights",
          "must be 0 or more, got " + std::to_string(p.quantize_min_weights));
  require(p.seed >= -1, "seed", "must be -1 (random) or a non-negative integer, got " + std::to_string(p.seed));
  // TrigFlow times live in [0, pi/2]; the reference's default start 1.57080 is pi/2 rounded up.
  require(std::isfinite(p.max_timesteps) && p.max_timesteps > 0 && p.max_timesteps <= 1.5708, "max_timesteps",
          "must be in (0, 1.5708], got " + num(p.max_timesteps));
  if (p.steps == 2 && p.timesteps.empty())  // the only schedule that uses it
    require(std::isfinite(p.intermediate_timesteps) && p.intermediate_timesteps > 0 &&
                p.intermediate_timesteps < p.max_timesteps,
            "intermediate_timesteps", "must be in (0, max_timesteps), got " + num(p.intermediate_timesteps));
  if (!p.timesteps.empty()) {
    require(static_cast<int>(p.timesteps.size()) == p.steps + 1, "timesteps",
            "needs steps + 1 = " + std::to_string(p.steps + 1) + " values, got " + std::to_string(p.timesteps.size()));
    require(p.timesteps.back() == 0, "timesteps", "must end in 0");
    require(std::isfinite(p.timesteps.front()) && p.timesteps.front() <= 1.5708, "timesteps",
            "must start at most at 1.5708, got " + num(p.timesteps.front()));
    for (size_t i = 1; i < p.timesteps.size(); ++i)
      require(p.timesteps[i] < p.timesteps[i - 1], "timesteps", "must be strictly decreasing");
  }
  require(p.sampler.empty() || p.sampler == "euler" || p.sampler == "dpm++2m", "sampler",
          "must be euler or dpm++2m, got '" + p.sampler + "'");
  require(p.control_preprocess == "none" || p.control_preprocess == "invert" || p.control_preprocess == "canny",
          "control_preprocess", "must be none, invert or canny, got '" + p.control_preprocess + "'");
  require(std::isfinite(p.control_scale) && p.control_scale >= 0 && p.control_scale <= L::max_control_scale,
          "control_scale", "must be between 0 and " + num(L::max_control_scale) + ", got " + num(p.control_scale));
  require(p.decoder == "full" || p.decoder == "tiny", "decoder", "must be full or tiny, got '" + p.decoder + "'");
  require(std::isfinite(p.strength) && p.strength >= 0 && p.strength <= 1, "strength",
          "must be between 0 and 1, got " + num(p.strength));
  if (!p.init_image.empty())  // the pipeline's own rule (diffusers'): at least one step must remain
    check_parses("strength", [&] { img2img_first_step(p.steps, p.strength); });
  for (const std::string& lora : p.lora) check_parses("lora", [&] { parse_lora_spec(lora); });
  if (p.dtype != "auto") check_parses("dtype", [&] { parse_dtype(p.dtype, "dtype"); });
  require(!(p.dtype == "fp16" || p.dtype == "float16") || p.device.rfind("cuda", 0) == 0, "dtype",
          "fp16 runs on CUDA only; on the CPU use fp32 or bf16");
  check_parses("device", [&] { parse_device(p.device, "device"); });
}

void validate_for_model(const P& p) {
  const fs::path vae_config = fs::path(p.model) / "vae" / "config.json";
  if (!fs::exists(vae_config)) return;  // the loader names the missing folder
  const int f = load_autoencoder_dc_config(vae_config.string()).spatial_factor();
  for (const auto& [name, v] : {std::pair<const char*, int>{"width", p.width}, {"height", p.height}})
    require(v % f == 0, name, "must be a multiple of the VAE factor " + std::to_string(f) + ", got " + std::to_string(v));
}

PipelineLoadOptions load_options(const P& p) {
  PipelineLoadOptions o{p.controlnet, p.vae, p.tiny_vae, {}, p.quantize, p.quantize_min_weights, {}};
  if (p.dtype == "auto") o.vae_dtype = auto_dtypes(parse_device(p.device, "device")).vae;
  for (const std::string& lora : p.lora) o.loras.push_back(parse_lora_spec(lora));
  return o;
}

at::ScalarType load_dtype(const P& p, std::string* how) {
  if (p.dtype != "auto") {
    if (how) how->clear();
    return parse_dtype(p.dtype, "dtype");
  }
  const StageDtypes d = auto_dtypes(parse_device(p.device, "device"));
  if (how) *how = "dtype auto: " + d.how;
  return d.transformer;
}

int64_t resolve_seed(P& p) {
  if (p.seed < 0) p.seed = std::random_device{}() & 0x7fffffff;
  return p.seed;
}

at::Tensor prepare_control_image(const at::Tensor& image, const std::string& preprocess) {
  if (preprocess == "invert") return 1.0 - image;
  if (preprocess == "canny") return canny_edges(image);
  return image;
}

GenerateOptions to_generate_options(const P& p, bool allow_files, int max_image_side) {
  at::Tensor control, init;
  if (!p.control_image.empty()) control = load_image_source(p.control_image, "control_image", allow_files, max_image_side);
  if (!p.init_image.empty()) init = load_image_source(p.init_image, "init_image", allow_files, max_image_side);
  return to_generate_options(p, control, init);
}

GenerateOptions to_generate_options(const P& p, const at::Tensor& control_image, const at::Tensor& init_image) {
  GenerateOptions o;
  if (control_image.defined()) o.control_image = prepare_control_image(control_image, p.control_preprocess);
  o.controlnet_conditioning_scale = p.control_scale;
  if (init_image.defined()) o.image = init_image;
  o.strength = p.strength;
  o.prompts = {p.prompt};
  o.negative_prompt = p.negative_prompt;
  o.num_images_per_prompt = p.batch_count;
  o.height = p.height;
  o.width = p.width;
  o.steps = p.steps;
  o.guidance_scale = p.guidance;
  o.seed = static_cast<uint64_t>(p.seed);
  o.prompt.use_complex_human_instruction = p.complex_human_instruction;
  o.prompt.max_sequence_length = p.max_sequence_length;
  o.resolution_binning = p.resolution_binning;
  o.tiled_decode = p.vae_tiling;
  o.tiny_decode = p.decoder == "tiny";
  o.max_timesteps = p.max_timesteps;
  if (p.steps == 2) o.intermediate_timesteps = p.intermediate_timesteps;  // the reference's rule
  o.timesteps = p.timesteps;
  o.sampler = p.sampler;
  return o;
}

std::string png_parameters(const P& p, const std::string& sampler, const at::Tensor& timesteps, int64_t index,
                           const std::string& software) {
  std::ostringstream s;
  s << p.prompt << "\nSteps: " << p.steps << ", Timesteps: ";
  for (int64_t i = 0; i < timesteps.size(0); ++i) s << (i ? "," : "") << timesteps[i].item<float>();
  s << ", Sampler: " << sampler << ", Seed: " << p.seed << ", Batch index: " << index << ", Size: " << p.width << "x"
    << p.height << ", Guidance: " << p.guidance << ", CHI: " << (p.complex_human_instruction ? "on" : "off")
    << ", Model: " << p.model;
  if (!p.control_image.empty())
    s << ", ControlNet: " << (p.controlnet.empty() ? "the model's" : p.controlnet) << ", Control scale: "
      << p.control_scale << ", Control preprocess: " << p.control_preprocess;
  if (!p.init_image.empty()) s << ", Denoising strength: " << p.strength;
  if (!p.vae.empty()) s << ", VAE: " << p.vae;
  if (p.decoder == "tiny") s << ", Decoder: tiny" << (p.tiny_vae.empty() ? "" : " (" + p.tiny_vae + ")");
  for (const std::string& lora : p.lora) s << ", LoRA: " << lora;
  if (!p.quantize.empty()) s << ", Quantize: " << p.quantize;
  s << ", Dtype: " << p.dtype << ", Software: " << software;
  return s.str();
}

}  // namespace sana
