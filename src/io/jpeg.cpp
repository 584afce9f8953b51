// JPEG encoding through libjpeg(-turbo) (image.h), for the server's live frames: a fraction of a PNG's size and
// encode time at 90 % quality.
#include <csetjmp>
#include <cstddef>
#include <cstdio>
#include <cstdlib>

#include <jpeglib.h>  // after <cstddef> and <cstdio>: it uses size_t and FILE without including them

#include "sana/error.h"
#include "sana/io/image.h"

namespace sana {
namespace {

// libjpeg's default error handler exits the process; this one jumps back to the caller instead.
struct ErrorManager {
  jpeg_error_mgr base;
  jmp_buf jump;
};

void on_error(j_common_ptr cinfo) { std::longjmp(reinterpret_cast<ErrorManager*>(cinfo->err)->jump, 1); }

// Every local here is trivially destructible: the jump skips no destructor. The output buffer is malloc'ed by
// libjpeg into *out / *size and freed by the caller.
bool compress(const uint8_t* rgb, int W, int H, int quality, unsigned char** out, unsigned long* size) {
  jpeg_compress_struct cinfo;
  ErrorManager err;
  cinfo.err = jpeg_std_error(&err.base);
  err.base.error_exit = on_error;
  if (setjmp(err.jump)) {
    jpeg_destroy_compress(&cinfo);
    return false;
  }
  jpeg_create_compress(&cinfo);
  jpeg_mem_dest(&cinfo, out, size);
  cinfo.image_width = W;
  cinfo.image_height = H;
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(rgb + static_cast<size_t>(cinfo.next_scanline) * W * 3);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  return true;
}

// Reads the header, then (when both sides are within max_side) decodes to 8-bit RGB into a malloc'ed buffer the
// caller frees. Returns 0 on success, 1 for a broken or unsupported file, 2 for an image over max_side (W and H are
// set then). Trivially destructible locals only, as above.
int decompress(const unsigned char* bytes, unsigned long size, int max_side, unsigned char** out, int* W, int* H) {
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  cinfo.err = jpeg_std_error(&err.base);
  err.base.error_exit = on_error;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    std::free(*out);
    *out = nullptr;
    return 1;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, bytes, size);
  jpeg_read_header(&cinfo, TRUE);
  *W = static_cast<int>(cinfo.image_width);
  *H = static_cast<int>(cinfo.image_height);
  if (*W > max_side || *H > max_side) {
    jpeg_destroy_decompress(&cinfo);
    return 2;
  }
  cinfo.out_color_space = JCS_RGB;  // grey replicated, as Pillow's convert("RGB")
  jpeg_start_decompress(&cinfo);
  *out = static_cast<unsigned char*>(std::malloc(static_cast<size_t>(*W) * *H * 3));
  if (!*out) std::longjmp(err.jump, 1);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = *out + static_cast<size_t>(cinfo.output_scanline) * *W * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return 0;
}

}  // namespace

bool is_jpeg(const std::string& bytes) { return bytes.size() >= 3 && bytes.compare(0, 3, "\xFF\xD8\xFF") == 0; }

at::Tensor decode_jpeg(const std::string& bytes, const std::string& what, int max_side) {
  if (!is_jpeg(bytes)) throw Error(what + " is not a JPEG image");
  unsigned char* pixels = nullptr;
  int W = 0, H = 0;
  const int status = decompress(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), max_side, &pixels,
                                &W, &H);
  if (status == 2)
    throw Error(what + " is " + std::to_string(W) + "x" + std::to_string(H) + ", more than the limit of " +
                std::to_string(max_side) + " pixels per side");
  if (status != 0) throw Error(what + " is a broken or unsupported JPEG (CMYK, or cut short)");
  const at::Tensor hwc = at::from_blob(pixels, {H, W, 3}, at::kByte).clone();
  std::free(pixels);
  return hwc.permute({2, 0, 1}).to(at::kFloat).div_(255.0).contiguous();
}

std::string encode_jpeg(const at::Tensor& image, int quality) {
  if (quality < 1 || quality > 100) throw Error("jpeg quality must be in 1..100");
  const at::Tensor hwc = to_uint8_hwc(image);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  const bool ok = compress(hwc.data_ptr<uint8_t>(), static_cast<int>(hwc.size(1)), static_cast<int>(hwc.size(0)),
                           quality, &buffer, &size);
  std::string bytes = ok ? std::string(reinterpret_cast<char*>(buffer), size) : std::string();
  std::free(buffer);
  if (!ok) throw Error("encoding a JPEG failed");
  return bytes;
}

}  // namespace sana
