#pragma once
// PNG in and out (libpng), JPEG (libjpeg-turbo) and WebP (libwebp): 8-bit RGB with text chunks (e.g. the generation parameters under "parameters"), as files
// or as bytes in memory (the server's base64 images).
#include <ATen/ATen.h>

#include <map>
#include <string>

namespace sana {

// Largest width or height a decoded image may declare: the pixel buffer is allocated from the header, so a small
// hostile file could otherwise ask for gigabytes.
constexpr int kMaxImageSide = 8192;

// image [3, H, W] float in [0, 1] -> uint8 as round-half-even(x * 255) (numpy's rounding, as the reference).
at::Tensor to_uint8_hwc(const at::Tensor& image);

// The PNG file's bytes for image [3, H, W] in [0, 1].
std::string encode_png(const at::Tensor& image, const std::map<std::string, std::string>& text = {});
// Writes atomically (temporary file + rename). Errors name the path.
void save_png(const std::string& path, const at::Tensor& image, const std::map<std::string, std::string>& text = {});

// The JPEG file's bytes (libjpeg-turbo, 4:2:0) for image [3, H, W] in [0, 1]; quality 1..100.
std::string encode_jpeg(const at::Tensor& image, int quality = 90);

// Whether the bytes start as a JPEG file does (FF D8 FF).
bool is_jpeg(const std::string& bytes);
// A baseline or progressive JPEG (RGB or grey; grey replicated to RGB, as Pillow's convert("RGB")) as [3, H, W] float
// in [0, 1], decoded by libjpeg(-turbo) with its defaults, as Pillow decodes it. Sides over `max_side` are refused
// from the header, before any pixel memory is taken; errors name `what`.
at::Tensor decode_jpeg(const std::string& bytes, const std::string& what, int max_side = kMaxImageSide);

// The WebP file's bytes (libwebp) for image [3, H, W] in [0, 1]: lossy at `quality` 0..99, lossless at 100.
std::string encode_webp(const at::Tensor& image, int quality = 90);
// Whether the bytes start as a WebP file does ("RIFF" ... "WEBP").
bool is_webp(const std::string& bytes);
// A still WebP (lossy or lossless; alpha dropped; an animation's first frame) as [3, H, W] float in [0, 1], decoded by
// libwebp as Pillow decodes it. Sides over `max_side` are refused from the header; errors name `what`.
at::Tensor decode_webp(const std::string& bytes, const std::string& what, int max_side = kMaxImageSide);

// An 8-bit PNG (gray, RGB or RGBA; alpha dropped; 16-bit stripped) as [3, H, W] float in [0, 1], plus its text
// chunks. `what` names the source in errors ("control_image", a path). A side over `max_side` is refused from the
// header, before any pixel memory is taken.
at::Tensor decode_png(const std::string& bytes, const std::string& what,
                      std::map<std::string, std::string>* text = nullptr, int max_side = kMaxImageSide);
at::Tensor load_png(const std::string& path, std::map<std::string, std::string>* text = nullptr);

}  // namespace sana
