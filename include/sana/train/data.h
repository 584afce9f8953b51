#pragma once
// Training data (docs/ARCHITECTURE.md, "Training"): image-caption folders, the deterministic batch order, and the
// latent cache the diffusion trainers read.
//
// Determinism by construction: every random draw of step k comes from a CPU generator seeded with (seed, k, stream),
// and the batch of step k is a pure function of (seed, k) (one seeded permutation per epoch). A checkpoint therefore
// needs only the weights, the optimizer state and k to continue exactly.
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "sana/text/prompt.h"

namespace sana {

// An image-caption folder: NAME.png with NAME.txt beside it (sorted by name), and for ControlNet training
// NAME.control.png, the control image (for every image or for none).
struct ImageCaptionFolder {
  std::vector<std::string> images, captions, controls;
  static ImageCaptionFolder open(const std::string& dir);
};

// Index of the j-th sample of step k for a dataset of n samples: one seeded permutation per epoch.
int64_t sample_index(uint64_t seed, int64_t step, int64_t batch_size, int64_t j, int64_t n);

// A CPU generator for step `step` of a run seeded with `seed` (splitmix64 of both and the stream).
at::Generator step_generator(uint64_t seed, int64_t step, uint64_t stream = 0);

// The random streams of a run besides the per-step one (stream 0). Each initialisation draws from its own stream at
// step -1, so adding or removing one part never shifts the numbers another part gets; the values only need to
// differ (they are what the shipped models were trained with).
namespace streams {
constexpr uint64_t kDataOrder = 0xda7a;        // the per-epoch permutations
constexpr uint64_t kTeacherInit = 0x1417;      // flow teacher: adaLN tables
constexpr uint64_t kGuidanceInit = 0x9e1d;     // student: the new guidance embedder
constexpr uint64_t kLogvarInit = 0x109a;       // student: the adaptive-weight head
constexpr uint64_t kDiscriminatorInit = 0xd15c;  // LADD heads and their power-iteration vectors
constexpr uint64_t kLoraInit = 0x10a4;         // LoRA adapters: the down matrices
}  // namespace streams

// Precomputed training inputs (the reference trains on precomputed VAE features as well):
// <dir>/cache_config.json, shard-NNNNN.safetensors with latents [n, C, h, w] (VAE latent * scaling_factor),
// prompt_embeds [n, L, C_text], prompt_attention_mask [n, L] (and control_latents [n, C, h, w] when the folder has
// control images); null.safetensors with the empty prompt's embedding
// and mask (the unconditional input for classifier-free guidance); captions.txt, one caption per line.
struct LatentCache {
  at::Tensor latents, prompt_embeds, prompt_attention_mask;  // all samples, CPU
  at::Tensor control_latents;                                // the control images' latents * scaling_factor, or none
  at::Tensor null_embeds, null_mask;                         // [L, C_text], [L]
  std::vector<std::string> captions;
  PromptOptions prompt;                                      // how the captions were encoded
  double scaling_factor = 1.0;
  int image_size = 0;

  static LatentCache open(const std::string& dir);
  int64_t size() const { return latents.size(0); }
};

struct CacheOptions {
  std::string data, base, out;  // image-caption folder, folder with tokenizer/ text_encoder/ vae/, output
  int batch_size = 64;
  int shard_size = 8192;
  PromptOptions prompt;
  bool overwrite = false;  // allow writing into a folder that holds other files
};
void build_latent_cache(const CacheOptions& options);

}  // namespace sana
