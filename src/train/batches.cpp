// Batches of the latent cache (batches.h).
#include "train/batches.h"

namespace sana::detail {

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

}  // namespace sana::detail
