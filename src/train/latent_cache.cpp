// The latent cache: reading it and building it from an image-caption folder (sana/train/data.h).
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sana/error.h"
#include "sana/frontend/generation_params.h"
#include "sana/io/atomic_file.h"
#include "sana/io/config.h"
#include "sana/io/output_folder.h"
#include "sana/io/image.h"
#include "sana/io/safetensors.h"
#include "sana/models/dcae.h"
#include "sana/models/gemma2.h"
#include "sana/pipeline/prompt_encoding.h"
#include "sana/train/data.h"
#include "sana/text/tokenizer.h"
#include "train/run_log.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace sana {

using detail::note;
using detail::now;

namespace {

// A cache tensor with the expected rank, and, where `like` is given, the same trailing sizes (every shard holds the
// same kind of sample). Checked here so a damaged or mixed cache is one line naming the file, not an indexing error.
at::Tensor cache_tensor(const SafetensorsFile& f, const std::string& name, int64_t dims, const at::Tensor& like = {}) {
  if (!f.contains(name)) throw Error("--cache: " + f.path() + " has no tensor '" + name + "'");
  const at::Tensor t = f.get(name);
  const auto shape = [](const at::Tensor& x) { return c10::str(x.sizes()); };
  if (t.dim() != dims)
    throw Error("--cache: " + f.path() + ": '" + name + "' has shape " + shape(t) + ", expected " +
                std::to_string(dims) + " dimensions");
  if (like.defined() && t.sizes().slice(1) != like.sizes().slice(1))
    throw Error("--cache: " + f.path() + ": '" + name + "' has shape " + shape(t) + ", unlike the first shard's " +
                shape(like) + " (one cache holds one kind of sample)");
  return t;
}

template <class T>
T cache_setting(const json& cfg, const char* key, T fallback, const std::string& path) {
  if (!cfg.contains(key)) return fallback;
  try {
    return cfg[key].get<T>();
  } catch (const json::exception&) {
    throw Error("--cache: " + path + ": '" + key + "' has the wrong type");
  }
}

}  // namespace

LatentCache LatentCache::open(const std::string& dir) {
  const fs::path root(dir);
  const fs::path cfg_path = root / "cache_config.json";
  if (!fs::exists(cfg_path)) throw Error("--cache: " + dir + " has no cache_config.json (make it with sana-sprint cache)");
  const json cfg = json::parse(read_text_file(cfg_path.string()), nullptr, false);
  if (!cfg.is_object() || !cfg.contains("shards") || !cfg["shards"].is_array())
    throw Error("--cache: " + cfg_path.string() + " is malformed (no 'shards' list)");
  LatentCache c;
  std::vector<at::Tensor> lat, emb, mask, control;
  for (const auto& s : cfg["shards"]) {
    if (!s.is_string()) throw Error("--cache: " + cfg_path.string() + ": 'shards' must list file names");
    const auto f = SafetensorsFile::open((root / s.get<std::string>()).string());
    lat.push_back(cache_tensor(*f, "latents", 4, lat.empty() ? at::Tensor() : lat[0]).to(at::kFloat));
    emb.push_back(cache_tensor(*f, "prompt_embeds", 3, emb.empty() ? at::Tensor() : emb[0]).to(at::kFloat));
    mask.push_back(cache_tensor(*f, "prompt_attention_mask", 2, emb.back().select(2, 0)).to(at::kLong));
    if (f->contains("control_latents"))
      control.push_back(cache_tensor(*f, "control_latents", 4, lat.back()).to(at::kFloat));
    const int64_t rows = lat.back().size(0);
    if (emb.back().size(0) != rows || mask.back().size(0) != rows ||
        (control.size() == lat.size() && control.back().size(0) != rows))
      throw Error("--cache: " + f->path() + ": its tensors hold different numbers of samples");
  }
  if (lat.empty()) throw Error("--cache: " + dir + " lists no shards");
  if (!control.empty() && control.size() != lat.size())
    throw Error("--cache: " + dir + ": only some shards hold control_latents");
  if (!control.empty()) c.control_latents = at::cat(control);
  c.latents = at::cat(lat);
  c.prompt_embeds = at::cat(emb);
  c.prompt_attention_mask = at::cat(mask);
  const auto null = SafetensorsFile::open((root / "null.safetensors").string());
  c.null_embeds = cache_tensor(*null, "prompt_embeds", 2).to(at::kFloat);
  c.null_mask = cache_tensor(*null, "prompt_attention_mask", 1).to(at::kLong);
  if (c.null_embeds.sizes() != emb[0].sizes().slice(1) || c.null_mask.size(0) != c.null_embeds.size(0))
    throw Error("--cache: " + null->path() + ": the empty prompt's embedding does not match the shards' " +
                c10::str(emb[0].sizes().slice(1)));
  std::istringstream caps(read_text_file((root / "captions.txt").string()));
  for (std::string line; std::getline(caps, line);) c.captions.push_back(line);
  if (static_cast<int64_t>(c.captions.size()) != c.size())
    throw Error("--cache: " + dir + ": captions.txt has " + std::to_string(c.captions.size()) + " lines for " +
                std::to_string(c.size()) + " latents");
  const std::string p = cfg_path.string();
  c.prompt.max_sequence_length = cache_setting(cfg, "max_sequence_length", 300, p);
  c.prompt.use_complex_human_instruction = cache_setting(cfg, "use_complex_human_instruction", false, p);
  c.scaling_factor = cache_setting(cfg, "scaling_factor", 1.0, p);
  c.image_size = cache_setting(cfg, "image_size", 0, p);
  if (!std::isfinite(c.scaling_factor) || c.scaling_factor <= 0)
    throw Error("--cache: " + p + ": 'scaling_factor' must be a positive number");
  return c;
}

namespace {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// Collects encoded rows and writes them out as shard-NNNNN.safetensors files of about `shard_size` rows.
class ShardWriter {
 public:
  ShardWriter(std::string dir, int64_t shard_size) : dir_(std::move(dir)), shard_size_(shard_size) {}

  void add(const at::Tensor& latents, const at::Tensor& embeds, const at::Tensor& mask, const at::Tensor& control) {
    lat_.push_back(latents), emb_.push_back(embeds), mask_.push_back(mask);
    if (control.defined()) control_.push_back(control);
    rows_ += latents.size(0);
    if (rows_ >= shard_size_) flush();
  }

  void flush() {
    if (rows_ == 0) return;
    char name[64];
    std::snprintf(name, sizeof(name), "shard-%05zu.safetensors", names_.size());
    NamedTensors tensors{{"latents", at::cat(lat_)}, {"prompt_embeds", at::cat(emb_)},
                         {"prompt_attention_mask", at::cat(mask_)}};
    if (!control_.empty()) tensors.emplace_back("control_latents", at::cat(control_));
    save_safetensors((fs::path(dir_) / name).string(), tensors);
    names_.push_back(name);
    lat_.clear(), emb_.clear(), mask_.clear(), control_.clear();
    rows_ = 0;
  }

  const json& names() const { return names_; }

 private:
  std::string dir_;
  int64_t shard_size_, rows_ = 0;
  std::vector<at::Tensor> lat_, emb_, mask_, control_;
  json names_ = json::array();
};

// Images [i, i + b) of `files` as [b, 3, S, S] in [0, 1]; every image must be square, RGB and of the first one's
// size (`size`, set by the first call).
at::Tensor load_images(const std::vector<std::string>& files, int64_t i, int64_t b, int& size) {
  std::vector<at::Tensor> imgs;
  for (int64_t j = i; j < i + b; ++j) {
    at::Tensor img = load_png(files[j]);
    if (size == 0) size = static_cast<int>(img.size(1));
    if (img.size(1) != size || img.size(2) != size)
      throw Error("cache: " + files[j] + " is " + std::to_string(img.size(2)) + "x" +
                  std::to_string(img.size(1)) + ", expected " + std::to_string(size) + "x" + std::to_string(size) +
                  " like the first image");
    imgs.push_back(img);
  }
  return at::stack(imgs);
}

}  // namespace

void build_latent_cache(const CacheOptions& o) {
  c10::InferenceMode inference;
  OutputFolderRule rule;
  rule.overwrite = o.overwrite;
  check_output_folder(o.out, {{"--data", o.data}, {"--base", o.base}}, rule);
  const ImageCaptionFolder data = ImageCaptionFolder::open(o.data);
  // Bounded before anything is allocated: a batch is held whole as images, latents and text states.
  if (o.batch_size < 1 || o.batch_size > 1024)
    throw Error("--batch-size must be between 1 and 1024, got " + std::to_string(o.batch_size));
  if (o.prompt.max_sequence_length < 1 || o.prompt.max_sequence_length > GenerationLimits::max_sequence_length)
    throw Error("--max-sequence-length must be between 1 and " + std::to_string(GenerationLimits::max_sequence_length) +
                ", got " + std::to_string(o.prompt.max_sequence_length));
  const fs::path base(o.base);
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  note("loading tokenizer, text encoder and VAE from " + o.base);
  const auto tokenizer = GemmaTokenizer::from_pretrained((base / "tokenizer").string());
  const auto text_encoder = Gemma2Model::from_pretrained((base / "text_encoder").string(), opts);
  const auto vae = AutoencoderDC::from_pretrained((base / "vae").string(), opts);
  const double sf = vae->config().scaling_factor;
  fs::create_directories(o.out);

  const int64_t n = static_cast<int64_t>(data.images.size());
  int image_size = 0;
  ShardWriter shards(o.out, o.shard_size);
  const double t0 = now();
  for (int64_t i = 0; i < n; i += o.batch_size) {
    const int64_t b = std::min<int64_t>(o.batch_size, n - i);
    const at::Tensor latents = vae->encode(load_images(data.images, i, b, image_size) * 2 - 1) * sf;
    const at::Tensor control = data.controls.empty()
                                   ? at::Tensor()
                                   : vae->encode(load_images(data.controls, i, b, image_size) * 2 - 1) * sf;
    const std::vector<std::string> captions(data.captions.begin() + i, data.captions.begin() + i + b);
    const auto [embeds, mask] = encode_prompt_with(tokenizer, *text_encoder, captions, o.prompt, at::kCPU);
    shards.add(latents, embeds, mask, control);
    if ((i / o.batch_size) % 20 == 0 || i + b == n)
      note("cache: " + std::to_string(i + b) + "/" + std::to_string(n) + " (" +
           std::to_string(static_cast<int>(now() - t0)) + " s)");
  }
  shards.flush();
  // The empty prompt: classifier-free guidance's unconditional input.
  const auto [null_embeds, null_mask] = encode_prompt_with(tokenizer, *text_encoder, {""}, o.prompt, at::kCPU);
  save_safetensors((fs::path(o.out) / "null.safetensors").string(),
                   NamedTensors{{"prompt_embeds", null_embeds[0].contiguous()},
                                {"prompt_attention_mask", null_mask[0].contiguous()}});
  std::ostringstream caps;
  for (const auto& c : data.captions) caps << c << "\n";
  write_file_atomic((fs::path(o.out) / "captions.txt").string(), caps.str());
  const json cfg = {{"count", n},
                    {"shards", shards.names()},
                    {"image_size", image_size},
                    {"scaling_factor", sf},
                    {"max_sequence_length", o.prompt.max_sequence_length},
                    {"use_complex_human_instruction", o.prompt.use_complex_human_instruction},
                    {"control", !data.controls.empty()},
                    {"source", fs::absolute(o.data).string()}};
  write_file_atomic((fs::path(o.out) / "cache_config.json").string(), cfg.dump(2) + "\n");
}

}  // namespace sana
