#include "sana/io/image.h"

#include <png.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "sana/error.h"

namespace sana {

at::Tensor to_uint8_hwc(const at::Tensor& image) {
  if (image.dim() != 3 || image.size(0) != 3) throw Error("image must be [3, H, W], got " + c10::str(image.sizes()));
  return at::round(image.to(at::kFloat).clamp(0, 1) * 255).to(at::kByte).permute({1, 2, 0}).contiguous().cpu();
}

void save_png(const std::string& path, const at::Tensor& image, const std::map<std::string, std::string>& text) {
  const at::Tensor hwc = to_uint8_hwc(image);
  const int H = static_cast<int>(hwc.size(0)), W = static_cast<int>(hwc.size(1));
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  FILE* fp = std::fopen(tmp.c_str(), "wb");
  if (!fp) throw Error("cannot write " + path + " (is the directory there and writable?)");
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::fclose(fp);
    std::remove(tmp.c_str());
    throw Error("writing PNG " + path + " failed");
  }
  png_init_io(png, fp);
  png_set_IHDR(png, info, W, H, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  std::vector<png_text> chunks;
  for (const auto& [key, value] : text) {
    png_text t{};
    t.compression = PNG_TEXT_COMPRESSION_NONE;
    t.key = const_cast<char*>(key.c_str());
    t.text = const_cast<char*>(value.c_str());
    t.text_length = value.size();
    chunks.push_back(t);
  }
  if (!chunks.empty()) png_set_text(png, info, chunks.data(), static_cast<int>(chunks.size()));
  png_write_info(png, info);
  const uint8_t* data = hwc.data_ptr<uint8_t>();
  for (int y = 0; y < H; ++y) png_write_row(png, const_cast<png_bytep>(data + static_cast<size_t>(y) * W * 3));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  if (std::fflush(fp) != 0 || fsync(fileno(fp)) != 0 || std::fclose(fp) != 0) {
    std::remove(tmp.c_str());
    throw Error("writing PNG " + path + " failed (disk full?)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error("cannot move " + tmp + " to " + path);
  }
}

at::Tensor load_png(const std::string& path, std::map<std::string, std::string>* text) {
  FILE* fp = std::fopen(path.c_str(), "rb");
  if (!fp) throw Error("cannot open image " + path);
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    std::fclose(fp);
    throw Error("image " + path + " is not a readable PNG");
  }
  png_init_io(png, fp);
  png_read_info(png, info);
  png_set_strip_16(png);
  png_set_palette_to_rgb(png);
  png_set_expand_gray_1_2_4_to_8(png);
  png_set_gray_to_rgb(png);
  png_set_strip_alpha(png);
  png_read_update_info(png, info);
  const int W = png_get_image_width(png, info), H = png_get_image_height(png, info);
  at::Tensor hwc = at::empty({H, W, 3}, at::kByte);
  std::vector<png_bytep> rows(H);
  for (int y = 0; y < H; ++y) rows[y] = hwc.data_ptr<uint8_t>() + static_cast<size_t>(y) * W * 3;
  png_read_image(png, rows.data());
  png_read_end(png, info);
  if (text) {
    png_textp chunks = nullptr;
    const int n = png_get_text(png, info, &chunks, nullptr);
    for (int i = 0; i < n; ++i) (*text)[chunks[i].key] = std::string(chunks[i].text, chunks[i].text_length);
  }
  png_destroy_read_struct(&png, &info, nullptr);
  std::fclose(fp);
  return hwc.permute({2, 0, 1}).to(at::kFloat) / 255.0;
}

}  // namespace sana
