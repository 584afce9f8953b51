// Canny edges (edges.h).
#include "sana/io/edges.h"

#include <ATen/core/grad_mode.h>
#include <cmath>
#include <vector>

#include "sana/error.h"

namespace sana {
namespace {

// 2-D convolution of [1, 1, H, W] with replicated borders.
at::Tensor filter2d(const at::Tensor& x, const at::Tensor& kernel) {
  const int64_t p = kernel.size(0) / 2;
  return at::conv2d(at::replication_pad2d(x, {p, p, p, p}), kernel.view({1, 1, kernel.size(0), kernel.size(1)}));
}

// Keeps a pixel only where its gradient magnitude is a maximum across the edge (directions quantised to 45 degrees).
at::Tensor non_maximum_suppression(const at::Tensor& mag, const at::Tensor& gx, const at::Tensor& gy) {
  const int64_t H = mag.size(0), W = mag.size(1);
  at::Tensor out = at::zeros_like(mag);
  const auto m = mag.accessor<float, 2>();
  const auto ax = gx.accessor<float, 2>(), ay = gy.accessor<float, 2>();
  auto o = out.accessor<float, 2>();
  for (int64_t y = 1; y + 1 < H; ++y)
    for (int64_t x = 1; x + 1 < W; ++x) {
      double angle = std::atan2(ay[y][x], ax[y][x]) * 180.0 / M_PI;
      if (angle < 0) angle += 180;
      int dy = 0, dx = 1;                                  // ~0 degrees: compare left and right
      if (angle >= 22.5 && angle < 67.5) dy = 1, dx = 1;   // ~45
      else if (angle >= 67.5 && angle < 112.5) dy = 1, dx = 0;  // ~90
      else if (angle >= 112.5 && angle < 157.5) dy = 1, dx = -1;  // ~135
      if (m[y][x] >= m[y + dy][x + dx] && m[y][x] >= m[y - dy][x - dx]) o[y][x] = m[y][x];
    }
  return out;
}

// Strong pixels and every weak pixel connected to one (8-neighbourhood).
at::Tensor hysteresis(const at::Tensor& nms, double low, double high) {
  const int64_t H = nms.size(0), W = nms.size(1);
  const auto m = nms.accessor<float, 2>();
  at::Tensor out = at::zeros({H, W}, at::kFloat);
  auto o = out.accessor<float, 2>();
  std::vector<std::pair<int64_t, int64_t>> stack;
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x)
      if (m[y][x] >= high) o[y][x] = 1, stack.emplace_back(y, x);
  while (!stack.empty()) {
    const auto [y, x] = stack.back();
    stack.pop_back();
    for (int64_t dy = -1; dy <= 1; ++dy)
      for (int64_t dx = -1; dx <= 1; ++dx) {
        const int64_t ny = y + dy, nx = x + dx;
        if (ny < 0 || nx < 0 || ny >= H || nx >= W || o[ny][nx] > 0 || m[ny][nx] < low) continue;
        o[ny][nx] = 1;
        stack.emplace_back(ny, nx);
      }
  }
  return out;
}

}  // namespace

at::Tensor canny_edges(const at::Tensor& image, double low, double high) {
  if (image.dim() != 3 || image.size(0) != 3) throw Error("canny: expected an RGB image [3, H, W]");
  if (!(low >= 0 && high >= low)) throw Error("canny: thresholds must satisfy 0 <= low <= high");
  at::NoGradGuard no_grad;
  const at::Tensor rgb = image.to(at::kFloat).cpu() * 255;
  const at::Tensor gray = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]).view({1, 1, image.size(1), image.size(2)});
  at::Tensor g = at::arange(-2, 3, at::kFloat);
  g = at::exp(-(g * g) / (2 * 1.4 * 1.4));
  g = g / g.sum();
  const at::Tensor blurred = filter2d(gray, at::outer(g, g));
  const at::Tensor sx = at::tensor({-1.f, 0.f, 1.f, -2.f, 0.f, 2.f, -1.f, 0.f, 1.f}).view({3, 3});
  const at::Tensor gx = filter2d(blurred, sx)[0][0].contiguous(), gy = filter2d(blurred, sx.t().contiguous())[0][0].contiguous();
  const at::Tensor mag = at::sqrt(gx * gx + gy * gy).contiguous();
  const at::Tensor edges = hysteresis(non_maximum_suppression(mag, gx, gy), low, high);
  return edges.unsqueeze(0).expand({3, -1, -1}).contiguous();
}

}  // namespace sana
