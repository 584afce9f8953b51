// The C API (include/sana_sprint.h) over the pipelines and the one generation-parameters module: the C structs are
// read into GenerationParams (its defaults, its model defaults, its validation), so the library draws what
// `sana-sprint generate` draws. No C++ exception leaves this file: each entry point catches and returns a code.
#include "sana_sprint.h"

#include <c10/util/Exception.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>

#include "sana/error.h"
#include "sana/frontend/generation_params.h"
#include "sana/io/image.h"
#include "sana/pipeline/pipeline.h"
#include "sana/runtime.h"

namespace {

using sana::GenerationParams;

thread_local std::string last_error;

// An error with its API code.
struct ApiError : sana::Error {
  ApiError(int code, const std::string& message) : sana::Error(message), code(code) {}
  int code;
};
struct Cancelled {};

ApiError invalid(const std::string& message) { return ApiError(SANA_ERR_INVALID_ARGUMENT, message); }

// One loaded pipeline. Calls hold a shared_ptr, so sana_ctx_free while a call runs frees it when the call ends.
struct Context {
  std::unique_ptr<sana::Pipeline> pipe;
  std::string class_name;
  int n_threads = 0;
  // The folder and how it is loaded (model, device, dtype, controlnet, vae, quantize, lora), and the generation
  // defaults: the library's with the folder's generation_defaults.json applied. Each call starts from it.
  GenerationParams defaults;
  std::mutex call;  // one call at a time
  std::mutex state;
  bool running = false;
  std::atomic<bool> cancel{false};
};

// Handles are numbers that are never reused, so a freed handle is told apart from every live one.
std::mutex registry_mutex;
std::map<uintptr_t, std::shared_ptr<Context>> registry;
uintptr_t next_handle = 1;

sana_ctx* register_context(std::shared_ptr<Context> c) {
  std::lock_guard<std::mutex> lock(registry_mutex);
  const uintptr_t h = 16 * next_handle++;
  registry.emplace(h, std::move(c));
  return reinterpret_cast<sana_ctx*>(h);
}

std::shared_ptr<Context> find_context(sana_ctx* ctx) {
  if (!ctx) throw invalid("ctx is NULL");
  std::lock_guard<std::mutex> lock(registry_mutex);
  const auto it = registry.find(reinterpret_cast<uintptr_t>(ctx));
  if (it == registry.end()) throw invalid("ctx is not a live context (freed, or not made by sana_ctx_new)");
  return it->second;
}

// Runs `fn`, turning every exception into a code and this thread's last error.
template <typename Fn>
int guarded(Fn&& fn, int failure_code = SANA_ERR_GENERATE) {
  last_error.clear();
  try {
    fn();
    return SANA_OK;
  } catch (const ApiError& e) {
    last_error = e.what();
    return e.code;
  } catch (const Cancelled&) {
    last_error = "cancelled";
    return SANA_ERR_CANCELLED;
  } catch (const sana::ParamError& e) {
    last_error = e.what();
    return SANA_ERR_INVALID_ARGUMENT;
  } catch (const std::bad_alloc&) {
    last_error = "out of memory (try a smaller size or dtype bf16)";
  } catch (const c10::Error& e) {
    last_error = sana::first_line(e.what_without_backtrace());
  } catch (const std::exception& e) {
    last_error = sana::first_line(e.what());
  } catch (...) {
    last_error = "unknown error";
  }
  return failure_code;
}

// Each struct's size in API version 1: the offset of the first field version 2 appended.
template <typename T>
constexpr size_t version1_size();
template <>
constexpr size_t version1_size<sana_ctx_params>() { return offsetof(sana_ctx_params, tiny_vae_dir); }
template <>
constexpr size_t version1_size<sana_gen_params>() { return offsetof(sana_gen_params, decoder); }

// A params struct as this library's version of it: the caller's bytes up to its struct_size over the defaults.
// Fields appended in later versions keep their defaults for a caller built against an older header.
template <typename T>
T read_struct(const T* in, void (*init)(T*), const char* name) {
  if (!in) throw invalid(std::string(name) + " is NULL");
  constexpr size_t kVersion1Size = version1_size<T>();
  if (in->struct_size == 0) throw invalid(std::string(name) + ".struct_size is 0: initialise it with its _init function");
  if (in->struct_size > sizeof(T))
    throw invalid(std::string(name) + ".struct_size is " + std::to_string(in->struct_size) + " bytes, from a newer header (" +
                  "this library's is " + std::to_string(sizeof(T)) + "): build against the library's sana_sprint.h");
  if (in->struct_size < kVersion1Size)
    throw invalid(std::string(name) + ".struct_size is " + std::to_string(in->struct_size) +
                  " bytes, smaller than any version of the struct");
  T out;
  init(&out);
  std::memcpy(&out, in, in->struct_size);
  return out;
}

std::string str(const char* s) { return s ? s : ""; }

// The default of every generation field, from the one generation-parameters module.
const GenerationParams& library_defaults() {
  static const GenerationParams p;
  return p;
}

void fill_gen_params(sana_gen_params* out, const GenerationParams& p) {
  *out = sana_gen_params{};
  out->struct_size = sizeof(sana_gen_params);
  out->prompt = nullptr;
  out->negative_prompt = p.negative_prompt.c_str();
  out->width = p.width;
  out->height = p.height;
  out->steps = p.steps;
  out->seed = p.seed;
  out->guidance = p.guidance;
  out->max_sequence_length = p.max_sequence_length;
  out->max_timesteps = p.max_timesteps;
  out->intermediate_timesteps = p.intermediate_timesteps;
  out->complex_human_instruction = p.complex_human_instruction;
  out->resolution_binning = p.resolution_binning;
  out->vae_tiling = p.vae_tiling;
  out->sampler = p.sampler.c_str();
  out->strength = p.strength;
  out->control_preprocess = p.control_preprocess.c_str();
  out->control_scale = p.control_scale;
  out->decoder = p.decoder.c_str();
}

// The call's parameters: the context's (folder, loading) with the struct's generation fields.
GenerationParams to_params(const sana_gen_params& g, const Context& c) {
  GenerationParams p = c.defaults;
  if (!g.prompt) throw invalid("prompt is NULL");
  p.prompt = g.prompt;
  p.negative_prompt = str(g.negative_prompt);
  p.width = g.width;
  p.height = g.height;
  p.steps = g.steps;
  p.seed = g.seed;
  p.guidance = g.guidance;
  p.max_sequence_length = g.max_sequence_length;
  p.max_timesteps = g.max_timesteps;
  p.intermediate_timesteps = g.intermediate_timesteps;
  p.complex_human_instruction = g.complex_human_instruction != 0;
  p.resolution_binning = g.resolution_binning != 0;
  p.vae_tiling = g.vae_tiling != 0;
  p.sampler = str(g.sampler);
  p.strength = g.strength;
  p.control_preprocess = g.control_preprocess ? g.control_preprocess : "none";
  p.control_scale = g.control_scale;
  p.decoder = g.decoder ? g.decoder : "full";
  return p;
}

// An input image as [3, H, W] float in [0, 1], converted as the PNG and JPEG readers convert (x / 255).
at::Tensor image_tensor(const sana_image* image, const char* name) {
  if (!image) return {};
  const std::string n = name;
  if (!image->data) throw invalid(n + ".data is NULL");
  if (image->width < 1 || image->height < 1 || image->width > sana::kMaxImageSide || image->height > sana::kMaxImageSide)
    throw invalid(n + " is " + std::to_string(image->width) + "x" + std::to_string(image->height) +
                  "; each side must be between 1 and " + std::to_string(sana::kMaxImageSide));
  const int ch = image->channels;
  if (ch != 1 && ch != 3 && ch != 4)
    throw invalid(n + ".channels is " + std::to_string(ch) + "; expected 1 (grey), 3 (RGB) or 4 (RGBA)");
  const at::Tensor hwc = at::from_blob(image->data, {image->height, image->width, ch}, at::kByte);
  const at::Tensor rgb = ch == 1 ? hwc.expand({-1, -1, 3}) : hwc.narrow(2, 0, 3);
  return rgb.permute({2, 0, 1}).to(at::kFloat) / 255.0;
}

// The pointers the shared checks cannot see; every value is checked where the CLI's flags are (parse_device,
// parse_dtype, parse_quantize, parse_lora_spec, set_threads, validate), under the struct's field names.
void check_pointers(const sana_ctx_params& p) {
  if (!p.model_dir || !*p.model_dir) throw invalid("model_dir is empty");
  if (!p.device || !p.dtype) throw invalid(std::string(p.device ? "dtype" : "device") + " is NULL");
  if (p.n_loras < 0 || (p.n_loras > 0 && !p.loras)) throw invalid("loras is NULL or n_loras negative");
  for (int i = 0; i < p.n_loras; ++i)
    if (!p.loras[i]) throw invalid("loras[" + std::to_string(i) + "] is NULL");
}

std::shared_ptr<Context> load_context(const sana_ctx_params& cp) {
  check_pointers(cp);
  auto c = std::make_shared<Context>();
  GenerationParams& p = c->defaults;
  p.model = cp.model_dir;
  p.device = cp.device;
  p.dtype = cp.dtype;
  p.controlnet = str(cp.controlnet_dir);
  p.vae = str(cp.vae_dir);
  p.tiny_vae = str(cp.tiny_vae_dir);
  p.quantize = str(cp.quantize);
  p.quantize_min_weights = cp.quantize_min_weights;
  p.lora.assign(cp.loras, cp.loras + cp.n_loras);
  if (p.quantize_min_weights < 0) throw invalid("quantize_min_weights must be 0 or more");
  sana::nn::parse_quantize(p.quantize);
  sana::apply_model_defaults(p, {});
  const at::Device device = sana::parse_device(p.device, "device");
  if (p.dtype != "auto") sana::parse_dtype(p.dtype, "dtype");
  c->n_threads = cp.n_threads;
  sana::set_threads(c->n_threads, "n_threads");
  const at::ScalarType dtype = sana::load_dtype(p);  // after the threads: "auto" measures with the context's
  try {
    c->pipe = sana::load_pipeline(p.model, device, dtype, sana::load_options(p));
  } catch (const sana::Error& e) {
    throw ApiError(SANA_ERR_LOAD, e.what());
  }
  c->class_name = c->pipe->class_name();
  return c;
}

// Marks the context's call as running for sana_cancel, and clears that when the call ends.
struct RunningCall {
  explicit RunningCall(Context& c) : c(c) {
    std::lock_guard<std::mutex> lock(c.state);
    c.running = true;
    c.cancel = false;
  }
  ~RunningCall() {
    std::lock_guard<std::mutex> lock(c.state);
    c.running = false;
    c.cancel = false;
  }
  Context& c;
};

void generate(Context& c, const sana_gen_params& g, sana_image* out) {
  GenerationParams p = to_params(g, c);
  sana::validate(p);
  sana::validate_for_model(p);
  sana::resolve_seed(p);
  const sana::GenerateOptions o =
      sana::to_generate_options(p, image_tensor(g.control_image, "control_image"), image_tensor(g.init_image, "init_image"));

  std::lock_guard<std::mutex> one_call(c.call);
  RunningCall running(c);
  sana::set_threads(c.n_threads, "n_threads");  // LibTorch's thread count belongs to the calling thread
  const auto progress = [&](const std::string& stage, double seconds) {
    if (c.cancel) throw Cancelled{};
    if (g.progress && g.progress(stage.c_str(), seconds, g.progress_user_data) != 0) throw Cancelled{};
  };
  const sana::GenerateResult r = c.pipe->generate(o, progress);
  const at::Tensor hwc = sana::to_uint8_hwc(r.images[0]);
  const size_t bytes = static_cast<size_t>(hwc.numel());
  auto* data = static_cast<uint8_t*>(std::malloc(bytes));
  if (!data) throw std::bad_alloc();
  std::memcpy(data, hwc.data_ptr<uint8_t>(), bytes);
  *out = sana_image{static_cast<int>(hwc.size(1)), static_cast<int>(hwc.size(0)), 3, data, p.seed};
}

}  // namespace

extern "C" {

void sana_ctx_params_init(sana_ctx_params* params) {
  if (!params) return;
  const GenerationParams& d = library_defaults();
  *params = sana_ctx_params{};
  params->struct_size = sizeof(sana_ctx_params);
  params->device = d.device.c_str();
  params->dtype = d.dtype.c_str();
  params->quantize = d.quantize.c_str();
  params->quantize_min_weights = d.quantize_min_weights;
}

void sana_gen_params_init(sana_gen_params* params) {
  if (params) fill_gen_params(params, library_defaults());
}

int sana_ctx_gen_params_init(sana_ctx* ctx, sana_gen_params* params) {
  return guarded([&] {
    if (!params) throw invalid("params is NULL");
    fill_gen_params(params, find_context(ctx)->defaults);
  });
}

sana_ctx* sana_ctx_new(const sana_ctx_params* params) {
  sana_ctx* handle = nullptr;
  guarded([&] { handle = register_context(load_context(read_struct(params, sana_ctx_params_init, "params"))); },
          SANA_ERR_LOAD);
  return handle;
}

void sana_ctx_free(sana_ctx* ctx) {
  if (!ctx) return;
  std::shared_ptr<Context> c;  // destroyed after the lock is released: freeing weights takes a while
  guarded([&] {
    std::lock_guard<std::mutex> lock(registry_mutex);
    const auto it = registry.find(reinterpret_cast<uintptr_t>(ctx));
    if (it == registry.end()) throw invalid("sana_ctx_free: ctx is not a live context (freed twice?)");
    c = std::move(it->second);
    registry.erase(it);
  });
}

const char* sana_ctx_pipeline(sana_ctx* ctx) {
  const char* name = nullptr;
  guarded([&] { name = find_context(ctx)->class_name.c_str(); });
  return name;
}

int sana_generate(sana_ctx* ctx, const sana_gen_params* params, sana_image* out) {
  if (out) *out = sana_image{};
  return guarded([&] {
    if (!out) throw invalid("out is NULL");
    const std::shared_ptr<Context> c = find_context(ctx);
    generate(*c, read_struct(params, sana_gen_params_init, "params"), out);
  });
}

int sana_cancel(sana_ctx* ctx) {
  int result = -1;
  guarded([&] {
    const std::shared_ptr<Context> c = find_context(ctx);
    std::lock_guard<std::mutex> lock(c->state);
    result = c->running ? 1 : 0;
    if (c->running) c->cancel = true;
  });
  return result;
}

void sana_image_free(sana_image* image) {
  if (!image) return;
  std::free(image->data);
  *image = sana_image{};
}

const char* sana_last_error(void) { return last_error.c_str(); }

const char* sana_version(void) { return SANA_VERSION; }

int sana_api_version(void) { return SANA_API_VERSION; }

}  // extern "C"
