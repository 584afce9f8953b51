// PNG encoding and decoding through libpng, in memory (image.h).
#include "sana/io/image.h"

#include <png.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "sana/error.h"
#include "sana/io/atomic_file.h"
#include "sana/io/config.h"

namespace sana {
namespace {

// libpng reports errors by longjmp. Every function below that calls setjmp holds only trivially destructible locals,
// so the jump skips no destructor; C++ objects live in the callers.

void append_bytes(png_structp png, png_bytep data, png_size_t n) {
  static_cast<std::string*>(png_get_io_ptr(png))->append(reinterpret_cast<const char*>(data), n);
}

struct ReadCursor {
  const char* data;
  size_t size, pos;
};

void read_bytes(png_structp png, png_bytep out, png_size_t n) {
  auto* c = static_cast<ReadCursor*>(png_get_io_ptr(png));
  if (c->size - c->pos < n) png_error(png, "truncated");
  std::memcpy(out, c->data + c->pos, n);
  c->pos += n;
}

// libpng prints errors and warnings to stderr by default; here an error only unwinds to the setjmp of the caller,
// which reports it as one sana::Error line.
void quiet_error(png_structp png, png_const_charp) { png_longjmp(png, 1); }
void quiet_warning(png_structp, png_const_charp) {}

// libpng's read state, freed on every path out, errors included.
struct PngReader {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, quiet_error, quiet_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  ~PngReader() { png_destroy_read_struct(&png, &info, nullptr); }
};

bool write_png_rows(png_structp png, png_infop info, std::string* out, const uint8_t* data, int W, int H,
                    png_text* chunks, int n_chunks) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_write_fn(png, out, append_bytes, nullptr);
  png_set_IHDR(png, info, W, H, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (n_chunks > 0) png_set_text(png, info, chunks, n_chunks);
  png_write_info(png, info);
  for (int y = 0; y < H; ++y) png_write_row(png, const_cast<png_bytep>(data + static_cast<size_t>(y) * W * 3));
  png_write_end(png, nullptr);
  return true;
}

bool read_png_header(png_structp png, png_infop info, ReadCursor* cursor, png_uint_32* W, png_uint_32* H) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_read_fn(png, cursor, read_bytes);
  png_read_info(png, info);
  *W = png_get_image_width(png, info);
  *H = png_get_image_height(png, info);
  return true;
}

// 8-bit RGB whatever the stored format: 16-bit stripped, palette and gray expanded, alpha dropped.
bool read_png_rows(png_structp png, png_infop info, png_bytep* rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_strip_16(png);
  png_set_palette_to_rgb(png);
  png_set_expand_gray_1_2_4_to_8(png);
  png_set_gray_to_rgb(png);
  png_set_strip_alpha(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != png_get_image_width(png, info) * 3) png_error(png, "unexpected row size");
  png_read_image(png, rows);
  png_read_end(png, info);
  return true;
}

}  // namespace

at::Tensor to_uint8_hwc(const at::Tensor& image) {
  if (image.dim() != 3 || image.size(0) != 3) throw Error("image must be [3, H, W], got " + c10::str(image.sizes()));
  return at::round(image.to(at::kFloat).clamp(0, 1) * 255).to(at::kByte).permute({1, 2, 0}).contiguous().cpu();
}

namespace {

std::string latin1_to_utf8(const char* text, size_t length) {
  std::string out;
  for (size_t i = 0; i < length; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

}  // namespace

std::string encode_png(const at::Tensor& image, const std::map<std::string, std::string>& text) {
  const at::Tensor hwc = to_uint8_hwc(image);
  const int H = static_cast<int>(hwc.size(0)), W = static_cast<int>(hwc.size(1));
  // Our text is UTF-8. A tEXt chunk is Latin-1 by definition, so text with any non-ASCII byte goes in an iTXt chunk
  // (UTF-8), as Pillow writes it when Latin-1 cannot hold the text; readers of A1111's "parameters" read both.
  std::vector<png_text> chunks;
  static char empty[] = "";
  for (const auto& [key, value] : text) {
    png_text t{};
    t.key = const_cast<char*>(key.c_str());
    t.text = const_cast<char*>(value.c_str());
    const bool ascii = std::all_of(value.begin(), value.end(), [](char c) { return (c & 0x80) == 0; });
    if (ascii) {
      t.compression = PNG_TEXT_COMPRESSION_NONE;
      t.text_length = value.size();
    } else {
      t.compression = PNG_ITXT_COMPRESSION_NONE;
      t.itxt_length = value.size();
      t.lang = empty;
      t.lang_key = empty;
    }
    chunks.push_back(t);
  }
  std::string bytes;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, quiet_error, quiet_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  const bool ok = png && info &&
                  write_png_rows(png, info, &bytes, hwc.data_ptr<uint8_t>(), W, H, chunks.data(),
                                 static_cast<int>(chunks.size()));
  png_destroy_write_struct(&png, &info);
  if (!ok) throw Error("encoding a " + std::to_string(W) + "x" + std::to_string(H) + " PNG failed");
  return bytes;
}

void save_png(const std::string& path, const at::Tensor& image, const std::map<std::string, std::string>& text) {
  const std::string bytes = encode_png(image, text);
  AtomicFile file(path);
  file.stream().write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  file.commit();
}

at::Tensor decode_png(const std::string& bytes, const std::string& what, std::map<std::string, std::string>* text,
                      int max_side) {
  if (bytes.size() < 8 || png_sig_cmp(reinterpret_cast<png_const_bytep>(bytes.data()), 0, 8) != 0)
    throw Error(what + " is not a PNG image");
  PngReader reader;
  png_structp png = reader.png;
  png_infop info = reader.info;
  ReadCursor cursor{bytes.data(), bytes.size(), 0};
  png_uint_32 W = 0, H = 0;
  if (!png || !info || !read_png_header(png, info, &cursor, &W, &H))
    throw Error(what + " is not a readable PNG (damaged or truncated)");
  const auto limit = static_cast<png_uint_32>(std::min(max_side, kMaxImageSide));
  if (W > limit || H > limit)
    throw Error(what + " is " + std::to_string(W) + "x" + std::to_string(H) + ", more than the limit of " +
                std::to_string(limit) + " pixels per side");
  at::Tensor hwc = at::empty({static_cast<int64_t>(H), static_cast<int64_t>(W), 3}, at::kByte);
  std::vector<png_bytep> rows(H);
  for (png_uint_32 y = 0; y < H; ++y) rows[y] = hwc.data_ptr<uint8_t>() + static_cast<size_t>(y) * W * 3;
  if (!read_png_rows(png, info, rows.data())) throw Error(what + " is not a readable PNG (damaged or truncated)");
  if (text) {
    png_textp chunks = nullptr;
    const int n = png_get_text(png, info, &chunks, nullptr);
    for (int i = 0; i < n; ++i) {
      const png_text& t = chunks[i];
      // iTXt is UTF-8 already; tEXt and zTXt are Latin-1, turned into UTF-8.
      (*text)[t.key] = t.compression >= PNG_ITXT_COMPRESSION_NONE ? std::string(t.text, t.itxt_length)
                                                                  : latin1_to_utf8(t.text, t.text_length);
    }
  }
  return hwc.permute({2, 0, 1}).to(at::kFloat) / 255.0;
}

at::Tensor load_png(const std::string& path, std::map<std::string, std::string>* text) {
  return decode_png(read_text_file(path), "image " + path, text);
}

}  // namespace sana
