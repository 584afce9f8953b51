#pragma once
// Canny edge detection, for turning a photo into the edge map an edge-conditioned ControlNet reads: grayscale,
// Gaussian blur (5x5, sigma 1.4), Sobel gradients, non-maximum suppression along the gradient direction, and
// hysteresis between two thresholds (on the 0-255 scale, as OpenCV's Canny that ControlNet preprocessors use).
#include <ATen/ATen.h>

namespace sana {

// image [3, H, W] in [0, 1] -> [3, H, W] with edges 1 (white) on 0 (black).
at::Tensor canny_edges(const at::Tensor& image, double low_threshold = 100, double high_threshold = 200);

}  // namespace sana
