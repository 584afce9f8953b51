// WebP in and out through libwebp (image.h): input images as browsers and phones save them, and a compact output
// format for the server's answers.
#include <webp/decode.h>
#include <webp/encode.h>

#include "sana/error.h"
#include "sana/io/image.h"

namespace sana {

bool is_webp(const std::string& bytes) {
  return bytes.size() >= 12 && bytes.compare(0, 4, "RIFF") == 0 && bytes.compare(8, 4, "WEBP") == 0;
}

at::Tensor decode_webp(const std::string& bytes, const std::string& what, int max_side) {
  if (!is_webp(bytes)) throw Error(what + " is not a WebP image");
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  int W = 0, H = 0;
  if (!WebPGetInfo(data, bytes.size(), &W, &H)) throw Error(what + " is a broken or unsupported WebP image");
  if (W > max_side || H > max_side)  // from the header, before any pixel memory is taken
    throw Error(what + " is " + std::to_string(W) + "x" + std::to_string(H) + ", more than the limit of " +
                std::to_string(max_side) + " pixels per side");
  // Alpha, when there is one, is dropped (as Pillow's convert("RGB") does); animations give their first frame.
  uint8_t* pixels = WebPDecodeRGB(data, bytes.size(), &W, &H);
  if (!pixels) throw Error(what + " is a broken WebP image (cut short, or its data does not decode)");
  const at::Tensor hwc = at::from_blob(pixels, {H, W, 3}, at::kByte).clone();
  WebPFree(pixels);
  return hwc.permute({2, 0, 1}).to(at::kFloat).div_(255.0).contiguous();
}

std::string encode_webp(const at::Tensor& image, int quality) {
  if (quality < 0 || quality > 100) throw Error("webp quality must be in 0..100");
  const at::Tensor hwc = to_uint8_hwc(image);
  const int W = static_cast<int>(hwc.size(1)), H = static_cast<int>(hwc.size(0));
  uint8_t* out = nullptr;
  const size_t size = quality == 100 ? WebPEncodeLosslessRGB(hwc.data_ptr<uint8_t>(), W, H, W * 3, &out)
                                     : WebPEncodeRGB(hwc.data_ptr<uint8_t>(), W, H, W * 3, quality, &out);
  std::string bytes = size ? std::string(reinterpret_cast<char*>(out), size) : std::string();
  WebPFree(out);
  if (bytes.empty()) throw Error("encoding a WebP image failed (" + std::to_string(W) + "x" + std::to_string(H) + ")");
  return bytes;
}

}  // namespace sana
