// Shared training machinery (trainer_internal.h), the image-caption folder, the latent cache and the text encoder
// maker.
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sana/error.h"
#include "sana/io/config.h"
#include "sana/io/image.h"
#include "sana/io/safetensors.h"
#include "sana/models/dcae.h"
#include "sana/models/gemma2.h"
#include "sana/nn/module_io.h"
#include "sana/pipeline/prompt_encoding.h"
#include "sana/text/tokenizer.h"
#include "train/trainer_internal.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace sana {
namespace detail {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

void note(const std::string& msg) { std::fprintf(stderr, "[sana-sprint] %s\n", msg.c_str()); }

namespace {
std::string fmt(double v) {
  char buf[32];
  if (v != 0 && (std::abs(v) < 1e-3 || std::abs(v) >= 1e5))
    std::snprintf(buf, sizeof(buf), "%.3e", v);
  else
    std::snprintf(buf, sizeof(buf), "%.4f", v);
  return buf;
}
std::string clock(double s) {
  const int64_t t = static_cast<int64_t>(std::max(0.0, s));
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(t / 3600),
                static_cast<long long>(t / 60 % 60), static_cast<long long>(t % 60));
  return buf;
}
}  // namespace

Progress::Progress(std::string what, int64_t total, int64_t start)
    : what_(std::move(what)), total_(total), start_(start), t0_(now()) {}

void Progress::update(int64_t step, const std::vector<std::pair<std::string, double>>& values) {
  const double elapsed = now() - t0_;
  const double rate = (step - start_) / std::max(elapsed, 1e-9);
  std::ostringstream s;
  s << what_ << " " << step << "/" << total_ << " [" << clock(elapsed) << " < " << clock((total_ - step) / std::max(rate, 1e-9))
    << ", " << fmt(rate) << " it/s]";
  for (const auto& [k, v] : values) s << " " << k << "=" << fmt(v);
  note(s.str());
}

JsonlLog::JsonlLog(const std::string& path, int64_t start) {
  std::vector<std::string> keep;
  if (start > 0 && fs::exists(path)) {
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
      const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_object() && j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() < start)
        keep.push_back(line);
    }
  }
  std::ostringstream text;
  for (const auto& l : keep) text << l << "\n";
  write_text(path, text.str());
  out_.open(path, std::ios::app);
  if (!out_) throw Error("cannot write the training log " + path);
}

void JsonlLog::write(int64_t step, const std::vector<std::pair<std::string, double>>& values,
                     const std::vector<std::pair<std::string, std::string>>& labels) {
  json j;
  j["step"] = step;
  for (const auto& [k, v] : labels) j[k] = v;
  for (const auto& [k, v] : values) j[k] = std::isfinite(v) ? json(v) : json(std::to_string(v));
  out_ << j.dump() << "\n";
  out_.flush();
}

EMA::EMA(const NamedTensors& params, double decay) : params_(params), decay_(decay) {
  at::NoGradGuard no_grad;
  for (const auto& [name, p] : params) avg_.emplace_back(name, p.detach().to(at::kFloat).clone());
}

void EMA::update() {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i)
    avg_[i].second.mul_(decay_).add_(params_[i].second.detach().to(at::kFloat), 1.0 - decay_);
}

NamedTensors EMA::state(const std::string& prefix) const {
  NamedTensors out;
  for (const auto& [name, t] : avg_) out.emplace_back(prefix + name, t);
  return out;
}

void EMA::copy_to_params() const {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) params_[i].second.copy_(avg_[i].second);
}

NamedTensors model_state(const NamedTensors& params, const Optimizer& optim, const EMA* ema) {
  NamedTensors t;
  for (const auto& [k, v] : params) t.emplace_back("model." + k, v);
  for (const auto& [k, v] : optim.state()) t.emplace_back("optim." + k, v);
  if (ema)
    for (const auto& kv : ema->state("ema.")) t.push_back(kv);
  return t;
}

int64_t restore_model_state(const std::string& path, const NamedTensors& params, Optimizer& optim, EMA* ema) {
  const int64_t step = load_checkpoint_step(path);
  restore_tensors(path, "model.", params);
  optim.load_state(load_prefixed(path, "optim."));
  if (ema) restore_tensors(path, "ema.", ema->averages());
  return step;
}

void export_pipeline(const std::string& out, const std::string& pipeline_class, const std::string& scheduler_class,
                     const std::string& scheduler_config_json, const torch::nn::Module& transformer,
                     const std::string& transformer_config_json, const std::string& components_from,
                     const LatentCache& cache, int steps, double guidance) {
  const fs::path o(out);
  fs::create_directories(o / "transformer");
  write_text((o / "transformer" / "config.json").string(), transformer_config_json);
  nn::save_state_dict(transformer, (o / "transformer" / "diffusion_pytorch_model.safetensors").string(),
                      {{"format", "pt"}});
  write_text((o / "scheduler" / "scheduler_config.json").string(), scheduler_config_json);
  const json index = {{"_class_name", pipeline_class},
                      {"scheduler", {"diffusers", scheduler_class}},
                      {"text_encoder", {"transformers", "Gemma2Model"}},
                      {"tokenizer", {"transformers", "GemmaTokenizer"}},
                      {"transformer", {"diffusers", "SanaTransformer2DModel"}},
                      {"vae", {"diffusers", "AutoencoderDC"}}};
  write_text((o / "model_index.json").string(), index.dump(2) + "\n");
  for (const char* part : {"tokenizer", "text_encoder", "vae"}) copy_component(components_from, out, part);
  write_generation_defaults(out, cache, steps, guidance);
}

void save_checkpoint(const std::string& path, int64_t step, const NamedTensors& tensors) {
  save_safetensors(path, tensors, {{"step", std::to_string(step)}, {"format", "sana-sprint training state"}});
}

int64_t load_checkpoint_step(const std::string& path) {
  if (!fs::exists(path)) throw Error("--resume: no checkpoint at " + path);
  const auto f = SafetensorsFile::open(path);
  const auto it = f->metadata().find("step");
  if (it == f->metadata().end()) throw Error("--resume: " + path + " has no 'step' in its metadata");
  return std::stoll(it->second);
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

NamedTensors trainable(const torch::nn::Module& module, const std::string& prefix) {
  NamedTensors out;
  for (const auto& p : module.named_parameters())
    if (p.value().requires_grad()) out.emplace_back(prefix + p.key(), p.value());
  return out;
}

std::vector<at::Tensor> tensors_of(const NamedTensors& named) {
  std::vector<at::Tensor> out;
  for (const auto& [n, t] : named) out.push_back(t);
  return out;
}

double warmup_lr(double lr, int warmup, int64_t step) {
  if (warmup <= 0) return lr;
  return lr * std::min(1.0, static_cast<double>(step + 1) / warmup);
}

std::pair<double, bool> apply_gradients(Optimizer& optim, const NamedTensors& params, double lr, int warmup_steps,
                                        int64_t lr_step, double clip, DataParallel* dp, EMA* ema) {
  const std::vector<at::Tensor> tensors = tensors_of(params);
  if (dp) dp->average_gradients(tensors);
  const double norm = clip_grad_norm(tensors, clip);
  if (!std::isfinite(norm)) return {norm, false};
  optim.set_lr(warmup_lr(lr, warmup_steps, lr_step));
  optim.step();
  if (ema) ema->update();
  return {norm, true};
}

void save_grid(const std::string& path, const at::Tensor& images, int cols) {
  const int64_t n = images.size(0), h = images.size(2), w = images.size(3);
  cols = static_cast<int>(std::min<int64_t>(cols, n));
  const int64_t rows = (n + cols - 1) / cols;
  at::Tensor grid = at::ones({3, rows * h + (rows + 1) * 2, cols * w + (cols + 1) * 2});
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = i / cols, c = i % cols;
    grid.narrow(1, 2 + r * (h + 2), h).narrow(2, 2 + c * (w + 2), w).copy_(images[i].to(at::kFloat).cpu());
  }
  fs::create_directories(fs::path(path).parent_path());
  save_png(path, grid);
}

void write_text(const std::string& path, const std::string& text) {
  if (fs::path(path).has_parent_path()) fs::create_directories(fs::path(path).parent_path());
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    out << text;
    if (!out) throw Error("cannot write " + path);
  }
  fs::rename(tmp, path);
}

void copy_component(const std::string& from_dir, const std::string& to_dir, const std::string& name) {
  const fs::path from = fs::path(from_dir) / name, to = fs::path(to_dir) / name;
  if (!fs::is_directory(from)) throw Error(from_dir + " has no " + name + "/ folder");
  if (fs::equivalent(fs::path(from_dir), fs::path(to_dir))) return;
  const fs::path tmp = to.string() + ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  for (const auto& e : fs::directory_iterator(from))  // training state stays behind
    if (e.path().filename() != "training") fs::copy(e.path(), tmp / e.path().filename(), fs::copy_options::recursive);
  fs::remove_all(to);
  fs::rename(tmp, to);
}

std::string checkpoint_path(const std::string& out) {
  const fs::path dir = fs::path(out) / "training";
  fs::create_directories(dir);
  return (dir / "checkpoint.safetensors").string();
}

std::unique_ptr<DataParallel> data_parallel(const DistEnv& env, const TrainOptions& o, const at::Device& device,
                                            Slice& slice) {
  slice = Slice{env.rank, env.world_size, o.batch_size};
  if (slice.size() < 1)
    throw Error("--batch-size " + std::to_string(o.batch_size) + " is smaller than WORLD_SIZE " +
                std::to_string(env.world_size));
  return env.distributed() ? std::make_unique<DataParallel>(env, o.backend, device) : nullptr;
}

Batch cache_batch(const LatentCache& cache, uint64_t seed, int64_t step, int64_t batch_size, const Slice& slice,
                  const at::Device& device, at::ScalarType dtype) {
  Batch b;
  for (int64_t j = slice.begin(); j < slice.begin() + slice.size(); ++j)
    b.indices.push_back(sample_index(seed, step, batch_size, j, cache.size()));
  const at::Tensor idx = at::tensor(b.indices, at::kLong);
  b.latents = cache.latents.index_select(0, idx).to(device, dtype);
  b.embeds = cache.prompt_embeds.index_select(0, idx).to(device, dtype);
  b.mask = cache.prompt_attention_mask.index_select(0, idx).to(device);
  return b;
}

void write_generation_defaults(const std::string& dir, const LatentCache& cache, int steps, double guidance) {
  json j;
  j["height"] = cache.image_size;
  j["width"] = cache.image_size;
  j["num_inference_steps"] = steps;
  j["guidance_scale"] = guidance;
  j["max_sequence_length"] = cache.prompt.max_sequence_length;
  j["use_complex_human_instruction"] = cache.prompt.use_complex_human_instruction;
  j["resolution_binning"] = false;
  write_text((fs::path(dir) / "generation_defaults.json").string(), j.dump(2) + "\n");
}

}  // namespace detail

// ---- data ----------------------------------------------------------------------------------------------------------

ImageCaptionFolder ImageCaptionFolder::open(const std::string& dir) {
  if (!fs::is_directory(dir)) throw Error("--data: " + dir + " is not a directory");
  std::vector<fs::path> pngs;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".png") pngs.push_back(e.path());
  std::sort(pngs.begin(), pngs.end());
  if (pngs.empty()) throw Error("--data: no .png images in " + dir);
  ImageCaptionFolder f;
  for (const auto& p : pngs) {
    fs::path txt = p;
    txt.replace_extension(".txt");
    if (!fs::exists(txt)) throw Error("--data: " + p.string() + " has no caption file " + txt.string());
    std::string caption = read_text_file(txt.string());
    while (!caption.empty() && (caption.back() == '\n' || caption.back() == '\r')) caption.pop_back();
    f.images.push_back(p.string());
    f.captions.push_back(caption);
  }
  return f;
}

namespace {
uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
}  // namespace

at::Generator step_generator(uint64_t seed, int64_t step, uint64_t stream) {
  return at::make_generator<at::CPUGeneratorImpl>(splitmix(splitmix(splitmix(seed) ^ static_cast<uint64_t>(step)) ^ stream));
}

int64_t sample_index(uint64_t seed, int64_t step, int64_t batch_size, int64_t j, int64_t n) {
  // One permutation per epoch, memoised (batches of a step usually share it).
  thread_local std::tuple<uint64_t, int64_t, int64_t> key{~0ull, -1, -1};
  thread_local at::Tensor perm;
  const int64_t pos = step * batch_size + j, epoch = pos / n;
  if (key != std::make_tuple(seed, n, epoch)) {
    at::Generator gen = step_generator(seed, epoch, /*stream=*/0xda7a);
    perm = at::randperm(n, gen, at::TensorOptions().dtype(at::kLong));
    key = {seed, n, epoch};
  }
  return perm[pos % n].item<int64_t>();
}

LatentCache LatentCache::open(const std::string& dir) {
  const fs::path root(dir);
  const fs::path cfg_path = root / "cache_config.json";
  if (!fs::exists(cfg_path)) throw Error("--cache: " + dir + " has no cache_config.json (make it with sana-sprint cache)");
  const json cfg = json::parse(read_text_file(cfg_path.string()), nullptr, false);
  if (!cfg.is_object() || !cfg.contains("shards") || !cfg["shards"].is_array())
    throw Error("--cache: " + cfg_path.string() + " is malformed (no 'shards' list)");
  LatentCache c;
  std::vector<at::Tensor> lat, emb, mask;
  for (const auto& s : cfg["shards"]) {
    const auto f = SafetensorsFile::open((root / s.get<std::string>()).string());
    for (const char* name : {"latents", "prompt_embeds", "prompt_attention_mask"})
      if (!f->contains(name)) throw Error("--cache: " + f->path() + " has no tensor '" + name + "'");
    lat.push_back(f->get("latents").to(at::kFloat));
    emb.push_back(f->get("prompt_embeds").to(at::kFloat));
    mask.push_back(f->get("prompt_attention_mask").to(at::kLong));
  }
  if (lat.empty()) throw Error("--cache: " + dir + " lists no shards");
  c.latents = at::cat(lat);
  c.prompt_embeds = at::cat(emb);
  c.prompt_attention_mask = at::cat(mask);
  const auto null = SafetensorsFile::open((root / "null.safetensors").string());
  c.null_embeds = null->get("prompt_embeds").to(at::kFloat);
  c.null_mask = null->get("prompt_attention_mask").to(at::kLong);
  std::istringstream caps(read_text_file((root / "captions.txt").string()));
  for (std::string line; std::getline(caps, line);) c.captions.push_back(line);
  if (static_cast<int64_t>(c.captions.size()) != c.size())
    throw Error("--cache: " + dir + ": captions.txt has " + std::to_string(c.captions.size()) + " lines for " +
                std::to_string(c.size()) + " latents");
  c.prompt.max_sequence_length = cfg.value("max_sequence_length", 300);
  c.prompt.use_complex_human_instruction = cfg.value("use_complex_human_instruction", false);
  c.scaling_factor = cfg.value("scaling_factor", 1.0);
  c.image_size = cfg.value("image_size", 0);
  return c;
}

void build_latent_cache(const CacheOptions& o) {
  c10::InferenceMode inference;
  const ImageCaptionFolder data = ImageCaptionFolder::open(o.data);
  const fs::path base(o.base);
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  detail::note("loading tokenizer, text encoder and VAE from " + o.base);
  const auto tokenizer = GemmaTokenizer::from_pretrained((base / "tokenizer").string());
  const auto text_encoder = Gemma2Model::from_pretrained((base / "text_encoder").string(), opts);
  const auto vae = AutoencoderDC::from_pretrained((base / "vae").string(), opts);
  const double sf = vae->config().scaling_factor;
  fs::create_directories(o.out);

  const int64_t n = static_cast<int64_t>(data.images.size());
  int image_size = 0;
  json shards = json::array();
  std::vector<at::Tensor> lat, emb, mask;
  int64_t in_shard = 0;
  auto flush = [&]() {
    if (in_shard == 0) return;
    char name[64];
    std::snprintf(name, sizeof(name), "shard-%05zu.safetensors", shards.size());
    save_safetensors((fs::path(o.out) / name).string(),
                     detail::NamedTensors{{"latents", at::cat(lat)}, {"prompt_embeds", at::cat(emb)},
                                          {"prompt_attention_mask", at::cat(mask)}});
    shards.push_back(name);
    lat.clear(), emb.clear(), mask.clear();
    in_shard = 0;
  };
  const double t0 = detail::now();
  for (int64_t i = 0; i < n; i += o.batch_size) {
    const int64_t b = std::min<int64_t>(o.batch_size, n - i);
    std::vector<at::Tensor> imgs;
    std::vector<std::string> caps;
    for (int64_t j = i; j < i + b; ++j) {
      at::Tensor img = load_png(data.images[j]);
      if (img.size(0) != 3) throw Error("cache: " + data.images[j] + " is not an RGB image");
      if (image_size == 0) image_size = static_cast<int>(img.size(1));
      if (img.size(1) != image_size || img.size(2) != image_size)
        throw Error("cache: " + data.images[j] + " is " + std::to_string(img.size(2)) + "x" +
                    std::to_string(img.size(1)) + ", expected " + std::to_string(image_size) + "x" +
                    std::to_string(image_size) + " like the first image");
      imgs.push_back(img);
      caps.push_back(data.captions[j]);
    }
    lat.push_back(vae->encode(at::stack(imgs) * 2 - 1) * sf);
    auto [e, m] = encode_prompt_with(tokenizer, *text_encoder, caps, o.prompt, at::kCPU);
    emb.push_back(e);
    mask.push_back(m);
    in_shard += b;
    if (in_shard >= o.shard_size) flush();
    if ((i / o.batch_size) % 20 == 0 || i + b == n)
      detail::note("cache: " + std::to_string(i + b) + "/" + std::to_string(n) + " (" +
                   std::to_string(static_cast<int>(detail::now() - t0)) + " s)");
  }
  flush();
  auto [ne, nm] = encode_prompt_with(tokenizer, *text_encoder, {""}, o.prompt, at::kCPU);
  save_safetensors((fs::path(o.out) / "null.safetensors").string(),
                   detail::NamedTensors{{"prompt_embeds", ne[0].contiguous()}, {"prompt_attention_mask", nm[0].contiguous()}});
  std::ostringstream caps;
  for (const auto& c : data.captions) caps << c << "\n";
  detail::write_text((fs::path(o.out) / "captions.txt").string(), caps.str());
  json cfg;
  cfg["count"] = n;
  cfg["shards"] = shards;
  cfg["image_size"] = image_size;
  cfg["scaling_factor"] = sf;
  cfg["max_sequence_length"] = o.prompt.max_sequence_length;
  cfg["use_complex_human_instruction"] = o.prompt.use_complex_human_instruction;
  cfg["source"] = fs::absolute(o.data).string();
  detail::write_text((fs::path(o.out) / "cache_config.json").string(), cfg.dump(2) + "\n");
}

void make_text_encoder(const std::string& data, const std::string& config, int vocab_size, uint64_t seed,
                       const std::string& out) {
  const ImageCaptionFolder folder = ImageCaptionFolder::open(data);
  const fs::path tok_dir = fs::path(out) / "tokenizer", te_dir = fs::path(out) / "text_encoder";
  fs::create_directories(tok_dir);
  fs::create_directories(te_dir);
  // The pipeline lower-cases and strips prompts before tokenising: train on what the tokenizer will see.
  std::ostringstream text;
  for (const auto& c : folder.captions) text << lower_strip(c) << "\n";
  const std::string captions = (tok_dir / "spm_training_captions.txt").string();
  detail::write_text(captions, text.str());
  train_sentencepiece({"--input=" + captions, "--model_prefix=" + (tok_dir / "tokenizer").string(),
                       "--vocab_size=" + std::to_string(vocab_size), "--model_type=bpe", "--byte_fallback=true",
                       "--character_coverage=1.0", "--pad_id=0", "--eos_id=1", "--bos_id=2", "--unk_id=3",
                       "--pad_piece=<pad>", "--eos_piece=<eos>", "--bos_piece=<bos>", "--unk_piece=<unk>",
                       "--normalization_rule_name=identity", "--add_dummy_prefix=false",
                       "--remove_extra_whitespaces=false", "--split_digits=true",
                       "--allow_whitespace_only_pieces=true", "--num_threads=1", "--shuffle_input_sentence=false",
                       "--minloglevel=2"});
  fs::remove(tok_dir / "tokenizer.vocab");
  const auto tokenizer = GemmaTokenizer::from_pretrained(tok_dir.string());

  json cfg = json::parse(read_text_file(config), nullptr, false);
  if (!cfg.is_object()) throw Error("--config: " + config + " is not a JSON object");
  cfg["vocab_size"] = tokenizer.vocab_size();
  cfg["model_type"] = "gemma2";
  cfg["architectures"] = {"Gemma2Model"};
  const std::string cfg_path = (te_dir / "config.json").string();
  detail::write_text(cfg_path, cfg.dump(2) + "\n");
  Gemma2Model model(load_gemma2_config(cfg_path), at::TensorOptions().dtype(at::kFloat));
  nn::init_random(model, seed);
  nn::save_state_dict(model, (te_dir / "model.safetensors").string(), {{"format", "pt"}});
  detail::note("tokenizer: " + std::to_string(tokenizer.vocab_size()) + " pieces; text encoder: " +
               std::to_string(nn::count_parameters(model)) + " parameters (random, frozen) in " + out);
}

}  // namespace sana
