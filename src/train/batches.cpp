// Batches of the latent cache (batches.h).
#include "train/batches.h"

namespace sana::detail {

std::vector<int64_t> batch_indices(uint64_t seed, int64_t step, const Slice& slice, int64_t n) {
  std::vector<int64_t> idx;
  for (int64_t j = slice.begin(); j < slice.begin() + slice.size(); ++j)
    idx.push_back(sample_index(seed, step, slice.global, j, n));
  return idx;
}

Batch cache_batch(const LatentCache& cache, uint64_t seed, int64_t step, const Slice& slice, const at::Device& device,
                  at::ScalarType dtype) {
  Batch b;
  b.indices = batch_indices(seed, step, slice, cache.size());
  const at::Tensor idx = at::tensor(b.indices, at::kLong);
  b.latents = cache.latents.index_select(0, idx).to(device, dtype);
  b.embeds = cache.prompt_embeds.index_select(0, idx).to(device, dtype);
  b.mask = cache.prompt_attention_mask.index_select(0, idx).to(device);
  if (cache.control_latents.defined()) b.control = cache.control_latents.index_select(0, idx).to(device, dtype);
  return b;
}

GenerateOptions grid_options(const LatentCache& cache, int vae_factor, uint64_t seed, bool with_control) {
  const int64_t k = std::min<int64_t>(8, cache.size());
  GenerateOptions o;
  o.prompt_embeds = cache.prompt_embeds.narrow(0, 0, k);
  o.prompt_attention_mask = cache.prompt_attention_mask.narrow(0, 0, k);
  o.negative_prompt_embeds = cache.null_embeds;
  o.negative_prompt_attention_mask = cache.null_mask;
  if (with_control && cache.control_latents.defined()) o.control_latents = cache.control_latents.narrow(0, 0, k);
  o.height = o.width = static_cast<int>(cache.latents.size(2)) * vae_factor;
  o.seed = seed;
  return o;
}

}  // namespace sana::detail
