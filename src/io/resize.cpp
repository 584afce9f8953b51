// Pillow-exact Lanczos resizing (resize.h): coefficients per output pixel in float64, normalised, turned into
// 22-bit fixed point; each pass accumulates in 32-bit integers with rounding and clips to 8 bits.
#include "sana/io/resize.h"

#include <cmath>
#include <vector>

#include "sana/error.h"

namespace sana {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;
constexpr double kSupport = 3.0;  // Lanczos-3

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= M_PI;
  return std::sin(x) / x;
}

double lanczos(double x) { return (-kSupport <= x && x < kSupport) ? sinc(x) * sinc(x / kSupport) : 0.0; }

// For each output pixel along one axis: the first input pixel, the count, and the fixed-point weights.
struct Coefficients {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> weights;  // [out * ksize]
};

Coefficients coefficients(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = kSupport * filterscale;
  Coefficients c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.weights.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> k(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      k[x] = lanczos((x + xmin - center + 0.5) * ss);
      ww += k[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double w = ww != 0.0 ? k[x] / ww : k[x];
      c.weights[static_cast<size_t>(xx) * c.ksize + x] =
          static_cast<int32_t>(w < 0 ? -0.5 + w * (1 << kPrecisionBits) : 0.5 + w * (1 << kPrecisionBits));
    }
    c.first.push_back(xmin);
    c.count.push_back(xmax);
  }
  return c;
}

uint8_t clip8(int64_t v) {
  if (v >= (int64_t{1} << kPrecisionBits << 8)) return 255;
  if (v <= 0) return 0;
  return static_cast<uint8_t>(v >> kPrecisionBits);
}

// One pass along axis `axis` (0: rows, i.e. vertical; 1: columns, horizontal) of an [H, W, C] uint8 image.
at::Tensor resample(const at::Tensor& in, int out_size, int axis, const Coefficients& c) {
  const int64_t H = in.size(0), W = in.size(1), C = in.size(2);
  const int64_t oh = axis == 0 ? out_size : H, ow = axis == 1 ? out_size : W;
  at::Tensor out = at::empty({oh, ow, C}, at::kByte);
  const uint8_t* src = in.data_ptr<uint8_t>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  for (int64_t y = 0; y < oh; ++y)
    for (int64_t x = 0; x < ow; ++x) {
      const int o = static_cast<int>(axis == 0 ? y : x);
      const int32_t* k = &c.weights[static_cast<size_t>(o) * c.ksize];
      for (int64_t ch = 0; ch < C; ++ch) {
        int64_t acc = int64_t{1} << (kPrecisionBits - 1);
        for (int j = 0; j < c.count[o]; ++j) {
          const int64_t sy = axis == 0 ? c.first[o] + j : y, sx = axis == 1 ? c.first[o] + j : x;
          acc += static_cast<int64_t>(src[(sy * W + sx) * C + ch]) * k[j];
        }
        dst[(y * ow + x) * C + ch] = clip8(acc);
      }
    }
  return out;
}

}  // namespace

at::Tensor resize_lanczos_u8(const at::Tensor& hwc, int height, int width) {
  if (hwc.dim() != 3 || hwc.scalar_type() != at::kByte)
    throw Error("resize: expected an [H, W, C] uint8 image, got " + c10::str(hwc.sizes()));
  if (height < 1 || width < 1) throw Error("resize: target size must be positive");
  at::Tensor img = hwc.contiguous();
  const int H = static_cast<int>(img.size(0)), W = static_cast<int>(img.size(1));
  if (H == height && W == width) return img.clone();
  // Horizontal pass first, over only the rows the vertical pass will read (Pillow's order).
  const Coefficients cv = coefficients(H, height);
  if (W != width) {
    const int first = cv.first.front(), last = cv.first.back() + cv.count.back();
    img = resample(img.narrow(0, first, last - first).contiguous(), width, 1, coefficients(W, width));
    Coefficients shifted = cv;
    for (int& f : shifted.first) f -= first;
    return H == height ? img : resample(img, height, 0, shifted);
  }
  return resample(img, height, 0, cv);
}

}  // namespace sana
