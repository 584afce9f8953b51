#pragma once
// The rows of a global batch that this process trains on.
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "sana/pipeline/options.h"
#include "sana/train/data.h"

namespace sana::detail {

// The rank's rows of a global batch: rows [global * rank / world, global * (rank + 1) / world).
struct Slice {
  int rank = 0, world = 1;
  int64_t global = 0;
  int64_t begin() const { return global * rank / world; }
  int64_t size() const { return global * (rank + 1) / world - begin(); }
  at::Tensor operator()(const at::Tensor& t) const { return t.narrow(0, begin(), size()); }
};

// The indices (among n items) of this rank's rows of the global batch of step k: sample_index of each row.
std::vector<int64_t> batch_indices(uint64_t seed, int64_t step, const Slice& slice, int64_t n);

// This rank's rows of the cache for step k, on `device`.
struct Batch {
  at::Tensor latents, embeds, mask;
  at::Tensor control;  // the control latents, when the cache has them
  std::vector<int64_t> indices;
};
Batch cache_batch(const LatentCache& cache, uint64_t seed, int64_t step, const Slice& slice, const at::Device& device,
                  at::ScalarType dtype);

// A sample grid's pipeline call for the cache's first (up to) 8 samples: their cached text, the empty prompt as CFG's
// negative, their control latents when `with_control` (and the cache has them), the cache's image size (latent size
// times `vae_factor`), a fixed seed.
GenerateOptions grid_options(const LatentCache& cache, int vae_factor, uint64_t seed, bool with_control);

}  // namespace sana::detail
