#pragma once
// Pipeline step 2: the size the model generates at. The 1024-px models were trained on fixed aspect-ratio bins;
// diffusers generates at the closest bin and resizes the image back to the requested size (cover, centre crop).
#include <ATen/ATen.h>

#include <utility>

namespace sana {

struct PipelineComponents;
struct GenerateOptions;

// sana::Error unless height and width are positive multiples of the VAE factor (checkable before any model loads).
// The message names the fields "height/width".
void check_image_size(int height, int width, int vae_factor);

// The aspect-ratio bin of the 1024-px models closest to height/width: {height, width}.
std::pair<int, int> closest_1024_bin(int height, int width);

// {height, width} to generate at: the bin when options.resolution_binning applies to this model (a 1024-px
// transformer, sample_size 32, with a factor-32 VAE), else the request.
std::pair<int, int> generation_size(const PipelineComponents& components, const GenerateOptions& options);

// images [B, 3, h, w] generated at a bin -> [B, 3, height, width]: bilinear scale to cover, then centre crop.
at::Tensor resize_from_bin(const at::Tensor& images, int height, int width);

}  // namespace sana
