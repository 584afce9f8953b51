#pragma once
// PNG output (libpng): 8-bit RGB with text chunks (e.g. the generation parameters under "parameters").
#include <ATen/ATen.h>

#include <map>
#include <string>

namespace sana {

// image [3, H, W] float in [0, 1] -> uint8 as round-half-even(x * 255) (numpy's rounding, as the reference).
at::Tensor to_uint8_hwc(const at::Tensor& image);

// Writes atomically (temporary file + rename). Errors name the path.
void save_png(const std::string& path, const at::Tensor& image, const std::map<std::string, std::string>& text = {});

// Reads an 8-bit PNG (gray, RGB or RGBA; alpha dropped) as [3, H, W] float in [0, 1], plus its text chunks.
at::Tensor load_png(const std::string& path, std::map<std::string, std::string>* text = nullptr);

}  // namespace sana
