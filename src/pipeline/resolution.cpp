// Pipeline step 2: generation size and resolution binning (resolution.h).
#include "sana/pipeline/resolution.h"

#include <cmath>
#include <string>
#include <vector>

#include "sana/error.h"
#include "sana/pipeline/pipeline.h"

namespace sana {
namespace {

// diffusers ASPECT_RATIO_1024_BIN: height/width ratio -> (height, width).
const std::vector<std::pair<double, std::pair<int, int>>>& bins_1024() {
  static const std::vector<std::pair<double, std::pair<int, int>>> bins = {
      {0.25, {512, 2048}},  {0.28, {512, 1856}},  {0.32, {576, 1792}},  {0.33, {576, 1728}}, {0.35, {576, 1664}},
      {0.4, {640, 1600}},   {0.42, {640, 1536}},  {0.48, {704, 1472}},  {0.5, {704, 1408}},  {0.52, {704, 1344}},
      {0.57, {768, 1344}},  {0.6, {768, 1280}},   {0.68, {832, 1216}},  {0.72, {832, 1152}}, {0.78, {896, 1152}},
      {0.82, {896, 1088}},  {0.88, {960, 1088}},  {0.94, {960, 1024}},  {1.0, {1024, 1024}}, {1.07, {1024, 960}},
      {1.13, {1088, 960}},  {1.21, {1088, 896}},  {1.29, {1152, 896}},  {1.38, {1152, 832}}, {1.46, {1216, 832}},
      {1.67, {1280, 768}},  {1.75, {1344, 768}},  {2.0, {1408, 704}},   {2.09, {1472, 704}}, {2.4, {1536, 640}},
      {2.5, {1600, 640}},   {3.0, {1728, 576}},   {4.0, {2048, 512}}};
  return bins;
}

}  // namespace

void check_image_size(int height, int width, int f) {
  if (height <= 0 || width <= 0 || height % f != 0 || width % f != 0)
    throw Error("height/width: " + std::to_string(height) + "x" + std::to_string(width) +
                " must be positive multiples of the VAE factor " + std::to_string(f));
}

std::pair<int, int> closest_1024_bin(int height, int width) {
  const double ratio = static_cast<double>(height) / width;
  const auto* best = &bins_1024().front();
  for (const auto& b : bins_1024())
    if (std::abs(b.first - ratio) < std::abs(best->first - ratio)) best = &b;
  return best->second;
}

std::pair<int, int> generation_size(const PipelineComponents& c, const GenerateOptions& o) {
  const int f = c.vae_scale_factor();
  check_image_size(o.height, o.width, f);
  const bool binning = o.resolution_binning && c.transformer->config().sample_size == 32 && f == 32;
  return binning ? closest_1024_bin(o.height, o.width) : std::make_pair(o.height, o.width);
}

at::Tensor resize_from_bin(const at::Tensor& images, int height, int width) {
  const int64_t h = images.size(2), w = images.size(3);
  if (h == height && w == width) return images;
  const double scale = std::max(static_cast<double>(height) / h, static_cast<double>(width) / w);
  const int64_t rh = static_cast<int64_t>(h * scale), rw = static_cast<int64_t>(w * scale);
  const at::Tensor resized = at::upsample_bilinear2d(images, {rh, rw}, /*align_corners=*/false);
  return resized.narrow(2, (rh - height) / 2, height).narrow(3, (rw - width) / 2, width);
}

}  // namespace sana
