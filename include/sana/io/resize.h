#pragma once
// Image resizing as Pillow does it (Image.resize with LANCZOS on an 8-bit RGB image), which is how diffusers'
// image processors bring a control or init image to the generation size: a separable Lanczos-3 filter, widened by
// the scale factor when shrinking (antialiasing), with Pillow's fixed-point rounding and an 8-bit intermediate
// between the horizontal and the vertical pass.
#include <ATen/ATen.h>

namespace sana {

// [H, W, C] uint8 -> [height, width, C] uint8.
at::Tensor resize_lanczos_u8(const at::Tensor& hwc, int height, int width);

}  // namespace sana
